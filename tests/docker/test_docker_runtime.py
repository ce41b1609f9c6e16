"""The pod runner with the Docker runtime, against the API stand-in: pods run from their images.

Containers write what they see into a hostPath directory of the test, which the test reads. The
image is the base image of the slurmd image (debian:bookworm-slim, made by testenv/docker-setup.sh).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from testenv.runner import BackoffPolicy, NodeSpec, PodRunner
from testenv.runner.docker import LABEL_RUNTIME, DockerRuntime
from testenv.scheduler import Scheduler
from tests.testenv.test_runner import (container_state, container_states, events_for, gone, make_pod, phase_is,
                                      pod_status, wait_until)

pytestmark = pytest.mark.docker

IMAGE = "debian:bookworm-slim"
NODE = NodeSpec(name="node-1", capacity={"cpu": "2", "memory": "8Gi", "pods": "20"},
                allocatable={"cpu": "2", "memory": "8Gi", "pods": "20"})


@pytest.fixture
def docker_runner(
    kubeapi_server: Any, docker_host: str, docker_client: Any, tmp_path: Path
) -> Iterator[Callable[..., PodRunner]]:
    from lightkube.config.kubeconfig import KubeConfig

    started: list[PodRunner] = []

    def start(**options: Any) -> PodRunner:
        runtime = DockerRuntime(docker_host=docker_host)
        runner = PodRunner(kubeconfig=KubeConfig.from_dict(kubeapi_server.kubeconfig()), nodes=[NODE],
                           state_dir=tmp_path / f"runner-{len(started)}", runtime=runtime,
                           backoff=BackoffPolicy(initial=0.2, maximum=1.0), heartbeat_interval=0.5)
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in reversed(started):
        runner.stop()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def pod(client: Client, name: str, script: str, **kwargs: Any) -> Pod:
    container = {"image": IMAGE, **kwargs.pop("container", {})}
    return make_pod(client, name, script, container=container, **kwargs)


def docker_container(docker_client: Any, kube: Client, pod_name: str) -> Any:
    container_id = wait_until(lambda: (state := container_state(kube, pod_name)) and state.containerID,
                              timeout=10, what=f"{pod_name}'s container id")
    assert container_id.startswith("docker://")
    return docker_client.containers.get(container_id.removeprefix("docker://"))


def test_pod_runs_from_its_image_with_hostname_env_volumes_and_limits(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner],
    docker_client: Any, out: Path,
) -> None:
    docker_runner()
    key = os.urandom(64)
    kubeapi_client.create(Secret.from_dict({"metadata": {"name": "munge-key"},
                                            "data": {"munge.key": base64.b64encode(key).decode()}}))
    kubeapi_client.create(ConfigMap.from_dict({"metadata": {"name": "site"}, "data": {"site.conf": "alpha\n"}}))
    script = (
        "hostname > /out/hostname; env > /out/env; stat -c %a /etc/munge/munge.key > /out/mode;"
        " cat /etc/munge/munge.key > /out/key; cat /etc/site/site.conf > /out/site; pwd > /out/pwd;"
        " { echo x >> /etc/munge/munge.key; } 2> /out/write-error; echo private > /scratch/file;"
        " cat /etc/debian_version > /out/debian; ls /proc | grep -c '^[0-9]' > /out/processes;"
        " echo done > /out/done; exec sleep 3600"
    )
    container = {
        "env": [{"name": "GREETING", "value": "hello"}, {"name": "MESSAGE", "value": "$(GREETING) world"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "workingDir": "/tmp",
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "munge-key", "mountPath": "/etc/munge", "readOnly": True},
                         {"name": "site", "mountPath": "/etc/site"},
                         {"name": "scratch", "mountPath": "/scratch"}],
    }
    volumes = [{"name": "munge-key", "secret": {"secretName": "munge-key", "defaultMode": 0o400}},
               {"name": "site", "configMap": {"name": "site"}},
               {"name": "scratch", "emptyDir": {}}]
    pod(kubeapi_client, "probe", script, out=out, container=container, volumes=volumes, hostname="elastic1")
    wait_until(lambda: (out / "done").exists(), timeout=30, what="the container's report")
    assert (out / "hostname").read_text().strip() == "elastic1"
    assert (out / "key").read_bytes() == key
    assert (out / "mode").read_text().strip() == "400"
    assert (out / "site").read_text() == "alpha\n"
    assert (out / "pwd").read_text().strip() == "/tmp"
    assert "Read-only file system" in (out / "write-error").read_text()
    assert (out / "debian").read_text().startswith("12.")  # the image's filesystem, not the host's
    assert int((out / "processes").read_text()) < 5  # its own PID namespace
    env_seen = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert (env_seen["MESSAGE"], env_seen["POD_NAME"], env_seen["HOSTNAME"]) == ("hello world", "probe", "elastic1")
    assert env_seen["PATH"].startswith("/usr/local/sbin")  # the image's ENV

    wait_until(lambda: phase_is(kubeapi_client, "probe", "Running"), what="Running")
    status = container_state(kubeapi_client, "probe")
    assert status.image == "docker.io/library/debian:bookworm-slim"
    assert status.imageID.startswith("docker.io/library/debian@sha256:")
    container = docker_container(docker_client, kubeapi_client, "probe")
    host_config = container.attrs["HostConfig"]
    assert (host_config["NanoCpus"], host_config["Memory"]) == (500_000_000, 64 * 2**20)
    assert host_config["MemorySwap"] == host_config["Memory"]  # no swap beyond the limit
    assert (host_config["NetworkMode"], host_config["RestartPolicy"]["Name"] or "no") == ("host", "no")
    assert container.labels["io.kubernetes.pod.name"] == "probe"

    kubeapi_client.delete(Pod, "probe")
    wait_until(lambda: gone(kubeapi_client, "probe"), timeout=20, what="pod deleted")
    assert not docker_client.containers.list(all=True, filters={"id": container.id})


@pytest.mark.parametrize(("code", "phase", "reason"), [(0, "Succeeded", "Completed"), (3, "Failed", "Error")])
def test_exit_code_and_restart_policy_never(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner],
    code: int, phase: str, reason: str,
) -> None:
    docker_runner()
    pod(kubeapi_client, "job", f"echo bye; exit {code}", restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "job", phase), timeout=30, what=phase)
    terminated = container_state(kubeapi_client, "job").state.terminated
    assert (terminated.exitCode, terminated.reason) == (code, reason)
    assert terminated.containerID.startswith("docker://")
    assert terminated.finishedAt >= terminated.startedAt


def test_crash_loop_with_restart_policy_always(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner]
) -> None:
    docker_runner()
    pod(kubeapi_client, "crasher", "echo starting; exit 3")
    state = wait_until(lambda: (s := container_state(kubeapi_client, "crasher")) and s.restartCount >= 2 and s,
                       timeout=30, what="restarts")
    assert (state.lastState.terminated.exitCode, state.lastState.terminated.reason) == (3, "Error")
    assert pod_status(kubeapi_client, "crasher").phase == "Running"


def test_memory_limit_exceeded_is_oom_killed(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner]
) -> None:
    docker_runner()
    # tail keeps a line without newline in memory: it grows until the cgroup's limit.
    resources = {"limits": {"memory": "32Mi"}}
    pod(kubeapi_client, "hog", "head -c 512M /dev/zero | tail > /dev/null", restartPolicy="Never",
        container={"resources": resources})
    wait_until(lambda: phase_is(kubeapi_client, "hog", "Failed"), timeout=60, what="Failed")
    terminated = container_state(kubeapi_client, "hog").state.terminated
    assert (terminated.reason, terminated.exitCode) == ("OOMKilled", 137)


def test_missing_image_is_err_image_pull_never_a_pull(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner]
) -> None:
    docker_runner()
    make_pod(kubeapi_client, "ghost", "true", container={"image": "registry.example.org/nope/missing:1.0"})
    seen: set[str] = set()

    def both(container: Any) -> bool:
        if container.state.waiting:
            seen.add(container.state.waiting.reason)
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    # Each try shows ErrImagePull only until its back-off starts, a few ms here: a watch sees
    # every status the pod goes through, polling every 50 ms may miss it on every try.
    container_states(kubeapi_client, "ghost", both, within=20)
    assert {"ErrImagePull", "ImagePullBackOff"} <= seen, f"in 20 s: {seen}"
    failed = [e.message for e in events_for(kubeapi_client, "ghost") if e.reason == "Failed"]
    assert any('Failed to pull image "registry.example.org/nope/missing:1.0": rpc error: code = NotFound' in m
               for m in failed), failed
    assert phase_is(kubeapi_client, "ghost", "Pending")


def test_bad_command_is_a_start_error(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner]
) -> None:
    docker_runner()
    make_pod(kubeapi_client, "typo", "", container={"image": IMAGE, "command": ["/no/such/program"]},
             restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "typo", "Failed"), timeout=30, what="Failed")
    terminated = container_state(kubeapi_client, "typo").state.terminated
    assert terminated.reason == "StartError"
    assert "/no/such/program" in terminated.message


def test_exec_readiness_probe_runs_in_the_container(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner], out: Path
) -> None:
    docker_runner()
    # /etc/debian_version exists in the image and on this host: /ready only in the container.
    probe = {"exec": {"command": ["sh", "-c", "test -e /ready && test -e /etc/debian_version"]},
             "periodSeconds": 1, "failureThreshold": 1}
    pod(kubeapi_client, "slow-start", "sleep 4; touch /ready; exec sleep 3600", container={"readinessProbe": probe})
    wait_until(lambda: phase_is(kubeapi_client, "slow-start", "Running"), timeout=30, what="Running")
    assert not container_state(kubeapi_client, "slow-start").ready
    wait_until(lambda: container_state(kubeapi_client, "slow-start").ready, timeout=20, what="ready")


def test_graceful_delete_runs_pre_stop_sends_sigterm_and_removes_the_container(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner],
    docker_client: Any, out: Path,
) -> None:
    docker_runner()
    script = "trap 'echo term > /out/signal; exit 0' TERM; echo up > /out/up; while :; do sleep 0.1; done"
    pre_stop = {"preStop": {"exec": {"command": ["sh", "-c", "echo drain $(hostname) > /out/pre-stop"]}}}
    pod(kubeapi_client, "stopper", script, out=out, terminationGracePeriodSeconds=20, hostname="elastic9",
        container={"lifecycle": pre_stop})
    wait_until(lambda: (out / "up").exists(), timeout=30, what="container up")
    container = docker_container(docker_client, kubeapi_client, "stopper")
    kubeapi_client.delete(Pod, "stopper")
    wait_until(lambda: gone(kubeapi_client, "stopper"), timeout=15, what="pod gone well within its grace period")
    assert (out / "pre-stop").read_text().strip() == "drain elastic9"  # the hook ran in the container
    assert (out / "signal").read_text().strip() == "term"
    assert not docker_client.containers.list(all=True, filters={"id": container.id})


def test_stopping_the_runner_removes_its_containers(
    kubeapi_client: Client, scheduler_default: Scheduler, docker_runner: Callable[..., PodRunner],
    docker_client: Any,
) -> None:
    runner = docker_runner()
    for name in ("a", "b"):
        pod(kubeapi_client, name, "exec sleep 3600")
    wait_until(lambda: all(phase_is(kubeapi_client, n, "Running") for n in ("a", "b")), timeout=30, what="Running")
    instance = runner.service.runtime.instance
    assert len(docker_client.containers.list(filters={"label": f"{LABEL_RUNTIME}={instance}"})) == 2
    runner.stop()
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUNTIME}={instance}"})


def test_pods_granted_one_gpu_each_see_their_own_device_only(
    kubeapi_client: Client, kubeapi_server: Any, docker_host: str, tmp_path: Path, out: Path
) -> None:
    """The devices the node's device plugin grants reach the container as --device nodes."""
    from lightkube.config.kubeconfig import KubeConfig

    gpu_node = NodeSpec(name="gpu-node", capacity={"cpu": "4", "memory": "8Gi", "pods": "20", "nvidia.com/gpu": "2"},
                        allocatable={"cpu": "4", "memory": "8Gi", "pods": "20", "nvidia.com/gpu": "2"})
    runner = PodRunner(kubeconfig=KubeConfig.from_dict(kubeapi_server.kubeconfig()), nodes=[gpu_node],
                       state_dir=tmp_path / "runner", runtime=DockerRuntime(docker_host=docker_host),
                       backoff=BackoffPolicy(initial=0.2, maximum=1.0), heartbeat_interval=0.5)
    show = ("cd /dev && stat -c '%n %t:%T' nvidia* > /out/$HOSTNAME.devices; "
            "echo $NVIDIA_VISIBLE_DEVICES > /out/$HOSTNAME.env; touch /out/$HOSTNAME.done; exec sleep 3600")
    with runner:
        for name in ("gpu-a", "gpu-b"):
            pod(kubeapi_client, name, show, out=out, nodeName="gpu-node", hostname=name,
                container={"resources": {"limits": {"nvidia.com/gpu": "1"}}})
        wait_until(lambda: (out / "gpu-a.done").exists() and (out / "gpu-b.done").exists(), timeout=30,
                   what="both pods looked")
        seen = sorted((out / f"{name}.devices").read_text().splitlines() for name in ("gpu-a", "gpu-b"))
        assert seen == [["nvidia0 c3:0", "nvidiactl c3:ff"], ["nvidia1 c3:1", "nvidiactl c3:ff"]]
        ids = [(out / f"{name}.env").read_text().strip() for name in ("gpu-a", "gpu-b")]
        assert all(i.startswith("GPU-") for i in ids) and ids[0] != ids[1]
    assert not Path("/dev/nvidia0").exists()  # the host's /dev is untouched
