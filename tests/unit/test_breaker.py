"""The capacity circuit breaker: opens after repeated capacity failures of a nodeset, keeps
Slurm off its powered-down nodes for a cool-down, probes, doubles on a failed probe, closes
when a node comes up. The open state is read back from Slurm's drain reasons."""

from __future__ import annotations

import pytest

from bridge.breaker import BREAKER_REASON, Breakers, CloseBreaker, OpenBreaker, open_until, plan
from bridge.slurm import NodeFacts

T0 = 1_800_000_000.0
OFF = ("IDLE", "CLOUD", "POWERED_DOWN")


def failed(n: int, when: str = "2027-01-15T08:00:00") -> str:
    return (f"slurm-k8s-bridge: job {n} could not start: pod linux-elastic1 unschedulable: 0/2 nodes are available: "
            f"2 Insufficient cpu. [slurm@{when}]")


class Cluster:
    """Slurm as the breaker sees it: executing its actions the way scontrol would."""

    def __init__(self, config) -> None:
        self.config = config
        self.facts = {f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=OFF) for i in range(1, 5)}
        self.state = Breakers()

    def fail(self, job: int) -> None:
        self.facts["elastic1"] = NodeFacts("elastic1", 1, 500, state=OFF, reason=failed(job))

    def look(self, at: float) -> list:
        actions = plan(self.facts, T0 + at, self.config, self.state)
        for action in actions:
            for node in action.nodes:
                old = self.facts[node]
                if isinstance(action, OpenBreaker):
                    self.facts[node] = NodeFacts(node, 1, 500, state=old.state + ("DRAIN",), reason=action.cause)
                else:
                    self.facts[node] = NodeFacts(node, 1, 500, state=tuple(s for s in old.state if s != "DRAIN"))
        return actions


@pytest.fixture
def cluster(config):
    return Cluster(config)


def test_opens_after_repeated_capacity_failures_and_drains_the_powered_down_nodes(cluster, config):
    cluster.fail(1)
    assert cluster.look(0) == []
    cluster.fail(2)
    assert cluster.look(10) == []
    cluster.fail(3)
    [opened] = cluster.look(20)
    assert isinstance(opened, OpenBreaker) and opened.nodeset == "cpu" and opened.failures == 3
    assert opened.nodes == ("elastic1", "elastic2", "elastic3", "elastic4")
    assert opened.until == T0 + 20 + config.daemon.breaker_cooldown
    assert opened.cause.startswith(BREAKER_REASON) and open_until(cluster.facts["elastic2"]) == opened.until
    assert cluster.look(30) == []  # open: nothing more to do


def test_the_same_failure_seen_twice_counts_once_and_old_ones_expire(cluster, config):
    for at in (0, 1, 2, 3):
        cluster.fail(1)
        assert cluster.look(at) == []
    cluster.fail(2)
    cluster.look(config.daemon.breaker_window + 5)
    cluster.fail(3)
    assert cluster.look(config.daemon.breaker_window + 6) == []  # job 1's failure is too old


def test_probe_after_the_cooldown_then_double_on_failure_then_close_when_a_node_comes_up(cluster, config):
    for job in (1, 2, 3):
        cluster.fail(job)
        cluster.look(job)
    cooldown = config.daemon.breaker_cooldown
    [probe] = cluster.look(3 + cooldown)
    assert isinstance(probe, CloseBreaker) and len(probe.nodes) == 4
    cluster.fail(4)  # the probe failed for capacity again: open twice as long, at once
    [reopened] = cluster.look(10 + cooldown)
    assert reopened.until == T0 + 10 + cooldown + 2 * cooldown
    [probe] = cluster.look(10 + 3 * cooldown)
    cluster.facts["elastic2"] = NodeFacts("elastic2", 1, 500, state=("MIXED", "CLOUD"))  # a job started
    assert cluster.look(11 + 3 * cooldown) == []
    for job in (5, 6):
        cluster.fail(job)
        assert cluster.look(11 + 3 * cooldown + job) == []  # closed: counting from the start again


def test_a_restarted_daemon_keeps_an_open_breaker(cluster, config):
    for job in (1, 2, 3):
        cluster.fail(job)
        cluster.look(job)
    cluster.state = Breakers()  # a new daemon
    assert cluster.look(10) == []
    [probe] = cluster.look(3 + config.daemon.breaker_cooldown)
    assert isinstance(probe, CloseBreaker)


def test_nodes_with_jobs_or_an_admins_drain_are_left_alone(cluster):
    cluster.facts["elastic3"] = NodeFacts("elastic3", 1, 500, state=("MIXED", "CLOUD"))
    cluster.facts["elastic4"] = NodeFacts("elastic4", 1, 500, state=OFF + ("DRAIN",), reason="rack maintenance")
    for job in (1, 2, 3):
        cluster.fail(job)
        actions = cluster.look(job)
    assert actions[0].nodes == ("elastic1", "elastic2")
    assert cluster.facts["elastic4"].reason == "rack maintenance"


def test_breaker_off(write_config):
    from bridge import config as config_module
    from tests.conftest import BASIC_CONFIG

    config = config_module.load(str(write_config(BASIC_CONFIG.replace("resume:\n", "daemon: {breaker_failures: 0}\nresume:\n"))))
    cluster = Cluster(config)
    for job in (1, 2, 3, 4):
        cluster.fail(job)
        assert cluster.look(job) == []


def test_a_node_still_powering_down_is_drained_too_until_the_drain_sticks(cluster):
    powering_down = NodeFacts("elastic4", 1, 500, state=("IDLE", "CLOUD", "POWERING_DOWN"))
    cluster.facts["elastic4"] = powering_down
    for job in (1, 2, 3):
        cluster.fail(job)
        actions = cluster.look(job)
    assert "elastic4" in actions[0].nodes
    cluster.facts["elastic4"] = powering_down  # Slurm dropped the drain while the node powered down
    [again] = cluster.look(5)
    assert isinstance(again, OpenBreaker) and again.nodes == ("elastic4",) and again.until == actions[0].until


def test_the_same_cause_on_the_same_node_counts_again_after_a_new_try(cluster):
    """Slurm's JSON gives the reason without its time stamp: the same job failing the same way on
    the same node writes the same words; seen powering up in between, it is a new failure."""
    for at in range(3):
        cluster.fail(1)
        if at == 2:
            [opened] = cluster.look(at * 10)
            assert opened.failures == 3
        else:
            assert cluster.look(at * 10) == []
            cluster.facts["elastic1"] = NodeFacts("elastic1", 1, 500, state=("MIXED", "CLOUD", "POWERING_UP"))
            assert cluster.look(at * 10 + 1) == []
