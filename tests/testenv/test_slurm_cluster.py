"""The Slurm side of the test environment, against the real daemons: a controller with CLOUD
nodes, whose ResumeProgram starts each node through the slurmd pod's entrypoint on this host."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv.slurm import (
    CLOUD_NODES_EXAMPLE, Hooks, NodeGroup, SlurmCluster, SlurmClusterError, Timeouts,
    read_node_groups,
)
from testenv.slurm.hosthooks import write_host_hooks
from testenv.slurm.hostnode import ENTRYPOINT, SYSTEM_PATH, entrypoint_command
from testenv.slurm.processes import is_alive, processes_using

pytestmark = pytest.mark.slurm

FAST = Timeouts(suspend_time=5, resume_timeout=30, suspend_timeout=2)


@pytest.fixture
def host_hooks(tmp_path: Path) -> Hooks:
    return write_host_hooks(tmp_path / "hooks")


@pytest.fixture
def cluster(host_hooks: Hooks) -> Iterator[SlurmCluster]:
    with SlurmCluster(node_groups=(NodeGroup(count=3, cpus=2),), hooks=host_hooks,
                      timeouts=FAST) as running:
        yield running


def _hook_logs(cluster: SlurmCluster) -> str:
    """What the hooks and nodes wrote, for assertion messages."""
    logs = sorted(cluster.log_dir.glob("hook-*.log")) + sorted(cluster.log_dir.glob("node-*"))
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs)


def _node_pid(cluster: SlurmCluster, node: str) -> int:
    return int((cluster.layout.run_dir / f"node-{node}.pid").read_text())


def test_cloud_nodes_start_powered_down_and_visible() -> None:
    groups = (NodeGroup(count=2, cpus=4, real_memory=2000, features=("cpu",)),
              NodeGroup(prefix="gpu", count=1, cpus=8, gres="gpu:2", features=("a100",)))
    with SlurmCluster(node_groups=groups) as cluster:
        nodes = {n["name"]: n for n in cluster.sinfo_nodes()}
        assert sorted(nodes) == ["elastic1", "elastic2", "gpu1"]
        for node in nodes.values():
            assert {"CLOUD", "POWERED_DOWN"} <= set(node["state_flags"]), node
            assert node["partitions"] == ["elastic"]
        assert nodes["elastic1"]["cpus"] == 4 and nodes["elastic1"]["real_memory"] == 2000
        assert nodes["gpu1"]["gres"] == "gpu:2" and nodes["gpu1"]["features"] == "a100"
        assert set(cluster.node_states().values()) == {"idle~"}


def test_the_documented_cloud_nodes_are_accepted_by_slurmctld() -> None:
    groups = read_node_groups(CLOUD_NODES_EXAMPLE)
    with SlurmCluster(node_groups=groups) as cluster:
        nodes = {n["name"]: n for n in cluster.sinfo_nodes()}
        assert len(nodes) == sum(g.count for g in groups)
        for group in groups:
            node = nodes[group.names[-1]]
            assert (node["cpus"], node["real_memory"], node["weight"]) == (
                group.cpus, group.real_memory, group.weight)
            assert node["features"] == ",".join(group.features)
            assert node["gres"] == group.gres
            assert node["reason"] == "", node["reason"]


def test_batch_job_resumes_nodes_completes_and_nodes_power_down(
        cluster: SlurmCluster, record_property: pytest.RecordProperty) -> None:
    cluster.wait_for_first_scheduling_pass()
    submitted = time.monotonic()
    job = cluster.run("sbatch", "--parsable", "-N2", "--wrap", "hostname").stdout.strip()
    try:
        cluster.wait_until(lambda: cluster.job_state(job) in ("RUNNING", "COMPLETED"),
                           timeout=45, what=f"job {job} to start", interval=0.05)
    except Exception:
        pytest.fail(f"job {job} never ran\n{_hook_logs(cluster)}")
    latency = time.monotonic() - submitted
    # ~1 s scheduling + ~1 s power-save tick + slurmd start; without a PrologSlurmctld that
    # waits for the nodes, a batch job would sit in CONFIGURING for up to 30 s. The latency is
    # recorded, not asserted: benchmarks/sbatch_latency.py measures it (a timed assertion flaked
    # once in CI-like runs on a loaded 2-core machine).
    record_property("sbatch_to_running_s", round(latency, 2))
    cluster.wait_until(lambda: cluster.job_state(job) == "COMPLETED", timeout=15,
                       what=f"job {job} to complete")
    assert (cluster.layout.job_dir / f"slurm-{job}.out").read_text().strip() == os.uname()[1]

    # SuspendTime 5 s, then the SuspendProgram stops both slurmd, then SuspendTimeout 2 s.
    cluster.wait_until(lambda: set(cluster.node_states().values()) == {"idle~"}, timeout=30,
                       what="the nodes to power down again")
    slurmds = [pid for pid in processes_using(cluster.state_dir)
               if Path(f"/proc/{pid}/comm").read_text().strip() in ("slurmd", "munged")
               and pid not in cluster.pids.values()]
    assert slurmds == [], "the SuspendProgram left node processes behind"


def test_gpu_node_registers_with_its_fake_gpus(host_hooks: Hooks) -> None:
    gpus = NodeGroup(prefix="gpu", count=1, cpus=4, gres="gpu:a100:2", real_memory=64000)
    with SlurmCluster(node_groups=(gpus,), hooks=host_hooks, timeouts=FAST) as cluster:
        job = cluster.run("sbatch", "--parsable", "--gres=gpu:2", "--wrap",
                          "echo $CUDA_VISIBLE_DEVICES").stdout.strip()
        cluster.wait_until(lambda: cluster.job_state(job) == "COMPLETED", timeout=25,
                           what=f"job {job} to complete")
        assert (cluster.layout.job_dir / f"slurm-{job}.out").read_text() == "0,1\n"
        assert cluster.sinfo_nodes()[0]["reason"] == ""  # not drained as INVALID_REG


def test_stop_leaves_no_process_and_no_directory(cluster: SlurmCluster) -> None:
    job = cluster.run("sbatch", "--parsable", "-N2", "--wrap", "sleep 300").stdout.strip()
    cluster.wait_until(lambda: cluster.job_state(job) == "RUNNING", timeout=25,
                       what=f"job {job} to run")
    state_dir = cluster.state_dir
    # munged, slurmctld (+scriptd), 2 x (slurmd, munged), the job's slurmstepd: slurmctld says
    # RUNNING when it sends the launch, a moment before the slurmstepd exists (7 seen in CI).
    cluster.wait_until(lambda: len(processes_using(state_dir)) >= 8, timeout=15,
                       what="the cluster's and the job's processes")
    started = processes_using(state_dir)

    cluster.stop()

    assert not state_dir.exists()
    assert [pid for pid in started if is_alive(pid)] == []
    assert processes_using(state_dir) == []


def test_a_failed_start_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"  # pytest's tmp_path is 0700: munged would refuse it
    with pytest.raises(SlurmClusterError, match="is not o\\+x, munged would refuse"):
        SlurmCluster(state_dir).start()
    assert not state_dir.exists()
    assert processes_using(state_dir) == []


def test_slurmd_leaves_on_sigterm(host_hooks: Hooks) -> None:
    # A long SuspendTime: the SuspendProgram must not be what stops the node here.
    with SlurmCluster(node_groups=(NodeGroup(count=1),), hooks=host_hooks,
                      timeouts=Timeouts(suspend_time=300)) as cluster:
        cluster.run("scontrol", "update", "nodename=elastic1", "state=power_up")
        cluster.wait_until(lambda: cluster.node_states()["elastic1"] == "idle", timeout=20,
                           what="elastic1 to register")
        slurmd = _node_pid(cluster, "elastic1")
        os.kill(slurmd, signal.SIGTERM)  # what the kubelet sends the pod's main process
        cluster.wait_until(lambda: not is_alive(slurmd), timeout=10, what="slurmd to exit")
        assert "Slurmd shutdown completing" in cluster.slurmd_log("elastic1").read_text()


# ---- the entrypoint alone ----------------------------------------------------------------------

def _entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env={"PATH": SYSTEM_PATH, **env},
                          capture_output=True, text=True, timeout=30)


def _key(path: Path, mode: int, content: bytes = b"k" * 1024) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_entrypoint_exits_2_with_one_line_when_key_missing(tmp_path: Path) -> None:
    missing = tmp_path / "munge.key"
    result = _entrypoint({"MUNGE_KEY_FILE": str(missing)})
    assert result.returncode == 2
    assert result.stderr == (
        f"slurmd-entrypoint: munge key {missing} is missing: mount the munge key Secret "
        "there (see rbac/munge-key-secret.example.yaml)\n")


def test_entrypoint_exits_2_when_key_empty(tmp_path: Path) -> None:
    result = _entrypoint({"MUNGE_KEY_FILE": str(_key(tmp_path / "k", 0o400, b""))})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is empty" in result.stderr


def test_entrypoint_exits_3_when_others_may_write_the_key(tmp_path: Path) -> None:
    result = _entrypoint({"MUNGE_KEY_FILE": str(_key(tmp_path / "k", 0o664))})
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "mode 664" in result.stderr


def _fake_devices(dev: Path, *names: str) -> Path:
    dev.mkdir()
    for name in names:
        (dev / name).touch()
    return dev


def test_entrypoint_exits_5_when_the_pod_lacks_granted_gpus(tmp_path: Path) -> None:
    dev = _fake_devices(tmp_path / "dev", "nvidia0", "nvidiactl", "nvidia-uvm")
    result = _entrypoint({"MUNGE_KEY_FILE": str(_key(tmp_path / "k", 0o400)),
                          "SLURMD_GPU_COUNT": "2", "SLURMD_GRES": "gpu:a100:2",
                          "SLURMD_DEV_DIR": str(dev)})
    assert result.returncode == 5
    assert result.stderr == (
        f"slurmd-entrypoint: node has Gres gpu:a100:2 but the pod sees 1 GPU device(s) in "
        f"{dev}: check the pod's GPU resource and the device plugin\n")


def test_entrypoint_accepts_a_secret_volume_key_and_execs_slurmd(tmp_path: Path) -> None:
    # A Secret volume: munge.key -> ..data/munge.key, mode 0644. munged alone refuses both.
    _key(tmp_path / "secret" / "..data" / "munge.key", 0o644)
    (tmp_path / "secret" / "munge.key").symlink_to("..data/munge.key")
    # The device plugin's GPUs keep their host numbers; gres.conf wants slurm-gpu0..N-1.
    dev = _fake_devices(tmp_path / "dev", "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm")
    env = {"PATH": SYSTEM_PATH, "MUNGE_KEY_FILE": str(tmp_path / "secret" / "munge.key"),
           "SLURMD_SPOOL_DIR": str(tmp_path / "spool"), "SLURMD_GPU_COUNT": "2",
           "SLURMD_DEV_DIR": str(dev)}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    # slurmd -V prints its version and exits: it only runs once munged answers.
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(entrypoint_command("-V"), env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)
    try:
        returncode = proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # munged: a pod's PID namespace ends it
            os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == 0, err.read_text()
    assert out.read_text().split()[-1] == "22.05.8"  # "slurm-wlm 22.05.8" on Debian
    assert (tmp_path / "spool").is_dir()
    assert [os.readlink(dev / f"slurm-gpu{i}") for i in (0, 1)] == [
        str(dev / "nvidia2"), str(dev / "nvidia10")]


def _in_a_pod_like_namespace(tmp_path: Path, memlock: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The entrypoint with private copies of /etc/passwd and /etc/group (it adds to them), a
    private /run, and RLIMIT_MEMLOCK as a container runtime would set it; slurmd -V at the end."""
    for name in ("passwd", "group"):
        (tmp_path / name).write_bytes(Path(f"/etc/{name}").read_bytes())
    setup = (f'mount --bind {tmp_path}/passwd /etc/passwd && mount --bind {tmp_path}/group /etc/group'
             ' && mount -t tmpfs -o mode=755 tmpfs /run && exec "$@"')
    argv = ["prlimit", f"--memlock={memlock}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", setup, "sh", "sh", str(ENTRYPOINT), "-V"]
    env = {"PATH": SYSTEM_PATH, "MUNGE_KEY_FILE": str(_key(tmp_path / "k", 0o400)),
           "SLURMD_SPOOL_DIR": str(tmp_path / "spool"), **env}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:  # not pipes: munged would hold them open
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        returncode = proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # munged: a pod's PID namespace ends it
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, returncode, out.read_text(), err.read_text())


def test_entrypoint_adds_the_site_users_but_never_redefines_the_images_own(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "passwd").write_text("carol:x:2901:2901:Carol:/home/carol:/bin/bash\n"
                                  "root:x:0:0:not root:/:/bin/sh\n"  # a name the image has
                                  "mallory:x:0:0::/:/bin/sh\n"  # an id the image has
                                  "broken line\n")
    (users / "group").write_text("carol:x:2901:\nlab:x:2950:carol\n")
    result = _in_a_pod_like_namespace(tmp_path, "8388608", {"SLURMD_USERS_DIR": str(users)})
    assert result.returncode == 0, result.stderr
    assert (f"slurmd-entrypoint: site users from {users}: passwd 1 added, 3 skipped; group 2 added, 0 skipped\n"
            in result.stderr)
    passwd = (tmp_path / "passwd").read_text()
    assert passwd == Path("/etc/passwd").read_text() + "carol:x:2901:2901:Carol:/home/carol:/bin/bash\n"
    assert (tmp_path / "group").read_text().endswith("carol:x:2901:\nlab:x:2950:carol\n")


@pytest.mark.parametrize(("rdma", "warned"), [({"SLURMD_RDMA_NETWORKS": "rdma-rail0,rdma-rail1"}, True), ({}, False)])
def test_entrypoint_says_once_when_rdma_jobs_would_be_capped_by_a_memlock_limit(tmp_path, rdma, warned) -> None:
    # This machine's root, like a container's, lacks CAP_SYS_RESOURCE: the 8 MiB hard limit stays.
    result = _in_a_pod_like_namespace(tmp_path, "4194304:8388608", rdma)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "locked memory" in line]
    expected = ["slurmd-entrypoint: RDMA networks rdma-rail0,rdma-rail1 but locked memory is limited to 8192 KiB: "
                "jobs cannot pin more; set LimitMEMLOCK=infinity for the container runtime "
                "(docs/hpc-nodes.md#locked-memory)"]
    assert lines == (expected if warned else [])
