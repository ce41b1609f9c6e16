"""The resume flow against in-memory Slurm and Kubernetes."""

from dataclasses import replace

import pytest

from bridge import resume as flow
from bridge.errors import KubernetesError
from bridge.resumefile import parse
from tests.conftest import BASIC_CONFIG as BASIC


def run(nodes, config, slurm, kube, log, request=None):
    return flow.resume(nodes, config=config, slurm=slurm, kube=kube, request=request, log=log)


def test_resume_creates_one_pod_per_node_in_one_batch(config, slurm, kube, log):
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert sorted(outcome.created) == ["elastic1", "elastic2"]
    assert sorted(kube.pods) == ["linux-elastic1", "linux-elastic2"]
    assert kube.calls == ["create 2"]
    assert slurm.down == {}


def test_pods_are_labelled_with_their_job(config, slurm, kube, log):
    request = parse('{"jobs":[{"job_id":6,"nodes":"elastic1"},{"job_id":7,"nodes":"elastic2"}],"all_nodes":"elastic[1-2]"}')
    run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    assert kube.pods["linux-elastic1"]["metadata"]["labels"]["slurm-k8s-bridge/job-id"] == "6"
    assert kube.pods["linux-elastic2"]["metadata"]["labels"]["slurm-k8s-bridge/job-id"] == "7"


def test_repeated_resume_creates_no_duplicate(config, slurm, kube, log):
    run(["elastic1", "elastic2"], config, slurm, kube, log)
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert outcome.created == [] and sorted(outcome.existing) == ["elastic1", "elastic2"]
    assert len(kube.pods) == 2 and slurm.down == {}


def test_refused_pod_sets_its_node_down_with_the_cause(config, slurm, kube, log):
    kube.refuse["linux-elastic2"] = KubernetesError('Forbidden: pods "linux-elastic2" is forbidden: quota', code=403)
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert outcome.created == ["elastic1"]
    assert list(slurm.down) == ["elastic2"]
    assert slurm.down["elastic2"].startswith("slurm-k8s-bridge: pod linux-elastic2: Forbidden")
    assert "linux-elastic2" not in kube.pods


def test_a_node_the_bridge_gave_back_before_the_call_gets_no_pod(config, slurm, kube, log):
    """The prolog's early start failed elastic2 and requeued the job; slurmctld's power-save
    thread then calls ResumeProgram for the job's nodes anyway. A pod there would only fail again
    and outlive the job: elastic2 keeps its cause and gets nothing; the hook succeeds."""
    cause = "slurm-k8s-bridge: pod linux-elastic2: slurmd: ImagePullBackOff"
    slurm.facts["elastic2"] = replace(slurm.facts["elastic2"], state=("DOWN", "CLOUD", "POWERING_UP"), reason=cause)
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert outcome.created == ["elastic1"] and outcome.given_back == ["elastic2"]
    assert sorted(kube.pods) == ["linux-elastic1"]
    assert outcome.failed == {} and slurm.down == {} and outcome.exit_code() is None


def test_a_node_down_for_another_reason_still_gets_its_pod(config, slurm, kube, log):
    """Only the bridge's own cause means "given back": an admin's DOWN is the admin's business
    (Slurm asked for the node, so the bridge makes its pod)."""
    slurm.facts["elastic2"] = replace(slurm.facts["elastic2"], state=("DOWN", "CLOUD", "POWERING_UP"),
                                      reason="admin: bad DIMM")
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert sorted(outcome.created) == ["elastic1", "elastic2"] and outcome.given_back == []


def test_a_pod_deleted_because_the_job_failed_meanwhile_is_not_made_again(config, slurm, kube, log, monkeypatch):
    """The hook found the early start's pod terminating: the job failed and was requeued while
    the hook ran, and Slurm is powering the node down. Making the pod again would leave it
    alive after its job (SuspendProgram already ran), so the node is left as Slurm has it."""
    request = parse('{"jobs":[{"job_id":7,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    kube.pods["linux-elastic2"]["metadata"]["deletionTimestamp"] = "2026-12-05T14:08:46Z"
    slurm.facts["elastic2"] = replace(slurm.facts["elastic2"], state=("IDLE", "CLOUD", "POWERING_DOWN"),
                                      reason="slurm-k8s-bridge: job 7 could not start: pod linux-elastic1: ...")
    monkeypatch.setattr(flow.time, "sleep", lambda s: kube.pods.pop("linux-elastic2", None))
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    assert outcome.existing == ["elastic1"] and outcome.given_back == ["elastic2"]
    assert sorted(kube.pods) == ["linux-elastic1"] and outcome.failed == {}


def test_a_node_already_powered_down_again_while_the_hook_waited_gets_no_new_pod(config, slurm, kube, log, monkeypatch):
    """The race CI met on 24.11: the job was requeued, SuspendProgram deleted elastic1's pod and
    SuspendTimeout passed (IDLE+CLOUD+POWERED_DOWN, no job) while a late resume hook waited for
    that pod to go. Slurm will never call SuspendProgram for elastic1 again, so a pod made now
    would outlive the job: the hook leaves the node as Slurm has it."""
    request = parse('{"jobs":[{"job_id":7,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    kube.pods["linux-elastic1"]["metadata"]["deletionTimestamp"] = "2026-12-05T14:08:46Z"
    slurm.facts["elastic1"] = replace(slurm.facts["elastic1"], state=("IDLE", "CLOUD", "POWERED_DOWN"))
    monkeypatch.setattr(flow.time, "sleep", lambda s: kube.pods.pop("linux-elastic1", None))
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    assert outcome.existing == ["elastic2"] and outcome.given_back == ["elastic1"]
    assert sorted(kube.pods) == ["linux-elastic2"] and outcome.failed == {}


@pytest.mark.parametrize("state", [
    ("MIXED", "CLOUD", "POWERING_UP"),
    ("MIXED", "CLOUD", "POWERED_DOWN"),
], ids=["allocated-powering-up", "allocated-while-powered-down"])
def test_a_pod_still_terminating_from_an_earlier_job_is_made_again_once_gone(
        config, slurm, kube, log, monkeypatch, state):
    """The same conflict while Slurm still wants the node: allocated and powering up, or
    allocated while still powered down (the prolog's early start runs before ResumeProgram). The
    previous job's pod still terminating is waited for, then the new job's pod is made."""
    old = parse('{"jobs":[{"job_id":5,"nodes":"elastic1"}],"all_nodes":"elastic1"}')
    new = parse('{"jobs":[{"job_id":7,"nodes":"elastic1"}],"all_nodes":"elastic1"}')
    run(["elastic1"], config, slurm, kube, log, old)
    kube.pods["linux-elastic1"]["metadata"]["deletionTimestamp"] = "2026-12-05T14:08:46Z"
    slurm.facts["elastic1"] = replace(slurm.facts["elastic1"], state=state)
    monkeypatch.setattr(flow.time, "sleep", lambda s: kube.pods.pop("linux-elastic1", None))
    outcome = run(["elastic1"], config, slurm, kube, log, new)
    assert outcome.created == ["elastic1"] and outcome.given_back == []
    assert kube.pods["linux-elastic1"]["metadata"]["labels"]["slurm-k8s-bridge/job-id"] == "7"


def test_node_slurm_does_not_know_fails_alone(config, slurm, kube, log):
    outcome = run(["elastic1", "elastic9"], config, slurm, kube, log)
    assert outcome.created == ["elastic1"]
    assert outcome.failed == {"elastic9": "Slurm does not know this node"}
    assert slurm.down == {}  # scontrol would refuse to update a node it does not know
    assert outcome.exit_code() is None  # elastic1 went ahead


def test_only_nodes_slurm_does_not_know_exit_68(config, slurm, kube, log):
    outcome = run(["ghost7", "g" * 10_000], config, slurm, kube, log)
    assert set(outcome.failed) == {"ghost7", "g" * 10_000} and outcome.exit_code() == 68


def test_a_node_named_like_a_template_gets_its_pod(config, slurm, kube, log, write_config):
    """slurm.conf allows `w{{7*7}}`; it once rendered zero pods and its job waited ResumeTimeout."""
    from bridge import config as config_module
    from bridge.slurm import NodeFacts
    cfg = config_module.load(str(write_config(BASIC.replace("nodes: elastic[1-4]", "nodes: elastic[1-4],w{{7*7}}"))))
    slurm.facts["w{{7*7}}"] = NodeFacts("w{{7*7}}", cpus=1, real_memory_mb=100)
    outcome = run(["w{{7*7}}"], cfg, slurm, kube, log)
    assert outcome.created == ["w{{7*7}}"]
    [pod] = kube.pods.values()
    assert pod["metadata"]["annotations"]["slurm-k8s-bridge/node-name"] == "w{{7*7}}"


def test_a_node_no_step_accounted_for_is_released_not_left_waiting(config, slurm, kube, log):
    """Slurm answering a node under another spelling once left the asked-for node with no pod
    and no Reason: every node asked for now ends with a pod or a release."""
    from bridge.slurm import NodeFacts

    class Renaming(type(slurm)):
        def node_facts(self, nodes):
            return {n: NodeFacts("elastic2", cpus=1, real_memory_mb=100) for n in nodes if n == "elastic1"}

    renaming = Renaming(slurm.facts)
    outcome = run(["elastic1"], config, renaming, kube, log)
    assert outcome.failed == {"elastic1": flow.UNSETTLED}
    assert renaming.down["elastic1"].startswith("slurm-k8s-bridge: the bridge made no pod for this node")


def test_an_error_part_way_releases_every_node_it_left(config, slurm, kube, log):
    from bridge.errors import KubernetesUnavailable

    def unreachable(manifests):
        raise KubernetesUnavailable("cannot reach the Kubernetes API: timed out after 10 s")

    kube.create_pods = unreachable
    slurm.add_job(6, ["elastic1", "elastic2"])
    request = parse('{"jobs":[{"job_id":6,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log, request)
    assert sorted(outcome.failed) == ["elastic1", "elastic2"] and outcome.exit_code() == 69
    assert sorted(slurm.powered_down) == ["elastic1", "elastic2"]  # passing cause: powered down, job requeued
    assert slurm.jobs[6]["state"] == "PENDING"


def test_node_in_no_nodeset_is_set_down_with_a_config_reason(config, slurm, kube, log):
    from bridge.slurm import NodeFacts
    slurm.facts["other1"] = NodeFacts("other1", cpus=1, real_memory_mb=100)
    outcome = run(["other1", "elastic1"], config, slurm, kube, log)
    assert outcome.created == ["elastic1"]
    assert "no nodeset matches node 'other1'" in slurm.down["other1"]
    assert outcome.exit_code() is None  # elastic1 went ahead


def test_all_nodes_failing_for_one_reason_report_its_exit_code(config, slurm, kube, log):
    from bridge.errors import KubernetesUnavailable
    kube.refuse = {f"linux-elastic{i}": KubernetesUnavailable("cannot reach the Kubernetes API") for i in (1, 2)}
    outcome = run(["elastic1", "elastic2"], config, slurm, kube, log)
    assert outcome.created == [] and len(outcome.failed) == 2
    assert outcome.exit_code() == 69


def test_pod_with_our_name_made_by_someone_else_is_never_touched(config, slurm, kube, log):
    foreign = {"metadata": {"name": "linux-elastic1", "labels": {"app": "mine"}}, "spec": {}}
    kube.pods["linux-elastic1"] = foreign
    outcome = run(["elastic1"], config, slurm, kube, log)
    assert kube.pods["linux-elastic1"] == foreign
    assert "not created by the bridge" in slurm.down["elastic1"]
    assert outcome.created == []


def test_finished_pod_of_ours_is_replaced(config, slurm, kube, log):
    run(["elastic1"], config, slurm, kube, log)
    kube.pods["linux-elastic1"]["status"] = {"phase": "Failed"}
    slurm.facts["elastic1"] = replace(slurm.facts["elastic1"], state=("IDLE", "CLOUD", "POWERING_UP"))
    outcome = run(["elastic1"], config, slurm, kube, log)
    assert outcome.created == ["elastic1"]
    assert kube.pods["linux-elastic1"]["status"] == {"phase": "Pending"}


def test_live_pod_left_from_another_job_is_replaced_not_reused(config, slurm, kube, log):
    old = parse('{"jobs":[{"job_id":5,"nodes":"elastic1"}],"all_nodes":"elastic1"}')
    new = parse('{"jobs":[{"job_id":7,"nodes":"elastic1"}],"all_nodes":"elastic1"}')
    run(["elastic1"], config, slurm, kube, log, old)
    kube.pods["linux-elastic1"]["status"] = {"phase": "Running"}
    slurm.facts["elastic1"] = replace(slurm.facts["elastic1"], state=("MIXED", "CLOUD", "POWERING_UP"))
    outcome = run(["elastic1"], config, slurm, kube, log, new)
    assert outcome.created == ["elastic1"] and outcome.existing == []
    assert kube.pods["linux-elastic1"]["metadata"]["labels"]["slurm-k8s-bridge/job-id"] == "7"


def test_nodes_powered_up_by_hand_fail_alone_but_are_released_together(config, slurm, kube, log):
    """``scontrol power_up elastic[1-4]``, no job: each failed node gets its own cause, a node
    whose pod was made is left alone, and the release lists the pods once, not once per node."""
    quota = 'Forbidden: exceeded quota: slurm, requested: pods=1, used: pods=10, limited: pods=10'
    kube.refuse["linux-elastic1"] = kube.refuse["linux-elastic2"] = KubernetesError(quota, code=403)
    kube.refuse["linux-elastic3"] = KubernetesError("ServiceUnavailable: etcd leader changed", code=503, transient=True)
    outcome = run(["elastic1", "elastic2", "elastic3", "elastic4"], config, slurm, kube, log)
    assert outcome.up() == ["elastic4"] and sorted(kube.pods) == ["linux-elastic4"]
    assert sorted(slurm.down) == ["elastic1", "elastic2"] and "exceeded quota" in slurm.down["elastic1"]
    assert list(slurm.powered_down) == ["elastic3"] and "etcd leader changed" in slurm.powered_down["elastic3"]
    assert "linux-elastic2" in slurm.down["elastic2"]  # its own cause, not elastic1's
    assert kube.calls.count("list") == 1


JOB_OF_FOUR = '{"jobs":[{"job_id":6,"nodes":"elastic[1-4]"}],"all_nodes":"elastic[1-4]"}'


def test_a_large_resume_creates_every_pod_chunk_by_chunk(config, slurm, kube, log, monkeypatch):
    monkeypatch.setattr(flow, "CHUNK", 3)
    slurm.add_job(6, ["elastic1", "elastic2", "elastic3", "elastic4"])
    outcome = run(["elastic1", "elastic2", "elastic3", "elastic4"], config, slurm, kube, log, parse(JOB_OF_FOUR))
    assert sorted(outcome.created) == ["elastic1", "elastic2", "elastic3", "elastic4"]
    assert kube.calls == ["create 3", "create 1"]
    assert sorted(kube.pods) == ["linux-elastic1", "linux-elastic2", "linux-elastic3", "linux-elastic4"]
    assert slurm.down == {} and not slurm.powered_down


def test_a_pod_refused_in_a_later_chunk_releases_the_pods_of_earlier_chunks(config, slurm, kube, log, monkeypatch):
    monkeypatch.setattr(flow, "CHUNK", 2)
    kube.refuse["linux-elastic4"] = KubernetesError('Forbidden: pods "linux-elastic4" is forbidden: quota', code=403)
    slurm.add_job(6, ["elastic1", "elastic2", "elastic3", "elastic4"])
    outcome = run(["elastic1", "elastic2", "elastic3", "elastic4"], config, slurm, kube, log, parse(JOB_OF_FOUR))
    assert kube.calls[:2] == ["create 2", "create 2"]
    assert kube.pods == {}  # elastic1 and elastic2's pods (first chunk) deleted too: no orphan
    assert list(slurm.down) == ["elastic4"]
    assert sorted(outcome.released) == ["elastic1", "elastic2", "elastic3"]
    assert slurm.jobs[6]["state"] == "PENDING"


def test_the_api_lost_after_the_first_chunk_leaves_no_pod_and_requeues_the_job(config, slurm, kube, log,
                                                                              monkeypatch):
    from bridge.errors import KubernetesUnavailable

    monkeypatch.setattr(flow, "CHUNK", 2)
    create = kube.create_pods

    def lost_after_one_chunk(manifests):
        if kube.pods:
            raise KubernetesUnavailable("cannot reach the Kubernetes API: timed out after 10 s")
        return create(manifests)

    kube.create_pods = lost_after_one_chunk
    slurm.add_job(6, ["elastic1", "elastic2", "elastic3", "elastic4"])
    outcome = run(["elastic1", "elastic2", "elastic3", "elastic4"], config, slurm, kube, log, parse(JOB_OF_FOUR))
    assert kube.pods == {}
    assert sorted(outcome.failed) == ["elastic3", "elastic4"]
    assert sorted(slurm.powered_down) == ["elastic1", "elastic2", "elastic3", "elastic4"]
    assert slurm.jobs[6]["state"] == "PENDING"
