"""Issue 13, the warm pool kept by the daemon: idle powered-up nodes at the model's target,
refilled as jobs take them, powered down when quiet, never a DOWN/DRAIN node, state kept across
a restart; Slurm driven through the fake (injected time, no waiting)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from bridge import config as config_module
from bridge import naming
from bridge.daemon import Daemon
from bridge.errors import ConfigError, SlurmError
from bridge.metrics import Metrics
from bridge.pool import Pool
from bridge.slurm import NodeFacts
from tests.conftest import BASIC_CONFIG
from tests.fakes import FakeKube, FakeSlurm

OFF, IDLE, BUSY = ("IDLE", "CLOUD", "POWERED_DOWN"), ("IDLE", "CLOUD"), ("MIXED", "CLOUD")
START = 1_800_000_000.0
WARM = {"min": 0, "max": 3, "linger": 60, "quiet_after": 600, "horizon": 60}


def warm_config(write_config, **warm) -> config_module.Config:
    settings = ", ".join(f"{k}: {v}" for k, v in {**WARM, **warm}.items())
    text = BASIC_CONFIG.replace("    nodes: elastic[1-4]\n", f"    nodes: elastic[1-16]\n    warm: {{{settings}}}\n")
    return config_module.load(str(write_config(text)))


class World:
    """Eight powered-down nodes; Slurm's side of a pool node: powering up → registered, idle."""

    def __init__(self, config: config_module.Config) -> None:
        self.config = config
        self.slurm = FakeSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 17)})
        self.now = START
        self.metrics = Metrics()
        self.pool = self.new_pool()

    def new_pool(self) -> Pool:
        return Pool(self.config, slurm=self.slurm, log=structlog.get_logger(), metrics=self.metrics)

    def set(self, nodes, state, reason: str = "") -> None:
        for node in nodes:
            self.slurm.facts[node] = NodeFacts(node, 1, 500, state=state, reason=reason)

    def look(self, after: float = 5.0):
        """A look ``after`` seconds on; nodes the last look powered up have registered by then."""
        self.now += after
        self.set([n for n, f in self.slurm.facts.items() if "POWERING_UP" in f.state and "MIXED" not in f.state], IDLE)
        self.set([n for n, f in self.slurm.facts.items() if "POWERING_DOWN" in f.state], OFF)
        (decision,) = self.pool.step(self.slurm.facts, self.now)
        return decision

    def idle(self) -> list[str]:
        return sorted(n for n, f in self.slurm.facts.items() if f.state == IDLE)

    def up(self) -> list[str]:
        return sorted(n for n, f in self.slurm.facts.items() if "POWERED_DOWN" not in f.state)

    def job(self, nodes) -> None:
        self.set(nodes, BUSY)


@pytest.fixture
def world(write_config) -> World:
    return World(warm_config(write_config, min=2))


def test_the_pool_holds_its_target_through_a_burst_of_jobs_and_refills(world):
    decision = world.look()
    assert decision.target == 2 and decision.power_up == ("elastic1", "elastic2")
    world.look()
    assert world.idle() == ["elastic1", "elastic2"]
    # A burst: every few seconds a 2-node job takes the warm nodes; the pool refills behind it.
    for _ in range(3):
        world.job(world.idle()[:2])
        decision = world.look()
        assert 2 <= decision.target <= 3
        assert len(decision.idle) + len(decision.starting) + len(decision.power_up) == decision.target
        world.look(after=1)
        assert len(world.idle()) == decision.target
    assert world.metrics.value("slurm_k8s_bridge_warm_pool_target_nodes", nodeset="cpu") == decision.target
    assert world.metrics.value("slurm_k8s_bridge_warm_pool_power_ups_total", nodeset="cpu") == len(world.up())


def test_the_pool_never_exceeds_max_whatever_the_burst(world):
    world.look()
    world.job(["elastic1", "elastic2", "elastic3", "elastic4", "elastic5"])  # an 5-node job
    for _ in range(5):
        decision = world.look()
        assert decision.target <= 3 and len(world.idle()) <= 3
    # Two for the first target, three refilled after the job took them: never more than max idle.
    assert world.metrics.value("slurm_k8s_bridge_warm_pool_power_ups_total", nodeset="cpu") == 5


def test_the_pool_shrinks_to_zero_after_the_quiet_period(write_config):
    world = World(warm_config(write_config, min=0, idle_share=0))  # the budget would shrink it sooner
    assert world.look().target == 0 and world.slurm.calls == []  # nothing learned: no pool
    world.job(["elastic1", "elastic2"])
    decision = world.look()
    assert decision.target >= 2 and len(decision.power_up) == decision.target
    arrived = world.now
    world.set(["elastic1", "elastic2"], IDLE)  # the job ended
    with capture_logs() as logs:
        while world.now < arrived + 600 - 10:
            world.look(after=10)
        # Held while a next job is likely; only the idle nodes beyond the target went down.
        assert len(world.idle()) >= 2 and all(r["target"] >= 2 for r in logs)
        while world.now < arrived + 600 + 60 + 10:
            world.look(after=10)
    assert world.up() == [] and world.look().target == 0
    downs = [r for r in logs if r["event"] == "warm pool" and r["action"] == "power_down"]
    assert downs[-1]["target"] == 0 and all(r["nodeset"] == "cpu" and not r["dry_run"] for r in downs)
    assert world.metrics.value("slurm_k8s_bridge_warm_pool_power_downs_total", nodeset="cpu") == 4


def test_the_nodes_slurm_plans_for_a_waiting_job_are_up_when_its_turn_comes(write_config):
    """A 4-node job waits for the 2 nodes another job holds; backfill plans it on elastic[1-4] at
    that job's end. One horizon before, the pool powers elastic3 and 4 up, and keeps them up
    whatever its own target, so the waiting job starts on nodes that are all up."""
    world = World(warm_config(write_config, max=3))
    world.job(["elastic1", "elastic2"])  # seen at the first look: no arrival learned, target 0
    start = world.now + 300
    world.slurm.planned = [(start, ("elastic1", "elastic2", "elastic3", "elastic4", "elsewhere1"))]
    assert world.look().power_up == ()  # 295 s ahead: not yet
    world.now = start - 60 - 5
    with capture_logs() as logs:
        decision = world.look()
    assert decision.target == 0 and decision.power_up == ("elastic3", "elastic4")
    assert [(r["action"], r["nodes"], r["for_planned_jobs"]) for r in logs] == [("power_up", "elastic[3-4]", 2)]
    for _ in range(3):  # past the linger (60 s): still kept for the job
        decision = world.look(after=30)
        assert decision.power_down == () and "elastic3" in decision.idle and "elastic4" in decision.idle
    # The waiting job is cancelled: with the plan gone, the pool is back to its model (target 0),
    # and the two nodes, idle past the linger, go down.
    world.slurm.planned = []
    assert world.look().power_down == ("elastic3", "elastic4")


def test_a_plan_larger_than_max_powers_up_at_most_max(write_config):
    world = World(warm_config(write_config, max=3))
    world.slurm.planned = [(world.now, tuple(f"elastic{i}" for i in range(1, 17)))]
    decision = world.look()
    assert decision.power_up == ("elastic1", "elastic2", "elastic3")


def test_an_unreadable_queue_leaves_the_pool_to_its_model(world):
    world.slurm.unreachable = SlurmError("squeue: slurm_load_jobs error: Unable to contact slurm controller")
    with capture_logs() as logs:
        decision = world.look()
    assert decision.power_up == ("elastic1", "elastic2")  # min 2, as without a plan
    assert [r["error"] for r in logs if r["event"].startswith("warm pool: cannot read")] == [
        "squeue: slurm_load_jobs error: Unable to contact slurm controller"]
    assert world.metrics.value("slurm_k8s_bridge_api_errors_total", api="slurm", stage="planned_starts") == 1


def test_a_down_drained_or_breaker_held_node_is_never_counted_nor_powered_up(world):
    world.set(["elastic1"], ("DOWN", "CLOUD", "POWERED_DOWN", "NOT_RESPONDING"), "ResumeTimeout reached")
    world.set(["elastic2"], OFF + ("DRAIN",), "slurm-k8s-bridge: capacity breaker open until 2027-01-01T00:00:00Z")
    world.set(["elastic3"], IDLE + ("DRAIN",), "admin")  # up and idle, but drained: not a warm node
    decision = world.look()
    assert decision.idle == () and decision.power_up == ("elastic4", "elastic5")
    world.look()
    assert world.idle() == ["elastic4", "elastic5"]
    assert "POWERED_DOWN" in world.slurm.facts["elastic1"].state and "DRAIN" in world.slurm.facts["elastic3"].state


def test_what_the_pool_learned_survives_a_restart(write_config):
    world = World(warm_config(write_config, min=0))
    world.look()
    for nodes in (["elastic1", "elastic2"], ["elastic3", "elastic4"]):
        world.job(nodes)
        world.look()
    before = world.look(after=0.0).target
    world.pool = world.new_pool()  # the daemon restarted
    after = world.look(after=0.0)
    assert after.target == before >= 2
    # Without the state file the restarted daemon would have learned nothing.
    (Path(world.config.resume.state_dir) / "warm-cpu.json").unlink()
    world.pool = world.new_pool()
    assert world.look(after=0.0).target == 0


def test_an_idle_pool_node_with_its_pod_is_not_an_orphan(write_config):
    config = warm_config(write_config, min=2)
    slurm = FakeSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 17)})
    kube, clock = FakeKube(), [START]
    daemon = Daemon(config, slurm=slurm, kube=kube, log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    daemon.look([], [])
    assert slurm.calls == ["power_up 2"]
    for node in ("elastic1", "elastic2"):  # the resume hook made the pods, slurmd registered
        slurm.facts[node] = NodeFacts(node, 1, 500, state=IDLE)
        kube.pods[f"linux-{node}"] = {
            "metadata": {"name": f"linux-{node}", "namespace": "slurm", "uid": f"u-{node}",
                         "labels": {**naming.owner_labels("linux"), naming.NODESET_LABEL: "cpu"},
                         "annotations": {naming.NODE_ANNOTATION: node}},
            "spec": {"nodeName": "worker-1"}, "status": {"phase": "Running"}}
    host = {"metadata": {"name": "worker-1"}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    for _ in range(3):
        clock[0] += config.daemon.orphan_grace
        assert daemon.look(list(kube.pods.values()), [host]) == []
    assert set(kube.pods) == {"linux-elastic1", "linux-elastic2"} and slurm.calls == ["power_up 2"]


def test_no_warm_section_means_no_pool(config):
    slurm = FakeSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 5)})
    assert config.nodesets[0].warm.max == 0
    assert Pool(config, slurm=slurm, log=structlog.get_logger(), metrics=Metrics()).step(slurm.facts, START) == []


@pytest.mark.parametrize("warm, message", [
    ({"min": 3, "max": 2}, "nodesets[0].warm: expected 0 <= min <= max <= 16 (the nodeset's nodes), got min 3, max 2"),
    ({"max": 17}, "nodesets[0].warm: expected 0 <= min <= max <= 16 (the nodeset's nodes), got min 0, max 17"),
    ({"linger": -1}, "nodesets[0].warm.linger: expected 0 or more, got -1"),
])
def test_a_warm_section_that_cannot_be_kept_is_refused_at_load(write_config, warm, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        warm_config(write_config, **warm)


def test_a_dry_run_says_what_the_pool_would_do_and_changes_nothing(write_config):
    config = warm_config(write_config, min=2)
    slurm = FakeSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 17)})
    pool = Pool(config, slurm=slurm, log=structlog.get_logger(), metrics=Metrics(), dry_run=True)
    with capture_logs() as logs:
        pool.step(slurm.facts, START)
    assert [(r["action"], r["nodes"], r["dry_run"]) for r in logs] == [("power_up", "elastic[1-2]", True)]
    assert slurm.calls == [] and not (Path(config.resume.state_dir) / "warm-cpu.json").exists()
