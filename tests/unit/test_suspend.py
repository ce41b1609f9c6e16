"""The suspend and resume-fail flows: only the bridge's pods of the named nodes go."""

from dataclasses import replace

import pytest

from bridge import owed, resume, suspend
from bridge.errors import KubernetesError


def unreachable(labels):
    """A pod listing while the API server cannot be reached."""
    raise KubernetesError("cannot reach the Kubernetes API: connection refused", transient=True)


def test_suspend_deletes_the_pods_of_the_nodes(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2", "elastic3"], config=config, slurm=slurm, kube=kube, log=log)
    outcome = suspend.suspend(["elastic1", "elastic2"], config=config, kube=kube, log=log)
    assert sorted(outcome.deleted) == ["elastic1", "elastic2"]
    assert sorted(kube.pods) == ["linux-elastic3"]


def test_suspend_leaves_pods_without_the_bridges_labels_alone(config, slurm, kube, log):
    kube.pods["linux-elastic1"] = {"metadata": {"name": "linux-elastic1", "labels": {"app": "other"},
                                                "annotations": {"slurm-k8s-bridge/node-name": "elastic1"}}}
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log)
    assert outcome.absent == ["elastic1"]
    assert "linux-elastic1" in kube.pods


def test_suspend_of_a_node_without_pod_is_not_an_error(config, kube, log):
    outcome = suspend.suspend(["elastic4"], config=config, kube=kube, log=log)
    assert outcome.absent == ["elastic4"] and outcome.failed == {}


def test_resume_fail_records_why_and_deletes(config, slurm, kube, log):
    resume.resume(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    kube.pods["linux-elastic1"]["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    outcome = suspend.resume_failed(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    assert outcome.deleted == ["elastic1"] and kube.pods == {}
    assert kube.events[0]["reason"] == "ResumeTimeout"
    assert "0/3 nodes are available: 3 Insufficient cpu." in kube.events[0]["message"]


def test_pod_problem_reads_container_waiting_reasons():
    pod = {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "slurmd", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}}
    assert suspend.pod_problem(pod) == "slurmd: ImagePullBackOff: not found"


def test_resume_fail_puts_back_the_cause_slurm_overwrote(config, slurm, kube, log):
    from bridge import causes
    causes.remember(config.resume.state_dir, "elastic2", "pod linux-elastic2: Forbidden: quota", log=log)
    suspend.resume_failed(["elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    assert slurm.down["elastic2"] == "slurm-k8s-bridge: pod linux-elastic2: Forbidden: quota"


def test_resume_fail_puts_back_the_cause_even_when_kubernetes_cannot_be_reached(config, slurm, kube, log,
                                                                               monkeypatch):
    from bridge import causes
    causes.remember(config.resume.state_dir, "elastic2", "pod linux-elastic2: Forbidden: quota", log=log)
    monkeypatch.setattr(kube, "list_pods", unreachable)
    with pytest.raises(KubernetesError):  # the hook exits 69 on it
        suspend.resume_failed(["elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    assert slurm.down["elastic2"] == "slurm-k8s-bridge: pod linux-elastic2: Forbidden: quota"


SERVER_ERROR = KubernetesError("InternalError: Internal error occurred: injected fault", code=500, transient=True)


class Clock:
    def __init__(self, on_sleep=lambda now: None):
        self.now, self.on_sleep = 0.0, on_sleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.on_sleep(self.now)


def test_suspend_keeps_deleting_through_10_s_of_server_errors(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    kube.refuse_delete["linux-elastic1"] = SERVER_ERROR
    clock = Clock(lambda now: now >= 10 and kube.refuse_delete.clear())
    outcome = suspend.suspend(["elastic1", "elastic2"], config=config, kube=kube, log=log, clock=clock,
                              sleep=clock.sleep)
    assert sorted(outcome.deleted) == ["elastic1", "elastic2"] and outcome.failed == {}
    assert kube.pods == {} and 10 <= clock.now <= 12
    assert owed.owed(config.resume.state_dir) == {}


def test_a_suspend_that_cannot_delete_says_so_and_the_next_hook_call_deletes_the_pod(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    kube.refuse_delete["linux-elastic1"] = SERVER_ERROR
    clock = Clock()
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, clock=clock, sleep=clock.sleep)
    assert list(outcome.failed) == ["elastic1"] and "InternalError" in outcome.failed["elastic1"]
    assert clock.now <= suspend.DELETE_BUDGET  # bounded: the hook ends, exit 75
    event = next(e for e in kube.events if e["reason"] == "SlurmSuspendFailed")
    assert event["pod"] == "linux-elastic1" and "is powered down but its pod could not be deleted" in event["message"]
    assert "linux-elastic1" in kube.pods and list(owed.owed(config.resume.state_dir)) == ["elastic1"]
    kube.refuse_delete.clear()  # the API is back: the next suspend, of another node, pays the debt
    suspend.suspend(["elastic2"], config=config, kube=kube, log=log)
    assert kube.pods == {} and owed.owed(config.resume.state_dir) == {}


def test_a_lasting_delete_error_is_not_retried(config, slurm, kube, log):
    resume.resume(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    kube.refuse_delete["linux-elastic1"] = KubernetesError("Forbidden: no", code=403)
    clock = Clock()
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, clock=clock, sleep=clock.sleep)
    assert list(outcome.failed) == ["elastic1"] and clock.now == 0


def test_a_suspend_killed_mid_way_leaves_the_delete_owed_and_the_nodes_next_resume_replaces_the_pod(
        config, slurm, kube, log, monkeypatch):
    resume.resume(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    old_uid = kube.pods["linux-elastic1"]["metadata"]["uid"]

    def killed(names):
        raise SystemExit(-9)  # SIGKILL between the owed record and the deletes reaching the API

    monkeypatch.setattr(kube, "delete_pods", killed)
    with pytest.raises(SystemExit):
        suspend.suspend(["elastic1"], config=config, kube=kube, log=log)
    monkeypatch.undo()
    assert owed.owed(config.resume.state_dir) == {"elastic1": ("linux-elastic1", old_uid)}
    # Powered up again by hand (no job: the job label alone cannot tell the old pod is stale).
    slurm.facts["elastic1"] = replace(slurm.facts["elastic1"], state=("IDLE", "CLOUD", "POWERING_UP"))
    outcome = resume.resume(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    assert outcome.created == ["elastic1"] and kube.pods["linux-elastic1"]["metadata"]["uid"] != old_uid
    assert owed.owed(config.resume.state_dir) == {}


def test_resume_fail_pays_what_an_earlier_suspend_owes(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    owed.owe(config.resume.state_dir, {"elastic1": ("linux-elastic1", kube.pods["linux-elastic1"]["metadata"]["uid"])},
             log=log)
    suspend.resume_failed(["elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    assert kube.pods == {}


def test_a_pod_made_after_the_debt_is_not_owed(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    owed.owe(config.resume.state_dir, {"elastic1": ("linux-elastic1", "uid-of-an-older-pod")}, log=log)
    suspend.suspend(["elastic2"], config=config, kube=kube, log=log)
    assert list(kube.pods) == ["linux-elastic1"]
    assert owed.owed(config.resume.state_dir) == {}  # that older pod is gone: nothing owed any more


def test_a_suspend_that_cannot_list_the_pods_owes_them_and_the_next_call_pays_only_those(
        config, slurm, kube, log, monkeypatch):
    # SuspendProgram while the API answers nothing: Slurm counts elastic1 and elastic2 powered
    # down whatever happens. The pods they had then are owed; one made later (a new job's) is not.
    import time as clock

    resume.resume(["elastic1", "elastic2", "elastic3"], config=config, slurm=slurm, kube=kube, log=log)
    for name in kube.pods:
        kube.pods[name]["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    monkeypatch.setattr(kube, "list_pod_metadata", unreachable)
    monkeypatch.setattr(kube, "list_pods", unreachable)
    with pytest.raises(KubernetesError):  # the hook exits 69
        suspend.suspend(["elastic1", "elastic2"], config=config, kube=kube, log=log)
    monkeypatch.undo()
    assert sorted(owed.owed(config.resume.state_dir)) == ["elastic1", "elastic2"]
    # Meanwhile elastic2 was resumed for a new job: its new pod is younger than the debt.
    del kube.pods["linux-elastic2"]
    resume.resume(["elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    kube.pods["linux-elastic2"]["metadata"]["creationTimestamp"] = \
        clock.strftime("%Y-%m-%dT%H:%M:%SZ", clock.gmtime(clock.time() + 5))
    suspend.suspend(["elastic3"], config=config, kube=kube, log=log)  # the API is back
    assert sorted(kube.pods) == ["linux-elastic2"]
    assert owed.owed(config.resume.state_dir) == {}


def test_an_admins_suspend_that_cannot_list_the_pods_owes_nothing(config, slurm, kube, log, monkeypatch):
    resume.resume(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)

    monkeypatch.setattr(kube, "list_pod_metadata", unreachable)
    with pytest.raises(KubernetesError):
        suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm, strict=True)
    assert owed.owed(config.resume.state_dir) == {}


OWNER = {"app.kubernetes.io/managed-by": "slurm-k8s-bridge", "slurm-k8s-bridge/cluster": "linux"}


def test_suspend_lists_only_the_pods_of_its_nodes(config, slurm, kube, log):
    # A suspend of a few nodes must not read every pod of a 10,000-node cluster.
    resume.resume(["elastic1", "elastic2", "elastic3"], config=config, slurm=slurm, kube=kube, log=log)
    kube.selectors.clear()
    suspend.suspend(["elastic2", "elastic1"], config=config, kube=kube, log=log)
    assert kube.selectors == [{**OWNER, "slurm-k8s-bridge/node": ["elastic1", "elastic2"]}]
    assert sorted(kube.pods) == ["linux-elastic3"]


def test_resume_fail_lists_only_the_pods_of_its_nodes(config, slurm, kube, log):
    resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, log=log)
    kube.selectors.clear()
    suspend.resume_failed(["elastic1"], config=config, slurm=slurm, kube=kube, log=log)
    assert {s["slurm-k8s-bridge/node"] == ["elastic1"] for s in kube.selectors} == {True}
    assert sorted(kube.pods) == ["linux-elastic2"]
