"""The reconcile plan: what the daemon would do, from plain dicts and an injected clock."""

from __future__ import annotations

import pytest

from bridge import naming
from bridge.reconcile import (DRAIN_REASON, DeletePod, DeletePodGroup, DrainNode, Memory, ReleaseNode, UndrainNode,
                              plan)
from bridge.slurm import NodeFacts

T0 = 1_800_000_000.0
UP, BUSY = ("IDLE", "CLOUD"), ("MIXED", "CLOUD")
OFF, RESUMING = ("IDLE", "CLOUD", "POWERED_DOWN"), ("MIXED", "CLOUD", "POWERING_UP")


def fact(node: str, state: tuple[str, ...], reason: str = "") -> NodeFacts:
    return NodeFacts(node, cpus=1, real_memory_mb=500, state=state, reason=reason)


def pod(node: str, *, phase: str = "Running", host: str | None = "worker-1", ours: bool = True,
        **status: object) -> dict:
    annotations = {naming.NODE_ANNOTATION: node} if ours else {}
    return {"metadata": {"name": f"linux-{node}", "labels": naming.owner_labels("linux"), "annotations": annotations},
            "spec": {"nodeName": host}, "status": {"phase": phase, **status}}


def host(name: str = "worker-1", *, ready: bool = True, cordoned: bool = False, taints: list | None = None) -> dict:
    return {"metadata": {"name": name}, "spec": {"unschedulable": cordoned, "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture
def look(config):
    memory = Memory()

    def look(facts: list[NodeFacts], pods: list[dict], hosts: list[dict] | None = None, *, at: float = 0,
             groups: list[dict] = ()) -> list:
        return plan({f.name: f for f in facts}, pods, [host()] if hosts is None else hosts, T0 + at, config,
                    memory, groups=groups)

    look.memory = memory
    return look


def test_agreeing_cluster_plans_nothing(look):
    assert look([fact("elastic1", BUSY), fact("elastic2", OFF), fact("elastic3", RESUMING)],
                [pod("elastic1"), pod("elastic3", phase="Pending", host=None)]) == []


def test_orphan_pod_is_deleted_after_the_grace_period_only(look, config):
    facts, pods = [fact("elastic1", OFF)], [pod("elastic1")]
    assert look(facts, pods) == []
    assert look(facts, pods, at=config.daemon.orphan_grace - 1) == []
    assert look(facts, pods, at=config.daemon.orphan_grace) == [
        DeletePod("elastic1", "linux-elastic1", "orphan pod: Slurm node elastic1 is powered down")]


def test_the_early_pod_of_a_node_allocated_while_powered_down_is_no_orphan(look, config):
    # The prolog's early start made it for the job Slurm gave the node; Slurm's ResumeRate may
    # keep the node powered down (allocated) for minutes before ResumeProgram.
    allocated = fact("elastic1", ("MIXED", "CLOUD", "POWERED_DOWN"))
    assert look([allocated], [pod("elastic1", phase="Pending", host=None)]) == []
    assert look([allocated], [pod("elastic1", phase="Pending", host=None)], at=10 * config.daemon.orphan_grace) == []


def test_orphan_clock_restarts_when_the_node_comes_back(look, config):
    assert look([fact("elastic1", OFF)], [pod("elastic1")]) == []
    assert look([fact("elastic1", BUSY)], [pod("elastic1")], at=10) == []
    assert look([fact("elastic1", OFF)], [pod("elastic1")], at=config.daemon.orphan_grace) == []


def test_pod_of_a_node_slurm_does_not_know_is_an_orphan(look, config):
    look([], [pod("gone7")])
    assert look([], [pod("gone7")], at=config.daemon.orphan_grace) == [
        DeletePod("gone7", "linux-gone7", "orphan pod: Slurm node gone7 is unknown to Slurm")]


def test_a_pod_without_the_bridges_annotation_is_never_touched(look, config):
    foreign = pod("elastic1", ours=False)
    for at in (0, config.daemon.orphan_grace * 10):
        assert look([fact("elastic1", OFF)], [foreign], at=at) == []
    # ... and does not count as the node's pod either: the up node has lost its own.
    assert look([fact("elastic2", BUSY)], [pod("elastic2", ours=False)], at=5) == [
        ReleaseNode("elastic2", "its pod is gone")]


def test_pod_of_another_cluster_is_never_touched(look, config):
    other = pod("elastic1")
    other["metadata"]["labels"] = naming.owner_labels("other")
    look([fact("elastic1", OFF)], [other])
    assert look([fact("elastic1", OFF)], [other], at=config.daemon.orphan_grace) == []


def test_up_node_whose_pod_vanished_is_released_at_once(look):
    assert look([fact("elastic1", BUSY)], []) == [ReleaseNode("elastic1", "its pod is gone")]


def test_a_confirm_period_delays_the_release_of_a_vanished_pod(write_config):
    from bridge import config as config_module
    from tests.conftest import BASIC_CONFIG

    config = config_module.load(str(write_config(BASIC_CONFIG.replace("resume:\n", "daemon: {confirm: 2}\nresume:\n"))))
    memory = Memory()
    facts = {"elastic1": fact("elastic1", BUSY)}
    assert plan(facts, [], [host()], T0, config, memory) == []
    assert memory.next_due(T0, config) == 2
    assert plan(facts, [], [host()], T0 + 2, config, memory) == [ReleaseNode("elastic1", "its pod is gone")]


def test_pod_being_deleted_releases_its_node_at_once(look):
    deleting = pod("elastic1")
    deleting["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    assert look([fact("elastic1", BUSY)], [deleting]) == [ReleaseNode("elastic1", "pod linux-elastic1 is being deleted")]


def test_evicted_pod_is_a_passing_cause_and_a_crash_a_lasting_one(look):
    evicted = pod("elastic1", phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    failed = pod("elastic2", phase="Failed", reason="Error")
    actions = look([fact("elastic1", BUSY), fact("elastic2", UP)], [evicted, failed])
    assert [(a.node, a.transient) for a in actions] == [("elastic1", True), ("elastic2", False)]
    assert "Evicted" in actions[0].cause and "low on resource" in actions[0].cause


def test_pod_on_a_notready_or_vanished_kubernetes_node_releases_its_node(look):
    actions = look([fact("elastic1", BUSY), fact("elastic2", BUSY)],
                   [pod("elastic1", host="worker-1"), pod("elastic2", host="worker-9")], [host(ready=False)])
    assert actions == [ReleaseNode("elastic1", "pod linux-elastic1: Kubernetes node worker-1 is NotReady"),
                       ReleaseNode("elastic2", "pod linux-elastic2: Kubernetes node worker-9 is gone")]


def test_without_the_kubernetes_nodes_no_node_rule_applies(config):
    assert plan({"elastic1": fact("elastic1", BUSY)}, [pod("elastic1", host="worker-9")], None, T0, config,
                Memory()) == []


def test_node_stuck_powering_up_without_pod_is_released_after_grace(look, config):
    assert look([fact("elastic1", RESUMING)], []) == []
    assert look([fact("elastic1", RESUMING)], [], at=config.daemon.stuck_grace) == [
        ReleaseNode("elastic1", f"no pod after {config.daemon.stuck_grace:.0f} s of powering up", registered=False)]


def test_node_already_set_down_is_left_to_the_admin(look, config):
    look([fact("elastic1", ("DOWN", "CLOUD", "POWERING_UP"))], [])
    assert look([fact("elastic1", ("DOWN", "CLOUD", "POWERING_UP"))], [], at=config.daemon.stuck_grace * 2) == []


def test_pod_a_racing_resume_made_on_a_node_given_back_down_is_deleted_after_the_grace(look, config):
    # The release deleted the pod and set the node DOWN with its cause; a resume hook that was
    # already past its own check made the pod again. Slurm will run nothing there until an admin
    # resumes the node or ResumeTimeout (an hour by default) passes.
    reason = "slurm-k8s-bridge: pod linux-elastic1: image pull failed"
    down = fact("elastic1", ("DOWN", "CLOUD", "POWERING_UP"), reason=reason)
    assert look([down], [pod("elastic1", phase="Pending")]) == []
    assert look([down], [pod("elastic1", phase="Pending")], at=config.daemon.orphan_grace - 1) == []
    assert look([down], [pod("elastic1", phase="Pending")], at=config.daemon.orphan_grace) == [
        DeletePod("elastic1", "linux-elastic1", f"orphan pod: Slurm node elastic1 was given back DOWN ({reason})")]
    being_deleted = pod("elastic1")
    being_deleted["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    assert look([down], [being_deleted], at=config.daemon.orphan_grace * 2) == []


@pytest.mark.parametrize("reason", ["bad DIMM, ticket 4411", f"{DRAIN_REASON}worker-1 is cordoned"],
                         ids=["an-admins", "the-bridges-drain"])
def test_pod_of_a_node_slurm_set_down_with_a_reason_not_a_release_is_left_alone(look, config, reason):
    """An admin's DOWN; or a node the bridge drained (its host cordoned) whose slurmd then
    stopped answering: Slurm sets it DOWN and keeps the drain's reason. Neither is a give-back."""
    down = fact("elastic1", ("DOWN", "CLOUD", "DRAIN"), reason=reason)
    look([down], [pod("elastic1")])
    assert look([down], [pod("elastic1")], at=config.daemon.orphan_grace * 10) == []


def test_cordon_drains_the_slurm_nodes_it_hosts_and_uncordon_undrains(look):
    pods = [pod("elastic1", host="worker-1"), pod("elastic2", host="worker-2")]
    hosts = [host("worker-1", cordoned=True), host("worker-2")]
    assert look([fact("elastic1", BUSY), fact("elastic2", BUSY)], pods, hosts) == [
        DrainNode("elastic1", f"{DRAIN_REASON}worker-1 is cordoned")]
    drained = fact("elastic1", BUSY + ("DRAIN",), reason=f"{DRAIN_REASON}worker-1 is cordoned")
    assert look([drained], pods, hosts) == []  # already drained: nothing twice
    assert look([drained], pods, [host("worker-1"), host("worker-2")]) == [
        UndrainNode("elastic1", "Kubernetes node worker-1 is schedulable again")]


def test_a_cordon_drain_is_lifted_once_the_node_is_powered_down_and_an_admins_is_not(look):
    # The job ended on a node drained for its cordoned host; Slurm powered the idle node down
    # and its pod went. The next pod goes to a schedulable host: the drain must not hold it.
    ours = fact("elastic1", OFF + ("DRAIN",), reason=f"{DRAIN_REASON}worker-1 is cordoned")
    admins = fact("elastic2", OFF + ("DRAIN",), reason="disk replacement")
    assert look([ours, admins], [], [host("worker-1", cordoned=True)]) == [
        UndrainNode("elastic1", "powered down: its pod and the cordoned Kubernetes node are behind it")]


def test_noexecute_taint_drains(look):
    taint = {"key": "maintenance", "value": "true", "effect": "NoExecute"}
    assert look([fact("elastic1", BUSY)], [pod("elastic1")], [host(taints=[taint])]) == [
        DrainNode("elastic1", f"{DRAIN_REASON}worker-1 is tainted maintenance:NoExecute")]


def test_a_drain_an_admin_set_is_never_lifted(look):
    drained = fact("elastic1", UP + ("DRAIN",), reason="disk replacement")
    assert look([drained], [pod("elastic1")]) == []


def _group(name: str, *, owner: str = "linux", created: str = "2027-01-01T00:00:00Z") -> dict:
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": name, "labels": naming.owner_labels(owner), "creationTimestamp": created}}


def test_pod_group_with_no_pod_left_is_deleted_and_one_in_use_kept(look):
    used = pod("elastic1")
    used["metadata"]["annotations"][naming.GROUP_ANNOTATION] = "scheduling.volcano.sh/v1beta1/PodGroup/job-7"
    actions = look([fact("elastic1", BUSY)], [used], groups=[_group("job-7"), _group("job-8"),
                                                             _group("theirs", owner="other")])
    assert actions == [DeletePodGroup(("scheduling.volcano.sh/v1beta1", "PodGroup", "job-8"),
                                      "PodGroup job-8 has no pod left")]


def test_a_new_pod_group_waits_for_its_pods(look, config):
    import datetime as dt

    created = dt.datetime.fromtimestamp(T0, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert look([], [], groups=[_group("job-9", created=created)]) == []
    assert len(look([], [], groups=[_group("job-9", created=created)], at=config.daemon.group_grace)) == 1


# ---- following resumed jobs from the state on their pods (daemon.follow) ---------------------

def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def starting(node: str, job: int | None, *, created: float = T0, **status: object) -> dict:
    p = pod(node, phase="Pending", host=None, **status)
    p["metadata"]["creationTimestamp"] = _iso(created)
    if job is not None:
        p["metadata"]["labels"][naming.JOB_LABEL] = str(job)
    return p


def unschedulable(since: float) -> dict:
    return {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/2 nodes are available: 2 Insufficient cpu.",
                            "lastTransitionTime": _iso(since)}]}


@pytest.fixture
def following(write_config):
    from bridge import config as config_module
    from tests.conftest import BASIC_CONFIG

    def make(unschedulable_after: float = 0):
        text = BASIC_CONFIG.replace("resume:\n", f"daemon:\n  follow: true\nresume:\n  unschedulable_after: "
                                                 f"{unschedulable_after}\n")
        return config_module.load(str(write_config(text)))

    return make


def test_followed_job_with_an_unschedulable_pod_is_released_whole(following):
    config = following()
    pods = [starting("elastic1", 7, **unschedulable(T0)), starting("elastic2", 7)]
    facts = {n: fact(n, RESUMING) for n in ("elastic1", "elastic2")}
    [action] = plan(facts, pods, [host()], T0 + 1, config, Memory())
    assert (action.kind, action.job_ids, action.nodes, action.rule) == ("release_job", (7,), ("elastic1", "elastic2"),
                                                                      "pod_failed")
    assert [n for n, _ in action.failed] == ["elastic1"] and "Insufficient cpu" in action.cause
    assert action.failed[0][1].transient and not action.failed[0][1].registered


def test_unschedulable_since_comes_from_the_pod_so_a_restarted_daemon_keeps_the_count(following):
    config = following(unschedulable_after=30)
    facts = {"elastic1": fact("elastic1", RESUMING)}
    pods = [starting("elastic1", 7, **unschedulable(T0 - 10))]
    assert plan(facts, pods, [host()], T0, config, Memory()) == []
    # A new daemon (fresh memory) 25 s later: 35 s unschedulable by the pod's own condition.
    assert [a.rule for a in plan(facts, pods, [host()], T0 + 25, config, Memory())] == ["pod_failed"]


def test_followed_job_past_its_deadline_is_released_with_what_its_pods_say(following):
    config = following()
    waiting = {"containerStatuses": [{"name": "slurmd", "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    pods = [starting("elastic1", 8, created=T0 - config.resume.deadline, **waiting)]
    [action] = plan({"elastic1": fact("elastic1", RESUMING)}, pods, [host()], T0, config, Memory())
    assert action.rule == "deadline" and action.job_ids == (8,)
    assert action.cause.startswith(f"node did not register within {config.resume.deadline:.0f} s")


def test_nodes_powered_up_by_hand_fail_alone(following):
    config = following()
    pods = [starting("elastic1", None, **unschedulable(T0)), starting("elastic2", None)]
    facts = {n: fact(n, RESUMING) for n in ("elastic1", "elastic2")}
    [action] = plan(facts, pods, [host()], T0, config, Memory())
    assert action.job_ids == () and action.nodes == ("elastic1",)


def test_without_follow_resuming_jobs_are_the_hooks_business(config):
    pods = [starting("elastic1", 7, **unschedulable(T0 - 100))]
    assert plan({"elastic1": fact("elastic1", RESUMING)}, pods, [host()], T0, config, Memory()) == []


def test_a_registered_job_is_not_followed_any_more(following):
    config = following()
    assert plan({"elastic1": fact("elastic1", BUSY)}, [pod("elastic1")], [host()], T0, following(), Memory()) == []
