"""Gang scheduling: a job's pods are one group in the scheduler's own terms."""

import pytest

from bridge import config as config_module, gang, resume, suspend
from bridge.errors import KubernetesError
from bridge.resumefile import parse
from bridge.slurm import NodeFacts
from tests.fakes import FakeSlurm

JOB = parse('{"jobs":[{"job_id":7,"nodes":"g[1-3]"}],"all_nodes":"g[1-3]"}')


@pytest.fixture
def gang_config(write_config, tmp_path):
    def make(gang: str):
        return config_module.load(str(write_config(f"""
            slurm: {{conf_server: "ctl:6817", cluster_name: linux}}
            log: {{file: null}}
            resume: {{state_dir: "{tmp_path / 'state'}"}}
            nodesets:
              - {{name: gpu, nodes: "g[1-4]", image: "slurmd:22.05", gang: {gang}}}
            """)))
    return make


@pytest.fixture
def gslurm():
    slurm = FakeSlurm({f"g{i}": NodeFacts(f"g{i}", cpus=8, real_memory_mb=8000) for i in range(1, 5)})
    slurm.add_job(7, ["g1", "g2", "g3"])
    return slurm


def test_volcano_podgroup_is_made_before_the_pods_with_the_jobs_size(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano, queue: hpc}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.calls[:2] == ["create-objects 1", "create 3"]
    group = kube.objects[("scheduling.volcano.sh/v1beta1", "PodGroup", "linux-job-7-gpu")]
    assert group["spec"] == {"minMember": 3, "queue": "hpc"}
    for pod in kube.pods.values():
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "linux-job-7-gpu"


def test_coscheduling_labels_the_pods_and_uses_its_scheduler(gang_config, gslurm, kube, log):
    config = gang_config("{kind: coscheduling}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.objects[("scheduling.x-k8s.io/v1alpha1", "PodGroup", "linux-job-7-gpu")]["spec"] == {"minMember": 3}
    pod = kube.pods["linux-g1"]
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "linux-job-7-gpu"
    assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"


def test_kueue_needs_labels_and_the_total_count_annotation_only(gang_config, gslurm, kube, log):
    config = gang_config("{kind: kueue, queue: research}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.objects == {}
    meta = kube.pods["linux-g2"]["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert meta["labels"]["kueue.x-k8s.io/pod-group-name"] == "linux-job-7-gpu"
    assert meta["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "3"


def test_kueue_without_a_queue_is_a_config_error(gang_config):
    with pytest.raises(config_module.ConfigError, match=r"nodesets\[0\].gang.queue"):
        gang_config("{kind: kueue}")


@pytest.mark.parametrize("gang, field", [
    ("{kind: kueue, queue: Research_Team}", "gang.queue"),  # a LocalQueue name is a DNS-1123 subdomain
    ("{kind: kueue, queue: " + "q" * 64 + "}", "gang.queue"),  # and a label value: 63 characters
    ("{kind: volcano, queue: 'gpu queue'}", "gang.queue"),
    ("{kind: coscheduling, scheduler_name: Scheduler_Plugins}", "gang.scheduler_name"),
])
def test_a_gang_name_the_api_would_refuse_is_a_config_error(gang_config, gang, field):
    """Caught when the config is read, not by a 422 after Slurm has chosen the nodes for a job."""
    with pytest.raises(config_module.ConfigError, match=rf"nodesets\[0\]\.{field}: expected .*, got"):
        gang_config(gang)


def test_manual_power_up_has_no_gang(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano}")
    resume.resume(["g4"], config=config, slurm=gslurm, kube=kube, log=log)
    assert kube.objects == {} and "schedulerName" not in kube.pods["linux-g4"]["spec"]


def test_failed_job_takes_its_podgroup_with_it(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano}")
    kube.refuse["linux-g3"] = KubernetesError("Forbidden: no", code=403)
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.pods == {} and kube.objects == {}


def test_podgroup_refused_fails_the_whole_gang_before_any_pod(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano}")
    kube.refuse["linux-job-7-gpu"] = KubernetesError('NotFound: the server could not find the requested resource', code=404)
    outcome = resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.pods == {} and "create 3" not in kube.calls
    assert "pod group linux-job-7-gpu: NotFound" in outcome.failed["g1"]


@pytest.mark.parametrize("kind, words", [
    ("volcano", "scheduling.volcano.sh/v1beta1 is not served: is Volcano installed?"),
    ("coscheduling", "scheduling.x-k8s.io/v1alpha1 is not served: is scheduler-plugins (coscheduling) installed?"),
])
def test_a_gang_api_that_is_not_served_is_a_lasting_cause_that_names_the_scheduler(gang_config, gslurm, kube, log,
                                                                                   kind, words):
    from bridge.errors import NotServed

    config = gang_config(f"{{kind: {kind}}}")
    api_version = gang.POD_GROUP_KINDS[kind][0]
    kube.refuse["linux-job-7-gpu"] = NotServed(f"{api_version} is not served by the Kubernetes API at x",
                                               api_version=api_version)
    outcome = resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.pods == {}
    assert outcome.failed["g1"] == f"pod group linux-job-7-gpu: {words}"
    assert set(gslurm.down) == {"g1", "g2", "g3"}  # DOWN, not powered down: an admin must install it


def test_suspend_deletes_the_group_with_its_last_pod(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    suspend.suspend(["g1", "g2"], config=config, kube=kube, log=log)
    assert len(kube.objects) == 1
    suspend.suspend(["g3"], config=config, kube=kube, log=log)
    assert kube.objects == {}


VOLCANO_GROUP = ("scheduling.volcano.sh/v1beta1", "PodGroup", "linux-job-7-gpu")


def test_repeated_resume_keeps_the_jobs_group_and_its_pods(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano, queue: hpc}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    kube.objects[VOLCANO_GROUP]["spec"]["minResources"] = {"cpu": "24"}  # what Volcano adds
    outcome = resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert outcome.failed == {} and sorted(outcome.existing) == ["g1", "g2", "g3"]
    assert kube.objects[VOLCANO_GROUP]["spec"]["minResources"] == {"cpu": "24"}  # not replaced
    assert not any(c.startswith("delete") for c in kube.calls)


def test_requeued_job_with_fewer_nodes_gets_a_group_of_its_new_size(gang_config, gslurm, kube, log):
    """A job of -N2-3 first resumed on 3 nodes, then requeued and resumed on 2: a group still
    asking for 3 would keep its 2 pods from ever being placed."""
    config = gang_config("{kind: volcano}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    kube.pods.clear()  # the first try's pods went with its release
    two = parse('{"jobs":[{"job_id":7,"nodes":"g[1-2]"}],"all_nodes":"g[1-2]"}')
    outcome = resume.resume(["g1", "g2"], config=config, slurm=gslurm, kube=kube, request=two, log=log)
    assert outcome.failed == {} and sorted(kube.pods) == ["linux-g1", "linux-g2"]
    assert kube.objects[VOLCANO_GROUP]["spec"] == {"minMember": 2}


def test_a_group_of_that_name_not_made_by_the_bridge_is_never_touched(gang_config, gslurm, kube, log):
    config = gang_config("{kind: volcano}")
    theirs = {"apiVersion": VOLCANO_GROUP[0], "kind": "PodGroup",
              "metadata": {"name": VOLCANO_GROUP[2], "namespace": "slurm", "labels": {"team": "ml"}},
              "spec": {"minMember": 3}}
    kube.objects[VOLCANO_GROUP] = theirs
    outcome = resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.objects[VOLCANO_GROUP] == theirs and kube.pods == {}
    assert "exists and was not created by the bridge for job 7" in outcome.failed["g1"]
    assert gslurm.down["g1"].startswith("slurm-k8s-bridge:")  # lasting: an admin must look


def test_a_gang_created_in_chunks_has_one_group_of_the_whole_job(gang_config, gslurm, kube, log, monkeypatch):
    monkeypatch.setattr(resume, "CHUNK", 2)
    config = gang_config("{kind: volcano, queue: hpc}")
    resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.calls[:3] == ["create-objects 1", "create 2", "create 1"]
    group = kube.objects[("scheduling.volcano.sh/v1beta1", "PodGroup", "linux-job-7-gpu")]
    assert group["spec"]["minMember"] == 3
    assert {p["metadata"]["annotations"]["scheduling.k8s.io/group-name"] for p in kube.pods.values()} == {
        "linux-job-7-gpu"} and len(kube.pods) == 3


def test_a_gang_pod_refused_in_a_later_chunk_deletes_earlier_pods_and_the_group(gang_config, gslurm, kube, log,
                                                                                monkeypatch):
    monkeypatch.setattr(resume, "CHUNK", 2)
    config = gang_config("{kind: volcano, queue: hpc}")
    kube.refuse["linux-g3"] = KubernetesError('Forbidden: pods "linux-g3" is forbidden: quota', code=403)
    outcome = resume.resume(["g1", "g2", "g3"], config=config, slurm=gslurm, kube=kube, request=JOB, log=log)
    assert kube.pods == {} and kube.objects == {}
    assert sorted(outcome.released) == ["g1", "g2"] and list(gslurm.down) == ["g3"]
