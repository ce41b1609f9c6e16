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

    def __init__(self, config: config_module.Config, nodes: list[str] | None = None) -> None:
        self.config = config
        nodes = nodes or [f"elastic{i}" for i in range(1, 17)]
        self.slurm = FakeSlurm({node: NodeFacts(node, 1, 500, state=OFF) for node in nodes})
        self.now = START
        self.metrics = Metrics()
        self.pool = self.new_pool()

    def new_pool(self) -> Pool:
        return Pool(self.config, slurm=self.slurm, log=structlog.get_logger(), metrics=self.metrics)

    def set(self, nodes, state, reason: str = "") -> None:
        for node in nodes:
            self.slurm.facts[node] = NodeFacts(node, 1, 500, state=state, reason=reason)

    def advance(self, after: float = 5.0) -> None:
        """``after`` seconds on: nodes the last look powered up have registered by then."""
        self.now += after
        self.set([n for n, f in self.slurm.facts.items() if "POWERING_UP" in f.state and "MIXED" not in f.state], IDLE)
        self.set([n for n, f in self.slurm.facts.items() if "POWERING_DOWN" in f.state], OFF)

    def look(self, after: float = 5.0):
        """A look ``after`` seconds on."""
        self.advance(after)
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


def test_a_node_on_its_way_up_counts_and_no_second_one_is_started_for_it(world):
    """Slurm (22.05, measured) shows a node powered up with no job as NOT_RESPONDING+POWERING_UP
    until its slurmd registers: the pool counts it as starting, and powers up nothing more."""
    assert world.look().power_up == ("elastic1", "elastic2")
    for _ in range(3):  # registration slower than the daemon's tick
        world.now += 1
        (decision,) = world.pool.step(world.slurm.facts, world.now)
        assert decision.starting == ("elastic1", "elastic2") and decision.power_up == ()
    assert world.slurm.calls == ["power_up 2"]


def test_a_power_up_slurm_has_not_acted_on_yet_counts_as_starting(world):
    """Between ``scontrol power up`` and Slurm's power-save thread (up to power_save_interval),
    the node is still POWERED_DOWN, flagged POWER_UP: asked for, not to be asked again."""
    assert world.look().power_up == ("elastic1", "elastic2")
    world.set(["elastic1", "elastic2"], OFF + ("POWER_UP",))
    world.now += 1
    (decision,) = world.pool.step(world.slurm.facts, world.now)
    assert decision.starting == ("elastic1", "elastic2") and decision.power_up == ()
    assert world.slurm.calls == ["power_up 2"]


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


def test_a_plan_whose_start_passed_long_ago_keeps_no_node_up(write_config):
    """squeue may still show a StartTime that passed (a job held, or blocked by a limit, after
    backfill placed it): ten minutes on, that plan is not one Slurm acts on."""
    world = World(warm_config(write_config, max=3))
    world.slurm.planned = [(world.now - 30, ("elastic3", "elastic4"))]  # a pass ago: Slurm may yet start it
    assert world.look().power_up == ("elastic3", "elastic4")
    world.look()
    world.slurm.planned = [(world.now - 601, ("elastic3", "elastic4"))]
    assert world.look(after=120).power_down == ("elastic3", "elastic4")  # idle past the linger (60 s)


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


def test_nodes_allocated_while_the_daemon_was_away_are_not_one_burst_when_it_returns(write_config):
    """A daemon back after an hour (restarted, or a replica that leads again) finds jobs that
    started meanwhile: they are not an arrival of that many nodes now, which would fill the pool
    to max and leave it idle until the linger ran out."""
    world = World(warm_config(write_config, min=0, max=8))
    world.look()
    world.job([f"elastic{i}" for i in range(1, 9)])  # eight nodes taken while nobody looked
    world.pool = world.new_pool()
    decision = world.look(after=3600)
    assert decision.target == 0 and decision.power_up == ()
    world.job(["elastic9", "elastic10"])  # seen arriving: followed as ever
    assert world.look().target == 2


def test_with_a_long_tick_each_look_is_a_baseline_for_the_next(write_config):
    """daemon.tick 300 (less load on Slurm): looks 300 s apart are the daemon's rhythm, not a gap."""
    settings = ", ".join(f"{k}: {v}" for k, v in {**WARM, "min": 0, "max": 8, "linger": 600}.items())
    text = BASIC_CONFIG.replace("    nodes: elastic[1-4]\n", f"    nodes: elastic[1-16]\n    warm: {{{settings}}}\n")
    world = World(config_module.load(str(write_config(text.replace("resume:\n", "daemon: {tick: 300}\nresume:\n")))))
    world.look()
    world.job(["elastic1", "elastic2"])
    assert world.look(after=300).target == 2


def test_a_replica_that_stood_by_continues_from_what_the_leader_learned(write_config):
    """Two daemon replicas sharing the state directory: while A stands by (forget), B leads and
    learns a job's arrival; when A leads again it reads B's state, not its own older memory."""
    import json

    world = World(warm_config(write_config, min=0))
    replica_a = world.pool
    world.look()
    replica_a.forget()  # A loses the Lease
    world.pool = world.new_pool()  # B leads
    world.job(["elastic1", "elastic2"])
    arrived = world.now + 5
    world.look()
    world.look()
    world.pool = replica_a  # A leads again
    world.look()
    recent = json.loads(replica_a.path("cpu").read_text())["demand"]["recent"]
    assert recent == [[arrived, 2]]


class ScriptedElector:
    """The Lease as a script: each ``leads()`` runs the next step, whose answer says whether this
    replica leads; the loop is stopped when the script ends."""

    name, identity, renew_every = "slurm-k8s-bridge-testenv", "replica-a", 0.0

    def __init__(self, steps, stop) -> None:
        self.steps, self.stop = list(steps), stop

    def leads(self) -> bool:
        if not self.steps:
            self.stop.set()
            return False
        return self.steps.pop(0)()

    def still_leads(self) -> bool:
        """The lead holds through each look (a test of its loss mid-look says otherwise)."""
        return True


class QuietWatch:
    def snapshot(self):
        return [], [], []

    def again(self):
        return [], []


def test_the_daemons_loop_forgets_the_pool_while_it_stands_by(write_config):
    """The daemon's own loop (daemon._loop) with a Lease it holds, loses and takes back: while
    it stands by the other replica learns a job's arrival, and the pool this replica keeps when
    it leads again has learned it too, instead of writing its older memory over it."""
    import json
    import threading

    from bridge import daemon as daemon_module

    world = World(warm_config(write_config, min=0))
    daemon = Daemon(world.config, slurm=world.slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: world.now)
    arrived: list[float] = []

    def other_replica_learns() -> bool:
        other = world.new_pool()
        for _ in range(2):
            world.advance()
            if not arrived:
                world.job(["elastic1", "elastic2"])
                arrived.append(world.now)
            other.step(world.slurm.facts, world.now)
        return False

    def leads() -> bool:
        world.advance()
        return True

    stop, wake = threading.Event(), threading.Event()
    elector = ScriptedElector([leads, other_replica_learns, leads], stop)
    with capture_logs() as logs:
        daemon_module._loop(daemon, QuietWatch(), elector, stop=stop, wake=wake, log=structlog.get_logger(),
                            metrics=Metrics(), once=False, min_gap=0)
    assert [e["event"] for e in logs if e["event"] in ("leading", "standing by")] == [
        "leading", "standing by", "leading", "standing by"]
    recent = json.loads(daemon.pool.path("cpu").read_text())["demand"]["recent"]
    assert recent == [[arrived[0], 2]]


def test_a_look_during_which_the_lease_was_lost_does_nothing(write_config):
    """The lead held when the look began; the Slurm read took so long that another replica took
    the Lease meanwhile. The node this replica would give back (up, its pod gone) is left to
    the replica that leads now: it is not set DOWN twice, and nothing is powered up."""
    import threading

    from bridge import daemon as daemon_module

    world = World(warm_config(write_config, min=2))
    world.set(["elastic1"], IDLE)  # up, and no pod: "its pod is gone"
    daemon = Daemon(world.config, slurm=world.slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: world.now)
    stop = threading.Event()

    class LostMidLook(ScriptedElector):
        def still_leads(self) -> bool:
            return False

    with capture_logs() as logs:
        daemon_module._loop(daemon, QuietWatch(), LostMidLook([lambda: True], stop), stop=stop,
                            wake=threading.Event(), log=structlog.get_logger(), metrics=Metrics(), once=False,
                            min_gap=0)
    assert world.slurm.calls == []
    events = [e["event"] for e in logs]
    assert "no longer leading: the rest of this look is left to the replica that leads now" in events
    assert [e for e in events if e in ("leading", "standing by")] == ["leading", "standing by"]
    # The same look with the lead kept gives the node back and warms the pool.
    stop.clear()
    daemon_module._loop(daemon, QuietWatch(), ScriptedElector([lambda: True], stop), stop=stop,
                        wake=threading.Event(), log=structlog.get_logger(), metrics=Metrics(), once=False,
                        min_gap=0)
    assert world.slurm.calls[:2] == ["set_down 1", "power_down 1"] and "power_up 2" in world.slurm.calls, \
        world.slurm.calls


def test_a_look_that_loses_the_lease_while_it_acts_leaves_the_pool_to_the_new_leader(write_config):
    """The lead held when the look planned; its scontrol calls then outlasted the Lease: the node
    it gave back stays given back, but the warm pool's refill is left to the replica that leads
    now (two replicas would power up twice the pool)."""
    import threading

    from bridge import daemon as daemon_module

    world = World(warm_config(write_config, min=2))
    world.set(["elastic1"], IDLE)  # up, and no pod: "its pod is gone"
    daemon = Daemon(world.config, slurm=world.slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: world.now)
    stop = threading.Event()
    answers = [True, False]  # before acting, then before the pool's step

    class LostWhileActing(ScriptedElector):
        def still_leads(self) -> bool:
            return answers.pop(0)

    daemon_module._loop(daemon, QuietWatch(), LostWhileActing([lambda: True], stop), stop=stop,
                        wake=threading.Event(), log=structlog.get_logger(), metrics=Metrics(), once=False, min_gap=0)
    assert world.slurm.calls == ["set_down 1", "power_down 1"]
    assert answers == []


class DrainingSlurm(FakeSlurm):
    """scontrol's drain as well: the node shows DRAIN with the reason at the next read."""

    def set_drained(self, nodes, reason_text):
        from bridge.slurm import reason

        self.calls.append(f"set_drained {len(nodes)}")
        for node in nodes:
            fact = self.facts[node]
            self.facts[node] = NodeFacts(node, 1, 500, state=fact.state + ("DRAIN",), reason=reason(reason_text))


def pool_pod(node: str) -> dict:
    """The pod the resume hook made for a pool node of nodeset cpu, running on worker-1."""
    return {"metadata": {"name": f"linux-{node}", "namespace": "slurm", "uid": f"u-{node}",
                         "labels": {**naming.owner_labels("linux"), naming.NODESET_LABEL: "cpu"},
                         "annotations": {naming.NODE_ANNOTATION: node}},
            "spec": {"nodeName": "worker-1"}, "status": {"phase": "Running"}}


def worker(cordoned: bool = False) -> dict:
    return {"metadata": {"name": "worker-1"}, "spec": {"unschedulable": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_a_replica_that_stood_by_waits_each_grace_period_again(write_config):
    """A node seen powering up with no pod just before the replica lost the Lease: when it leads
    again a minute later, that node is on a new resume, and gets the whole stuck_grace."""
    import threading

    from bridge import daemon as daemon_module

    world = World(warm_config(write_config, min=0))
    world.set(["elastic9"], ("IDLE", "CLOUD", "NOT_RESPONDING", "POWERING_UP"))
    daemon = Daemon(world.config, slurm=world.slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: world.now)

    def leads() -> bool:
        return True

    def stands_by_for_a_while() -> bool:
        world.now += world.config.daemon.stuck_grace + 30
        return False

    stop = threading.Event()
    daemon_module._loop(daemon, QuietWatch(), ScriptedElector([leads, stands_by_for_a_while, leads], stop),
                        stop=stop, wake=threading.Event(), log=structlog.get_logger(), metrics=Metrics(), once=False,
                        min_gap=0)
    assert world.slurm.calls == [], "elastic9 released on a clock from before the standby"


def test_nodes_the_capacity_breaker_drains_are_not_powered_up_in_the_same_look(write_config):
    """A job takes the pool's two warm nodes in the look that sees the nodeset's third capacity
    failure: the breaker drains the powered-down nodes, and the refill must not start them
    (they would sit DRAIN+POWERING_UP, holding pods no job can use)."""
    from tests.unit.test_breaker import failed

    config = warm_config(write_config, min=2)
    slurm = DrainingSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=IDLE if i <= 2 else OFF)
                           for i in range(1, 17)})
    pods = [pool_pod(n) for n in ("elastic1", "elastic2")]
    host = worker()
    clock = [START]
    daemon = Daemon(config, slurm=slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    for job in (1, 2):
        slurm.facts["elastic16"] = NodeFacts("elastic16", 1, 500, state=OFF, reason=failed(job))
        daemon.look(pods, [host])
        clock[0] += 10
    assert slurm.calls == []  # the pool has its two up and idle
    slurm.facts["elastic16"] = NodeFacts("elastic16", 1, 500, state=OFF, reason=failed(3))
    for node in ("elastic1", "elastic2"):
        slurm.facts[node] = NodeFacts(node, 1, 500, state=BUSY)
    daemon.look(pods, [host])
    assert slurm.calls == ["set_drained 14"], slurm.calls
    assert not [n for n, f in slurm.facts.items() if "POWERING_UP" in f.state]


def test_a_breaker_planned_by_a_look_that_lost_the_lead_opens_at_the_next_look(write_config):
    """The look that saw the nodeset's third capacity failure lost the Lease before it could
    drain: it must not have used the failures up. Leading again, the next look drains."""
    from tests.unit.test_breaker import failed

    config = warm_config(write_config, min=0)
    slurm = DrainingSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 17)})
    clock = [START]
    daemon = Daemon(config, slurm=slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    for job in (1, 2):
        slurm.facts["elastic16"] = NodeFacts("elastic16", 1, 500, state=OFF, reason=failed(job))
        daemon.look([], [worker()])
        clock[0] += 10
    slurm.facts["elastic16"] = NodeFacts("elastic16", 1, 500, state=OFF, reason=failed(3))
    assert daemon.look([], [worker()], may_act=lambda: False) == []
    assert slurm.calls == []
    clock[0] += 10
    daemon.look([], [worker()], may_act=lambda: True)
    assert slurm.calls == ["set_drained 16"], slurm.calls


def test_a_busy_node_drained_for_its_cordoned_host_is_no_new_arrival(write_config):
    """The look that drains a busy node still counts it allocated: the next one must not take
    it for a job that just came (and power up nodes for demand that never was)."""
    import json

    config = warm_config(write_config, min=0)
    slurm = DrainingSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=BUSY if i == 1 else OFF)
                           for i in range(1, 17)})
    pods = [pool_pod("elastic1")]

    clock = [START]
    daemon = Daemon(config, slurm=slurm, kube=FakeKube(), log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    for cordoned in (False, True, True):
        daemon.look(pods, [worker(cordoned)])
        clock[0] += 5
    assert "DRAIN" in slurm.facts["elastic1"].state
    assert json.loads(daemon.pool.path("cpu").read_text())["demand"]["recent"] == []
    assert [c for c in slurm.calls if c.startswith("power_up")] == []


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


def test_the_daily_idle_cap_shrinks_the_pool_as_it_is_spent_and_lifts_a_day_later(write_config):
    """idle_hours_per_day 3: the pool holds no more nodes than whole hours are left under the cap
    (each could idle an hour), so it shrinks as they are spent, one node at a time, and never
    fills on a few minutes of room; a day later the spent hours have rolled off."""
    world = World(warm_config(write_config, min=0, idle_share=0, quiet_after=20000, hold=10 ** 6,
                              idle_hours_per_day=3))
    world.look()
    world.job(["elastic1", "elastic2", "elastic3"])
    decision = world.look()
    assert decision.target == 3 and decision.power_up == ("elastic4", "elastic5", "elastic6")
    targets = []
    for _ in range(24):
        decision = world.look(after=300)
        spent = world.metrics.value("slurm_k8s_bridge_warm_pool_idle_pod_hours_last_day", nodeset="cpu")
        assert decision.target <= 3 - spent and decision.power_up == () and not decision.capped
        targets.append(decision.target)
    assert targets == sorted(targets, reverse=True) and set(targets) == {2, 1, 0}
    assert world.up() == ["elastic1", "elastic2", "elastic3"] and spent < 3  # the job's nodes; no pool
    world.set(["elastic1", "elastic2", "elastic3"], OFF)  # the job ended long ago; Slurm suspended them
    world.now = START + 2 * 86400 - 5  # two days on, the hour of the job: the profile expects it
    decision = world.look()
    assert decision.target == 3 and len(decision.power_up) == 3


def test_a_spent_cap_powers_idle_nodes_down_at_once_but_keeps_those_a_planned_job_needs(write_config):
    """Idle time the pool does not hold (a plan's nodes, a job's freed nodes lingering) can
    spend the cap. Once it is spent: nodes already up for a job due within the horizon stay, no
    other is started ahead of it, and idle nodes go at once instead of after the linger."""
    world = World(warm_config(write_config, min=0, idle_share=0, idle_hours_per_day=0.01))  # 36 s
    world.slurm.planned = [(world.now + 30, ("elastic1", "elastic2"))]
    assert world.look().power_up == ("elastic1", "elastic2")
    world.look()  # up and idle: 10 s spent
    decision = world.look(after=15)  # 40 s spent
    assert decision.capped and decision.power_down == ()
    world.slurm.planned = [(world.now + 10, ("elastic1", "elastic2", "elastic3"))]
    decision = world.look()
    assert decision.capped and decision.power_up == () and decision.power_down == ()
    world.slurm.planned = []  # the job was cancelled
    world.set(["elastic9"], IDLE)  # another job ended a second ago
    decision = world.look(after=1)
    assert decision.power_down == ("elastic1", "elastic2", "elastic9")  # no 60 s linger
    world.look()
    assert world.up() == []


SHARED = """
  - name: cpu-od
    nodes: od[1-4]
    image: slurm-k8s-bridge/slurmd:22.05.8
    capacity: {{type: on-demand}}
    warm: {{{warm}}}
  - name: cpu-spot
    nodes: spot[1-4]
    image: slurm-k8s-bridge/slurmd:22.05.8
    capacity: {{type: spot}}
    warm: {{{warm}}}
"""
SHARED_NODES = [f"od{i}" for i in range(1, 5)] + [f"spot{i}" for i in range(1, 5)]
BREAKER = "slurm-k8s-bridge: capacity breaker open until 2027-01-01T00:00:00Z"


def shared_config(write_config, **warm) -> config_module.Config:
    settings = ", ".join(f"{k}: {v}" for k, v in {**WARM, "pool": "cpu", **warm}.items())
    text = BASIC_CONFIG[:BASIC_CONFIG.index("  - name: cpu\n")] + SHARED.format(warm=settings)
    return config_module.load(str(write_config(text)))


def test_a_shared_pool_keeps_its_idle_nodes_on_spot_and_learns_from_both_nodesets(write_config):
    """On-demand comes first in the config, spot is cheaper: the pool powers spot up. A job on
    the on-demand nodeset is demand for the shared pool too, and the refill is spot again."""
    world = World(shared_config(write_config, min=1, idle_share=0), SHARED_NODES)
    decision = world.look()
    assert decision.nodeset == "cpu" and decision.target == 1 and decision.power_up == ("spot1",)
    world.look()
    world.job(["od1", "od2", "od3"])  # Slurm gave a 3-node job on-demand nodes (by its Weight)
    decision = world.look()
    assert decision.target == 3 and decision.power_up == ("spot2", "spot3")
    world.look()
    assert world.idle() == ["spot1", "spot2", "spot3"]
    assert world.metrics.value("slurm_k8s_bridge_warm_pool_target_nodes", nodeset="cpu") == 3
    assert not (Path(world.config.resume.state_dir) / "warm-cpu-od.json").exists()
    assert (Path(world.config.resume.state_dir) / "warm-cpu.json").exists()


def test_a_shared_pool_falls_back_to_on_demand_while_spot_is_held_and_swaps_back(write_config):
    """Spot's breaker is open (its powered-down nodes drained): the pool comes up on on-demand.
    Once the drains are lifted and the on-demand nodes have lingered (60 s), each is swapped for
    a spot node: spot is powered up, and the on-demand nodes go only once spot is up and idle."""
    world = World(shared_config(write_config, min=2, max=4), SHARED_NODES)
    world.set([f"spot{i}" for i in range(1, 5)], OFF + ("DRAIN",), BREAKER)
    assert world.look().power_up == ("od1", "od2")
    world.look()
    assert world.idle() == ["od1", "od2"]
    world.set([f"spot{i}" for i in range(1, 5)], OFF)  # the breaker closed
    assert world.look(after=30).power_up == ()  # idle 35 s: not lingered yet
    decision = world.look(after=30)
    assert decision.power_up == ("spot1", "spot2") and decision.power_down == ()
    decision = world.look()  # spot is up: now, and only now, on-demand goes
    assert decision.power_down == ("od1", "od2") and decision.idle == ("spot1", "spot2", "od1", "od2")
    world.look()
    assert world.idle() == ["spot1", "spot2"] and world.up() == ["spot1", "spot2"]


def test_a_full_shared_pool_swaps_back_to_spot_one_node_at_a_time(write_config):
    """min = max = 2: there is no room under max for a swap, so one spot node at a time starts
    over it, and the on-demand node it replaces goes once it is up."""
    world = World(shared_config(write_config, min=2, max=2), SHARED_NODES)
    world.set([f"spot{i}" for i in range(1, 5)], OFF + ("DRAIN",), BREAKER)
    world.look()
    world.look()
    world.set([f"spot{i}" for i in range(1, 5)], OFF)
    ups, downs = [], []
    for _ in range(6):
        decision = world.look(after=61)
        ups += decision.power_up
        downs += decision.power_down
        assert len(decision.idle) + len(decision.starting) <= 3
    assert ups == ["spot1", "spot2"] and downs == ["od1", "od2"]
    assert world.up() == ["spot1", "spot2"]


def test_a_shared_pool_powers_the_dearer_capacity_down_first(write_config):
    world = World(shared_config(write_config, min=1), SHARED_NODES)
    for nodes in (["od1", "od2"], ["spot1", "spot2"]):
        world.set(nodes, IDLE)  # jobs ended: two idle on each capacity, all past the linger
    world.look()
    decision = world.look(after=61)
    assert decision.target == 1 and decision.power_down == ("od1", "od2", "spot1")


@pytest.mark.parametrize("warm, message", [
    ({"min": 3, "max": 2}, "nodesets[0].warm: expected 0 <= min <= max <= 16 (the nodeset's nodes), got min 3, max 2"),
    ({"max": 17}, "nodesets[0].warm: expected 0 <= min <= max <= 16 (the nodeset's nodes), got min 0, max 17"),
    ({"linger": -1}, "nodesets[0].warm.linger: expected 0 or more, got -1"),
    ({"hold": ".nan"}, "nodesets[0].warm.hold: expected 0 or more, got nan"),
    ({"min": 2, "idle_hours_per_day": 48}, "nodesets[0].warm.idle_hours_per_day: expected more than 24 x min = 48 "
                                           "(the min nodes alone spend that), got 48"),
    ({"idle_hours_per_day": 0}, "nodesets[0].warm.idle_hours_per_day: expected more than 24 x min = 0 (leave it out "
                                "for no cap; max: 0 for no pool), got 0"),
    ({"pool": "GPU_pool"}, "nodesets[0].warm.pool: expected a DNS-1123 label, got 'GPU_pool'"),
    ({"pool": "gpu"}, "nodesets[0].warm.pool: 'gpu' is the name of nodesets[1], which does not share it; "
                      "expected another name, or warm.pool: gpu on that nodeset too"),
])
def test_a_warm_section_that_cannot_be_kept_is_refused_at_load(write_config, warm, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        warm_config(write_config, **warm)


def test_a_pool_node_an_earlier_nodeset_names_is_refused_at_load_a_later_catch_all_is_not(write_config):
    text = BASIC_CONFIG[:BASIC_CONFIG.index("  - name: cpu\n")] + SHARED.format(warm="max: 2, pool: cpu")
    with pytest.raises(ConfigError, match=re.escape("nodesets[1].nodes: spot3 goes to nodesets[0], which names it "
                                                    "first; a warm pool's nodes must be its nodeset's own")):
        config_module.load(str(write_config(text.replace("nodes: od[1-4]", "nodes: od[1-2],spot[3-4]"))))
    catch_all = "  - {name: misc, nodes: 'od[1-8],spot[1-8]', image: slurm-k8s-bridge/slurmd:22.05.8}\n"
    config = config_module.load(str(write_config(text + catch_all)))
    assert config.nodeset_for("spot3").name == "cpu-spot" and config.nodeset_for("spot7").name == "misc"


def test_a_shared_pool_may_hold_up_to_all_its_nodes_and_its_members_must_agree(write_config):
    assert shared_config(write_config, max=8).nodesets[1].warm.max == 8
    with pytest.raises(ConfigError, match=re.escape("nodesets[0].warm: expected 0 <= min <= max <= 8 (the nodes of "
                                                    "pool 'cpu'), got min 0, max 9")):
        shared_config(write_config, max=9)
    text = BASIC_CONFIG[:BASIC_CONFIG.index("  - name: cpu\n")] + SHARED.format(warm="max: 2, pool: cpu")
    text = text.replace("warm: {max: 2, pool: cpu}", "warm: {max: 3, pool: cpu}", 1)
    with pytest.raises(ConfigError, match=re.escape("nodesets[1].warm: expected the same settings as nodesets[0] "
                                                    "('cpu-od'), which shares warm pool 'cpu'")):
        config_module.load(str(write_config(text)))


def test_a_dry_run_says_what_the_pool_would_do_and_changes_nothing(write_config):
    config = warm_config(write_config, min=2)
    slurm = FakeSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 17)})
    pool = Pool(config, slurm=slurm, log=structlog.get_logger(), metrics=Metrics(), dry_run=True)
    with capture_logs() as logs:
        pool.step(slurm.facts, START)
    assert [(r["action"], r["nodes"], r["dry_run"]) for r in logs] == [("power_up", "elastic[1-2]", True)]
    assert slurm.calls == [] and not (Path(config.resume.state_dir) / "warm-cpu.json").exists()


def test_status_pools_shows_the_daemons_target_and_next_power_ups_and_changes_nothing(world):
    """``status --pools`` runs the daemon's own step, dry, from its state file: the same target
    and the same power-ups the daemon's next look makes, and not a byte of state changed."""
    from bridge import hostlist, status

    world.look()
    world.look()
    world.set(["elastic9"], ("DOWN", "CLOUD", "POWERED_DOWN"), reason="bad DIMM")
    world.job(world.idle())  # a job takes both warm nodes
    state, calls = world.pool.path("cpu").read_bytes(), list(world.slurm.calls)
    [row] = status.pool_rows(world.slurm.facts, now=world.now + 5, config=world.config, slurm=world.slurm)
    assert world.pool.path("cpu").read_bytes() == state and world.slurm.calls == calls
    (decision,) = world.pool.step(world.slurm.facts, world.now + 5)
    assert decision.power_up and row.would_power_up == hostlist.fold(list(decision.power_up))
    assert (row.pool, row.nodesets, row.min, row.max, row.target) == ("cpu", ["cpu"], 2, 3, decision.target)
    assert (row.idle, row.starting, row.busy, row.powered_down, row.unusable) == (0, 0, 2, 13, 1)
    assert row.learned == "5s ago" and not row.capped and row.idle_hours_cap is None
    header, line = status.pool_table([row]).splitlines()
    assert header.split() == ["POOL", "NODESETS", "MIN-MAX", "TARGET", "IDLE", "STARTING", "BUSY", "OFF", "UNUSABLE",
                              "IDLE", "H/24H", "LEARNED", "WOULD", "POWER", "UP"]
    assert line.split()[:9] == ["cpu", "cpu", "2-3", str(decision.target), "0", "0", "2", "13", "1"]
    assert line.endswith(row.would_power_up)


def test_status_pools_says_when_the_daemon_never_looked_or_its_state_is_unreadable(world):
    from bridge import status

    [row] = status.pool_rows(world.slurm.facts, now=world.now, config=world.config, slurm=world.slurm)
    assert row.learned == "never" and row.would_power_up == "elastic[1-2]"  # min 2, nothing learned
    world.pool.path("cpu").parent.mkdir(parents=True, exist_ok=True)
    world.pool.path("cpu").write_text("{half a file")
    [row] = status.pool_rows(world.slurm.facts, now=world.now, config=world.config, slurm=world.slurm)
    assert row.learned.startswith("unreadable: ")
    assert status.pool_table([]) == "no warm pool: no nodeset has warm.max above 0"


def _demand(change):
    return lambda state: {**state, "demand": change(state["demand"])}


@pytest.mark.parametrize("damage", [
    _demand(lambda data: {**data, "profile": data["profile"][:24]}),  # a day, not a week
    _demand(lambda data: {**data, "hour_start": None}),
    _demand(lambda data: {**data, "idle_hours": [["10", 5]]}),
    _demand(lambda data: {**data, "recent": [[1.0]]}),
    _demand(lambda data: [data]),
    lambda state: {**state, "looked": "x"},
    lambda state: {**state, "allocated": "abc"},
    lambda state: {k: v for k, v in state.items() if k != "demand"},
], ids=["short-profile", "null-hour", "string-hour", "short-pair", "not-an-object", "looked-text", "allocated-text",
        "no-demand"])
def test_a_state_file_of_the_wrong_shape_is_learned_afresh_not_a_crash(write_config, damage):
    """A hand-edited or foreign file that is valid JSON: the daemon says so and learns afresh."""
    import json

    world = World(warm_config(write_config, min=1))
    world.look()
    path = world.pool.path("cpu")
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    world.pool = world.new_pool()
    with capture_logs() as logs:
        decision = world.look()
    assert decision.target == 1
    assert [r["event"] for r in logs if r["log_level"] == "warning"] == ["warm pool: unreadable state, learning afresh"]
    assert json.loads(path.read_text())["looked"] == world.now  # written anew, whole
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
