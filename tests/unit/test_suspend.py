"""The suspend and resume-fail flows: only the bridge's pods of the named nodes go."""

from bridge import resume, suspend


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
