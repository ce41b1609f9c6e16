"""The slurmd pod image (docker/slurmd), run with testcontainers against a real slurmctld.

The container gets what the default pod template gives it: host network, its node's hostname,
the munge key in /etc/munge (a read-only directory, key mode 0400) and slurmd's arguments
`-b -N <node> --conf-server <slurmctld>`. The test cluster's slurm.conf names files in its
state directory (the AuthInfo munge socket, SlurmdSpoolDir, SlurmdLogFile), so that directory
is bound at the same path, as the Docker runtime does for the test environment.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv.slurm import NodeGroup, SlurmCluster
from tests.waiting import wait_for

pytestmark = pytest.mark.docker


def slurmd_container(image: str, *args: str, key_dir: Path | None = None, hostname: str = "elastic1",
                     share: Path | None = None, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image, network_mode="host", hostname=hostname, **kwargs).with_command(list(args))
    if key_dir is not None:
        container.with_volume_mapping(str(key_dir), "/etc/munge", "ro")
    if share is not None:
        container.with_volume_mapping(str(share), str(share), "rw")
    for key, value in (env or {}).items():
        container.with_env(key, value)
    return container


def wait_exit(container: Any, timeout: float = 30) -> tuple[int, str]:
    """Exit code and output (stdout + stderr) of a container that ends by itself."""
    wrapped = container.get_wrapped_container()
    code = wrapped.wait(timeout=timeout)["StatusCode"]
    return code, wrapped.logs().decode(errors="replace")


@pytest.fixture
def munge_key(tmp_path: Path) -> Path:
    """A directory like the Secret volume: munge.key, mode 0400."""
    directory = tmp_path / "munge-key"
    directory.mkdir()
    key = directory / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    return directory


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SlurmCluster]:
    with SlurmCluster(node_groups=(NodeGroup(count=1),)) as running:
        yield running


def test_image_tags_carry_the_slurm_version_of_this_hosts_slurmctld(slurmd_image: str, docker_client: Any) -> None:
    controller = subprocess.run(["slurmctld", "-V"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert slurmd_image.endswith(f":{controller}")
    output = docker_client.containers.run(slurmd_image, ["-V"], entrypoint=["slurmd"], remove=True).decode()
    assert output.split()[-1] == controller
    labels = docker_client.images.get(slurmd_image).labels
    # The set-up builds each Slurm release (22.05): the label names it, the tag the exact version.
    assert labels["org.opencontainers.image.version"].split(".")[:2] == controller.split(".")[:2]


def test_slurmd_registers_runs_a_step_and_leaves_on_sigterm(slurmd_image: str, cluster: SlurmCluster,
                                                            tmp_path: Path) -> None:
    key_dir = tmp_path / "key"
    key_dir.mkdir()
    shutil.copy(cluster.munge_key_path, key_dir / "munge.key")
    (key_dir / "munge.key").chmod(0o400)
    started = time.monotonic()
    container = slurmd_container(slurmd_image, "-b", "-N", "elastic1", "--conf-server", cluster.slurmctld_address,
                                 key_dir=key_dir, share=cluster.state_dir)
    with container:
        wait_for(lambda: cluster.node_states().get("elastic1") == "idle", timeout=30, what="elastic1 registered")
        registered = time.monotonic() - started
        logs = container.get_wrapped_container().logs().decode(errors="replace")
        assert 'Created socket "/run/munge/munge.socket.2"' in logs  # the container's own munged
        step = cluster.run("srun", "-w", "elastic1", "-N1", "sh", "-c", "hostname; cat /proc/1/comm", timeout=30)
        assert step.stdout.split() == ["elastic1", "tini"]  # in the container: the image's init is its PID 1

        wrapped = container.get_wrapped_container()
        grace = 10
        began = time.monotonic()
        wrapped.stop(timeout=grace)  # SIGTERM, SIGKILL after the grace period
        took = time.monotonic() - began
        wrapped.reload()
        state = wrapped.attrs["State"]
        assert (state["ExitCode"], state["OOMKilled"]) == (0, False), wrapped.logs().decode(errors="replace")[-2000:]
        assert took < grace, f"slurmd took {took:.1f} s to stop"  # exit 0, not 137: it stopped, no SIGKILL
        assert "Slurmd shutdown completing" in wrapped.logs().decode(errors="replace")
    print(f"container start -> node registered: {registered:.2f} s")


def _stop_time(container: Any) -> tuple[float, int]:
    """Seconds from SIGTERM (what the kubelet sends a deleted pod) to the container's exit, and
    its exit code."""
    began = time.monotonic()
    container.kill(signal="SIGTERM")
    code = container.wait(timeout=30)["StatusCode"]
    return time.monotonic() - began, code


def test_sigterm_while_the_entrypoint_starts_munged_stops_the_container_at_once(
    slurmd_image: str, munge_key: Path, docker_client: Any
) -> None:
    """A pod deleted while it starts must not wait out its grace period: a container's PID 1
    ignores a signal it has no handler for, so the image's PID 1 is tini, not the script."""
    container = docker_client.containers.create(
        slurmd_image, ["-b", "-N", "elastic1", "--conf-server", "127.0.0.1:1"], network_mode="host",
        hostname="elastic1", environment={"MUNGE_START_TIMEOUT": "30"},
        volumes={str(munge_key): {"bind": "/etc/munge", "mode": "ro"}})
    try:
        container.start()
        took, code = _stop_time(container)
    finally:
        container.remove(force=True)
    assert took < 15, f"SIGTERM took {took:.1f} s"  # not MUNGE_START_TIMEOUT's 30 s
    assert code in (0, 143), code  # killed by SIGTERM (tini's 128+15), or slurmd itself if it was that quick


def test_sigterm_while_slurmd_waits_for_its_config_stops_the_container_at_once(
    slurmd_image: str, munge_key: Path, docker_client: Any
) -> None:
    """slurmd installs its SIGTERM handler only once it has its config from slurmctld: a pod
    deleted while slurmctld is slow to answer (restarting, overloaded) stops at once all the same,
    instead of holding its node's GPUs until slurmd gives up (MessageTimeout) or the grace period
    ends. The "controller" here accepts connections and never answers."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        container = docker_client.containers.create(
            slurmd_image, ["-b", "-N", "elastic1", "--conf-server", f"127.0.0.1:{port}"], network_mode="host",
            hostname="elastic1", volumes={str(munge_key): {"bind": "/etc/munge", "mode": "ro"}})
        try:
            container.start()
            # slurmd has connected: its config request sits unanswered in the listen queue.
            wait_for(lambda: _established_to(port), timeout=20, what=f"slurmd connecting to 127.0.0.1:{port}")
            took, code = _stop_time(container)
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
    assert "failed to load configs" not in logs, "slurmd gave up on its own: the signal was not what stopped it"
    print(f"\nSIGTERM while slurmd waits for its config: stopped in {took:.1f} s")
    assert code == 143, code


def test_what_slurmstepd_writes_to_slurmd_log_file_reaches_the_pods_log(
    slurmd_image: str, munge_key: Path, docker_client: Any
) -> None:
    """slurmstepd has no stderr: a job's "Could not open stdout file" goes only to SlurmdLogFile.
    The entrypoint makes that file a link to slurmd's stderr, the container's log, so the
    cause of a JobLaunchFailure is in `kubectl logs`. The "controller" never answers: slurmd
    waits for its config while the file is written to, as slurmstepd would."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        container = docker_client.containers.create(
            slurmd_image, ["-b", "-N", "elastic1", "--conf-server", f"127.0.0.1:{port}"], network_mode="host",
            hostname="elastic1", environment={"SLURMD_LOG_FILE": "/var/log/slurm/slurmd-%n.log",
                                              "SLURM_NODENAME": "elastic1"},  # as the pod template sets it
            volumes={str(munge_key): {"bind": "/etc/munge", "mode": "ro"}})
        try:
            container.start()
            wait_for(lambda: _established_to(port), timeout=20, what=f"slurmd connecting to 127.0.0.1:{port}")
            link = container.exec_run(["readlink", "/var/log/slurm/slurmd-elastic1.log"]).output.decode().strip()
            owner = container.exec_run(["sh", "-c", f"cat /proc/$(echo {link} | cut -d/ -f3)/comm; "
                                                    f"cut -d' ' -f4 /proc/$(echo {link} | cut -d/ -f3)/stat"])
            line = "[1.batch] error: Could not open stdout file /home/alice/x/slurm-1.out: No such file or directory"
            wrote = container.exec_run(["sh", "-c", f"echo '{line}' >> /var/log/slurm/slurmd-elastic1.log"])
            wait_for(lambda: line in container.logs().decode(errors="replace"), timeout=10,
                     what="the line in the container's log")
        finally:
            container.remove(force=True)
    assert re.fullmatch(r"/proc/\d+/fd/2", link), link
    assert owner.output.decode().split() == ["slurmd", "1"], (link, owner.output)  # slurmd, tini's child
    assert wrote.exit_code == 0


def _established_to(port: int) -> bool:
    """A TCP connection to 127.0.0.1:port is established (the container shares this network)."""
    wanted = f"0100007F:{port:04X}"
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return any(row[2] == wanted and row[3] == "01" for row in rows)  # remote address, ESTABLISHED


def test_missing_munge_key_is_a_clear_message_and_exit_2(slurmd_image: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with slurmd_container(slurmd_image, "-b", "-N", "elastic1", "--conf-server", "127.0.0.1:1", key_dir=empty) as c:
        code, output = wait_exit(c)
    assert code == 2
    assert output.strip() == ("slurmd-entrypoint: munge key /etc/munge/munge.key is missing: mount the munge key "
                              "Secret there (see rbac/munge-key-secret.example.yaml)")


def test_no_key_volume_at_all_is_the_same_message(slurmd_image: str) -> None:
    """The image carries no key of its own (munge's package made one at build time: removed)."""
    with slurmd_container(slurmd_image, "-b", "-N", "elastic1", "--conf-server", "127.0.0.1:1") as c:
        code, output = wait_exit(c)
    assert code == 2 and "munge key /etc/munge/munge.key is missing" in output


def test_key_writable_by_others_is_refused_with_exit_3(slurmd_image: str, munge_key: Path) -> None:
    (munge_key / "munge.key").chmod(0o666)
    with slurmd_container(slurmd_image, "-N", "elastic1", "--conf-server", "127.0.0.1:1", key_dir=munge_key) as c:
        code, output = wait_exit(c)
    assert code == 3
    assert "has mode 666, writable by group or others: use defaultMode 0400 on the Secret volume" in output


def fake_gpus(directory: Path, minors: list[int]) -> list[Path]:
    """Character devices like the NVIDIA driver's (major 195): Docker passes them as --device."""
    directory.mkdir(exist_ok=True)
    devices = []
    for minor in minors:
        path = directory / f"nvidia{minor}"
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(195, minor))
        devices.append(path)
    return devices


def test_gpus_the_device_plugin_gave_are_linked_in_host_order_for_gres_conf(
    slurmd_image: str, munge_key: Path, tmp_path: Path
) -> None:
    """Host GPUs 3 and 5 appear as /dev/nvidia3 and /dev/nvidia5; gres.conf names slurm-gpu[0-1]."""
    devices = fake_gpus(tmp_path / "dev", [5, 3])
    script = "slurmd-entrypoint -V >/dev/null; for l in /dev/slurm-gpu*; do echo $l $(readlink $l); done"
    container = slurmd_container(
        slurmd_image, "-c", script, key_dir=munge_key, entrypoint=["sh"],
        devices=[f"{d}:/dev/{d.name}:rwm" for d in devices],
        env={"SLURMD_GPU_COUNT": "2", "SLURMD_GRES": "gpu:a100:2"})
    with container as c:
        code, output = wait_exit(c)
    assert code == 0, output
    links = re.findall(r"^(/dev/slurm-gpu\d) (\S+)$", output, re.MULTILINE)
    assert links == [("/dev/slurm-gpu0", "/dev/nvidia3"), ("/dev/slurm-gpu1", "/dev/nvidia5")]


def test_fewer_gpus_than_the_nodes_gres_refuses_to_register_with_exit_5(
    slurmd_image: str, munge_key: Path, tmp_path: Path
) -> None:
    (device,) = fake_gpus(tmp_path / "dev", [0])
    container = slurmd_container(
        slurmd_image, "-N", "gpu1", "--conf-server", "127.0.0.1:1", key_dir=munge_key,
        devices=[f"{device}:/dev/nvidia0:rwm"], env={"SLURMD_GPU_COUNT": "2", "SLURMD_GRES": "gpu:2"})
    with container as c:
        code, output = wait_exit(c)
    assert code == 5
    assert "node has Gres gpu:2 but the pod sees 1 GPU device(s) in /dev" in output


def test_dcgm_job_map_prolog_in_the_image_writes_the_job_under_its_gpu(
    slurmd_image: str, munge_key: Path, tmp_path: Path
) -> None:
    """The Prolog/Epilog path docs/hpc-nodes.md puts in slurm.conf exists in the image and, run
    as slurmd runs it (Slurm's variables only, no PATH), maps the job to the pod's GPU in the
    hostPath the pod template mounts; the epilog takes it out."""
    devices = fake_gpus(tmp_path / "dev", [5, 3])
    mapping = tmp_path / "dcgm-job-map"
    mapping.mkdir()
    job_map = "/usr/local/lib/slurm-k8s-bridge/dcgm-job-map.sh"
    slurm_env = "SLURM_JOB_ID=77 SLURMD_NODENAME=gpu1 SLURM_JOB_GPUS=1"
    script = (f"slurmd-entrypoint -V >/dev/null 2>&1 && env -i {slurm_env} SLURM_SCRIPT_CONTEXT=prolog_slurmd {job_map}"
              f" && cat /run/slurm-k8s-bridge/dcgm-job-map/5"
              f" && env -i {slurm_env} SLURM_SCRIPT_CONTEXT=epilog_slurmd {job_map}")
    container = slurmd_container(
        slurmd_image, "-c", script, key_dir=munge_key, entrypoint=["sh"],
        devices=[f"{d}:/dev/{d.name}:rwm" for d in devices],
        env={"SLURMD_GPU_COUNT": "2", "SLURMD_GRES": "gpu:a100:2"})
    container.with_volume_mapping(str(mapping), "/run/slurm-k8s-bridge/dcgm-job-map", "rw")
    with container as c:
        code, output = wait_exit(c)
    assert (code, output.split()) == (0, ["77"]), output  # Slurm's GPU 1 is /dev/nvidia5
    assert (mapping / "5").read_text() == ""
