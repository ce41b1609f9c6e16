"""Issue 2, end to end: sbatch and srun on elastic nodes whose slurmd runs in pods."""

from __future__ import annotations

from lightkube.resources.core_v1 import Pod

from testenv import site
from testenv.env import NAMESPACE
from tests.e2e.conftest import bridge_pods, job_field, node_field, run_hook, sbatch, wait_for
from tests.e2e.test_researchers import alice_run, as_user, sbatch_as  # noqa: F401 (alice_run is a fixture)


def test_sbatch_runs_on_pods_which_are_gone_after_suspend_time(env, alice_run):
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "--wrap", "srun hostname; sleep 2")
    wait_for(lambda: env.slurm.job_state(job) == "RUNNING", timeout=30, what="job running")
    pods = bridge_pods(env)
    assert sorted(pods) == ["elastic1", "elastic2"]
    assert all(p.status.phase == "Running" for p in pods.values())
    assert {p.metadata.labels["slurm-k8s-bridge/job-id"] for p in pods.values()} == {job}
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=30, what="job completed")
    output = (alice_run / f"slurm-{job}.out").read_text()
    assert sorted(output.split()) == ["elastic1", "elastic2"]
    # SuspendTime (5 s here) later Slurm suspends the nodes and the bridge deletes the pods.
    wait_for(lambda: not bridge_pods(env), timeout=30, what="pods deleted after SuspendTime")
    wait_for(lambda: env.slurm.node_states().get("elastic1") == "idle~", timeout=20, what="node powered down")


def test_srun_prints_both_node_names(env, alice_run):
    result = as_user(env, site.ALICE, "srun", "-N2", "hostname", cwd=alice_run)
    assert sorted(result.stdout.split()) == ["elastic1", "elastic2"]


def test_refused_pod_sets_node_down_with_the_bridges_reason_and_requeues_the_job(env):
    env.add_fault(verb="create", resource="pods", name="testenv-elastic2", code=403, reason="Forbidden",
                  message='pods "testenv-elastic2" is forbidden: admission webhook "policy.example" denied the request')
    job = sbatch(env, "-N2", "--wrap", "hostname")
    reason = wait_for(lambda: node_field(env, "elastic2", "Reason").startswith("slurm-k8s-bridge:")
                      and node_field(env, "elastic2", "Reason"), timeout=20, what="elastic2 DOWN with a reason")
    assert "forbidden" in reason and "admission webhook" in reason
    assert node_field(env, "elastic2", "State").split("+")[0] == "DOWN"
    wait_for(lambda: env.slurm.job_state(job) == "PENDING", timeout=10, what="job requeued")
    assert int(job_field(env, job, "Restarts")) >= 1
    # All or nothing: elastic1's pod was released too, nothing holds resources.
    wait_for(lambda: not bridge_pods(env), timeout=10, what="no pod left")


def test_resume_twice_creates_no_duplicate(env):
    first = run_hook(env, "slurm-k8s-resume", "elastic3")
    second = run_hook(env, "slurm-k8s-resume", "elastic3")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    pods = env.kube().list(Pod, namespace=NAMESPACE)
    assert [p.metadata.name for p in pods if "elastic3" in p.metadata.name] == ["testenv-elastic3"]
    records = [r for r in env.bridge_log_records() if r.get("event") == "resume done"]
    assert (records[-2]["created"], records[-1]["created"], records[-1]["existing"]) == (1, 0, 1)


def test_suspend_leaves_a_pod_without_the_bridges_labels_untouched(env):
    from lightkube import codecs

    foreign = codecs.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "someone-elses", "namespace": NAMESPACE,
                     "annotations": {"slurm-k8s-bridge/node-name": "elastic4"}, "labels": {"app": "other"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"]}]}})
    client = env.kube()
    client.create(foreign)
    assert run_hook(env, "slurm-k8s-resume", "elastic4").returncode == 0
    assert run_hook(env, "slurm-k8s-suspend", "elastic4").returncode == 0
    assert client.get(Pod, "someone-elses").metadata.deletionTimestamp is None  # not even being deleted
    # Gone well within its 30 s grace period, although it was deleted while its slurmd started.
    wait_for(lambda: "testenv-elastic4" not in {p.metadata.name for p in client.list(Pod, namespace=NAMESPACE)},
             timeout=10, what="the bridge's own pod gone")


def _cli(env, *args):
    import subprocess

    from testenv.env import BIN

    return subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), *args],
                          capture_output=True, text=True, timeout=60, env={"SLURM_CONF": str(env.slurm.conf_path)})


def test_admin_cli_renders_what_resume_would_create_and_lists_the_pods(env):
    import functools

    import yaml

    cli = functools.partial(_cli, env)
    rendered = cli("render", "elastic[1-2]")
    assert rendered.returncode == 0, rendered.stderr
    pods = list(yaml.safe_load_all(rendered.stdout))
    assert [p["spec"]["containers"][0]["args"][2] for p in pods] == ["elastic1", "elastic2"]
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1"  # the Slurm node's CPUs
    assert bridge_pods(env) == {}  # render creates nothing
    assert run_hook(env, "slurm-k8s-resume", "elastic1").returncode == 0
    listed = cli("pods")
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["elastic1", "testenv-elastic1"]
    unknown = cli("render", "nosuchnode")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_admin_cli_suspend_keeps_the_pod_of_a_node_running_a_job_unless_forced(env, alice_run):
    # An admin's `slurm-k8s-bridge suspend` on a node that runs a researcher's job: the pod (and
    # alice's job) stay, and the command says why and exits 75; --force deletes it.
    job = sbatch_as(env, site.ALICE, alice_run, "-N1", "-w", "elastic1", "--wrap", "sleep 300")
    wait_for(lambda: env.slurm.job_state(job) == "RUNNING", timeout=30, what="job running")
    kept = _cli(env, "suspend", "elastic1")
    assert kept.returncode == 75, kept.stderr
    assert "kept elastic1: Slurm has them up" in kept.stdout and "--force" in kept.stdout
    assert "elastic1" in bridge_pods(env)
    assert as_user(env, site.ALICE, "squeue", "-h", "-j", job, "-o", "%T %N").stdout.split() == ["RUNNING", "elastic1"]
    forced = _cli(env, "suspend", "--force", "elastic1")
    assert forced.returncode == 0 and forced.stdout.startswith("deleted 1,"), forced.stdout + forced.stderr
    wait_for(lambda: "elastic1" not in bridge_pods(env), timeout=40, what="the pod gone")
    env.slurm.run("scancel", job)
