"""Issue 8, item 5: jobs confined as on a static node. slurm.conf uses Slurm's defaults,
``ProctrackType=proctrack/cgroup`` and ``TaskPlugin=task/cgroup,task/affinity``, with a
cgroup.conf that slurmd fetches configless; the nodeset sets ``cgroups: true``, so the pod
template makes the slurmd container privileged, and the Docker runtime gives it what
privileged gives on containerd with cgroup v1 (testenv/runner/cgroups.py). Without that
grant the image refuses to start slurmd, and ``check`` refuses the configuration.

The fixtures here hold only what they start (an Environment, one container by id): the
engine is shared with other test sessions.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testenv import site
from testenv.docker import slurmd_image
from testenv.env import BIN, Environment
from tests.e2e.conftest import bridge_pods
from tests.e2e.test_researchers import (
    alice_run,
    as_user,
    finished,
    sbatch_as,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


@pytest.fixture(scope="module")
def env(docker_host: str) -> Iterator[Environment]:
    environment = Environment(runtime="docker", cgroups=True).start()
    try:
        environment.slurm.wait_for_first_scheduling_pass()
        yield environment
    finally:
        environment.stop()


def cgroups_of(output: str) -> dict[str, str]:
    """/proc/self/cgroup lines as controller -> path."""
    found = {}
    for line in output.splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            found[name] = path
    return found


def test_a_jobs_processes_are_in_slurms_job_cgroup_inside_the_pods(env, alice_run):
    job = sbatch_as(env, site.ALICE, alice_run, "-N1", "--mem=50M", "--wrap",
                    "cat /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status")
    assert finished(env, job) == "COMPLETED"
    output = (alice_run / f"slurm-{job}.out").read_text()
    paths = cgroups_of(output.split("Cpus_allowed_list")[0])
    step = rf"/slurm[^/]*/uid_{site.ALICE.uid}/job_{job}/step_batch"
    assert re.search(step + "$", paths["freezer"]), paths  # proctrack/cgroup tracks the job
    assert re.search(step + "/task_0$", paths["memory"]), paths  # task/cgroup confines it
    assert re.search(step + "$", paths["cpuset"]), paths
    # Under the pod's cgroup, whose limits are the pod's (not the host's root).
    assert all(paths[c].startswith("/slurm-k8s-bridge-pods/") for c in ("freezer", "memory", "cpuset")), paths
    assert re.search(r"Cpus_allowed_list:\s+\d+$", output, re.M), output  # one CPU: the node's one


def test_a_job_over_its_memory_is_out_of_memory_and_the_pod_lives_on(env, alice_run):
    job = sbatch_as(env, site.ALICE, alice_run, "-N1", "-w", "elastic1", "--mem=50M", "--wrap",
                    "head -c 300M /dev/zero | tail > /dev/null")  # tail holds a line without newline
    assert finished(env, job) == "OUT_OF_MEMORY"
    pod = bridge_pods(env)["elastic1"]
    assert pod.status.phase == "Running"
    assert pod.status.containerStatuses[0].restartCount == 0
    # The node still runs jobs: only the job's cgroup hit its limit.
    assert as_user(env, site.ALICE, "srun", "-N1", "-w", "elastic1", "--mem=50M", "echo", "alive").stdout == "alive\n"


def test_a_job_whose_launch_fails_is_failed_never_completed(env, alice_run):
    """The failure the cgroup plugins used to hide (COMPLETED 0:0 for a script that never ran):
    alice's directory passes the submit check, then is gone when the job starts, so slurmstepd
    cannot launch it in the pod."""
    gone = alice_run / "gone"
    as_user(env, site.ALICE, "mkdir", str(gone))
    job = sbatch_as(env, site.ALICE, gone, "-N1", "--hold", "--wrap", "echo ran")
    as_user(env, site.ALICE, "rmdir", str(gone))
    as_user(env, site.ALICE, "scontrol", "release", job)
    assert finished(env, job) == "FAILED"
    assert not (gone / f"slurm-{job}.out").exists()


def test_check_refuses_cgroup_plugins_on_a_nodeset_without_cgroups(env, tmp_path: Path):
    config = yaml.safe_load(env.bridge_config_path.read_text())
    for nodeset in config["nodesets"]:
        nodeset.pop("cgroups")
    path = tmp_path / "k8s-bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    ok = run_check(env, env.bridge_config_path)
    assert any(line.startswith("OK   cgroups: ProctrackType=proctrack/cgroup and TaskPlugin=task/cgroup: every "
                               "nodeset sets cgroups: true") for line in ok.stdout.splitlines()), ok.stdout
    refused = run_check(env, path)
    line = next(line for line in refused.stdout.splitlines() if " cgroups: " in line)
    assert line.startswith("FAIL cgroups: ProctrackType=proctrack/cgroup and TaskPlugin=task/cgroup: slurmd in the "
                           "pods of nodeset(s) elastic cannot use it")
    assert refused.returncode == 78


def run_check(env: Environment, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(config), "check"],
                          env={"SLURM_CONF": str(env.slurm.conf_path)}, capture_output=True, text=True, timeout=60)


def test_an_unprivileged_pod_with_cgroups_refuses_to_start_slurmd(docker_host: str):
    """What a pod gets where the site dropped ``privileged`` (a policy, a template of its own):
    runc's read-only cgroup mounts. slurmd never registers, so no job can run there."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=60)
    container = client.containers.create(slurmd_image(), ["-b", "-N", "elastic1", "--conf-server", "127.0.0.1:1"],
                                         environment={"SLURMD_CGROUPS": "1"}, network_mode="host",
                                         labels={"org.slurm-k8s-bridge.test": __name__})
    try:
        container.start()
        code = container.wait(timeout=30)["StatusCode"]
        output = container.logs().decode()
    finally:
        container.remove(force=True)
        client.close()
    assert code == 6
    assert output == ("slurmd-entrypoint: cgroups: true but /sys/fs/cgroup/freezer is read-only: slurmd's cgroup "
                      "plugins would fail every job; run the pod with securityContext privileged: true "
                      "(docs/hpc-nodes.md#cgroups)\n")


# --- the test environment's model of a privileged pod ----------------------------------------

PROBE = ("for c in freezer cpuset memory devices; do mkdir /sys/fs/cgroup/$c/probe 2>&1 && echo $c writable; done; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; grep -m1 memory /proc/self/cgroup")


def run_in_docker_runtime(docker_host: str, tmp_path: Path, *, privileged: bool) -> tuple[str, list[Path]]:
    """One container through the runner's Docker runtime (no Kubernetes around it): its output,
    and the pod cgroups still on this machine after it was waited for."""
    import asyncio

    from testenv.runner import cgroups
    from testenv.runner.docker import DockerRuntime
    from testenv.runner.runtime import ContainerConfig

    async def run() -> tuple[str, list[Path]]:
        runtime = DockerRuntime(docker_host=docker_host)
        try:
            image = await runtime.image_present(slurmd_image())
            assert image is not None
            config = ContainerConfig(
                pod_namespace="test", pod_name="cgroup-probe", pod_uid="0", name="probe", image=image,
                command=("sh", "-c", PROBE), args=None, env=(), working_dir=None, hostname="probe", mounts=(),
                log_path=tmp_path / "probe.log", limits=(("memory", "300Mi"),), privileged=privileged)
            await runtime.wait_container(await runtime.start_container(config))
            mine = Path("/sys/fs/cgroup/memory") / cgroups.TOP / runtime.instance
            return config.log_path.read_text(), [p for p in mine.glob("*") if p.is_dir()]
        finally:
            await runtime.close()

    return asyncio.run(run())


def test_a_privileged_container_may_create_cgroups_under_its_pods_memory_limit(docker_host: str, tmp_path: Path):
    output, left = run_in_docker_runtime(docker_host, tmp_path, privileged=True)
    lines = output.splitlines()
    assert lines[:5] == ["freezer writable", "cpuset writable", "memory writable", "devices writable",
                         str(300 * 2**20)], output
    assert re.fullmatch(r"\d+:memory:/slurm-k8s-bridge-pods/\w+/\w+/\w+", lines[5]), output
    assert left == []  # the pod's cgroups, and the one the container made, went with it


def test_an_unprivileged_container_sees_its_cgroups_read_only(docker_host: str, tmp_path: Path):
    output, _ = run_in_docker_runtime(docker_host, tmp_path, privileged=False)
    assert "writable" not in output
    assert output.count("Read-only file system") == 4, output
