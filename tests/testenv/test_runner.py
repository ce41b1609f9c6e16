"""The pod runner (kubelet stand-in) with the process runtime, against the API stand-in.

Containers write what they see into a hostPath directory of the test, which the test reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Pod, Secret

from testenv.kubeapi import KubeApiServer
from testenv.runner import NodeSpec, PodRunner
from testenv.runner.images import ImageTable
from testenv.runner.process import ProcessRuntime
from testenv.runner.runtime import Runtime
from testenv.scheduler import Scheduler
from tests.waiting import wait_for as wait_until

def make_pod(
    client: Client,
    name: str,
    script: str,
    *,
    out: Path | None = None,
    labels: dict[str, str] | None = None,
    container: dict[str, Any] | None = None,
    **spec: Any,
) -> Pod:
    """A busybox pod running `script` with sh; `out` (a host directory) is mounted at /out."""
    main: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["sh", "-c", script], **(container or {})}
    volumes = list(spec.pop("volumes", []))
    if out is not None:
        volumes.append({"name": "out", "hostPath": {"path": str(out), "type": "Directory"}})
        main["volumeMounts"] = [*main.get("volumeMounts", []), {"name": "out", "mountPath": "/out"}]
    body = {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [main], "volumes": volumes, **spec},
    }
    body["spec"].setdefault("terminationGracePeriodSeconds", 5)
    return client.create(Pod.from_dict(body))


def pod_status(client: Client, name: str) -> Any:
    return client.get(Pod, name).status


def phase_is(client: Client, name: str, *phases: str) -> bool:
    return pod_status(client, name).phase in phases


def container_state(client: Client, name: str, index: int = 0) -> Any:
    statuses = pod_status(client, name).containerStatuses or []
    return statuses[index] if statuses else None


def gone(client: Client, name: str) -> bool:
    try:
        client.get(Pod, name)
    except ApiError as e:
        return e.status.code == 404
    return False


def events_for(client: Client, pod: str) -> list[Event]:
    return [e for e in client.list(Event, namespace="default") if e.involvedObject.name == pod]


def reasons(client: Client, pod: str) -> set[str]:
    return {e.reason for e in events_for(client, pod)}


def pid_of(client: Client, name: str) -> int:
    container_id = container_state(client, name).containerID
    assert container_id.startswith("process://")
    return int(container_id.removeprefix("process://"))


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


# --- running pods --------------------------------------------------------------------------------


def test_scheduled_pod_runs_and_reports_like_a_kubelet(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(kubeapi_client, "web", "sleep 3600")
    wait_until(lambda: phase_is(kubeapi_client, "web", "Running"), what="Running")

    status = pod_status(kubeapi_client, "web")
    assert (status.podIP, status.hostIP, status.podIPs[0].ip) == ("127.0.0.1", "127.0.0.1", "127.0.0.1")
    assert status.startTime is not None
    (container,) = status.containerStatuses
    assert container.state.running.startedAt is not None
    assert (container.ready, container.started, container.restartCount) == (True, True, 0)
    assert container.image == "docker.io/library/busybox:latest"
    assert container.imageID.startswith("docker.io/library/busybox@sha256:")
    assert alive(pid_of(kubeapi_client, "web"))
    conditions = {c.type: c.status for c in status.conditions}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert all(c.lastTransitionTime is not None for c in status.conditions)
    wait_until(lambda: {"Scheduled", "Pulling", "Pulled", "Created", "Started"} <= reasons(kubeapi_client, "web"))
    started = next(e for e in events_for(kubeapi_client, "web") if e.reason == "Started")
    assert (started.source.component, started.source.host) == ("kubelet", "node-1")
    assert started.involvedObject.fieldPath == "spec.containers{main}"


def test_container_sees_its_hostname_env_and_secret_files(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    key = os.urandom(64)
    kubeapi_client.create(
        Secret.from_dict(
            {
                "metadata": {"name": "munge-key"},
                "data": {"munge.key": base64.b64encode(key).decode(), "owner": base64.b64encode(b"munge").decode()},
            }
        )
    )
    kubeapi_client.create(ConfigMap.from_dict({"metadata": {"name": "site"}, "data": {"CLUSTER": "alpha"}}))
    script = (
        "hostname > /out/hostname; env > /out/env; stat -c %a /etc/munge/munge.key > /out/mode;"
        " cat /etc/munge/munge.key > /out/key; { echo x >> /etc/munge/munge.key; } 2> /out/write-error; pwd > /out/pwd;"
        " ps -e -o pid= | wc -l > /out/processes"
    )
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "MESSAGE", "value": "$(GREETING) world"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "KEY_OWNER", "valueFrom": {"secretKeyRef": {"name": "munge-key", "key": "owner"}}},
    ]
    container = {
        "env": env,
        "envFrom": [{"configMapRef": {"name": "site"}, "prefix": "SITE_"}],
        "workingDir": "/tmp",
        "volumeMounts": [{"name": "munge-key", "mountPath": "/etc/munge/munge.key", "subPath": "munge.key"}],
    }
    volumes = [{"name": "munge-key", "secret": {"secretName": "munge-key", "defaultMode": 0o400}}]
    make_pod(
        kubeapi_client, "probe", script, out=out, labels={"tier": "compute"}, container=container,
        volumes=volumes, hostname="elastic1", restartPolicy="Never",
    )  # fmt: skip
    wait_until(lambda: phase_is(kubeapi_client, "probe", "Succeeded", "Failed"), what="completion")
    assert (out / "hostname").read_text().strip() == "elastic1"
    assert (out / "key").read_bytes() == key
    assert (out / "mode").read_text().strip() == "400"
    assert "Read-only file system" in (out / "write-error").read_text()
    assert (out / "pwd").read_text().strip() == "/tmp"
    assert int((out / "processes").read_text()) < 10  # its own PID namespace, not the host's
    env_seen = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert env_seen["MESSAGE"] == "hello world"
    assert (env_seen["POD_NAME"], env_seen["NODE"], env_seen["POD_IP"]) == ("probe", "node-1", "127.0.0.1")
    assert (env_seen["TIER"], env_seen["SITE_CLUSTER"], env_seen["HOSTNAME"]) == ("compute", "alpha", "elastic1")
    assert env_seen["KEY_OWNER"] == "munge"
    assert phase_is(kubeapi_client, "probe", "Succeeded")
    assert not Path("/etc/munge/munge.key").exists() or Path("/etc/munge/munge.key").read_bytes() != key


@pytest.mark.parametrize(
    ("code", "phase", "reason", "ready_reason"),
    [(0, "Succeeded", "Completed", "PodCompleted"), (1, "Failed", "Error", "PodFailed")],
)
def test_container_exit_with_restart_policy_never_ends_the_pod(
    kubeapi_client: Client,
    scheduler_default: Scheduler,
    runner_node1: PodRunner,
    code: int,
    phase: str,
    reason: str,
    ready_reason: str,
) -> None:
    make_pod(kubeapi_client, "job", f"exit {code}", restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "job", phase), what=phase)
    status = pod_status(kubeapi_client, "job")
    terminated = status.containerStatuses[0].state.terminated
    assert (terminated.exitCode, terminated.reason) == (code, reason)
    assert terminated.startedAt is not None and terminated.finishedAt is not None
    assert terminated.containerID.startswith("process://")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", ready_reason)
    time.sleep(0.3)  # restartPolicy Never: no restart may follow the exit
    assert pod_status(kubeapi_client, "job").containerStatuses[0].restartCount == 0
    assert container_state(kubeapi_client, "job").restartCount == 0


def container_states(client: Client, pod: str, until: Callable[[Any], bool],
                      within: int | None = None) -> list[tuple[Any, ...]]:
    """Every container state the pod's status went through, as a watch sees it:
    (restartCount, running/terminated/waiting reason, lastState exit code, when seen);
    ``within`` s at most (the server ends the watch)."""
    seen: list[tuple[Any, ...]] = []
    for _, obj in client.watch(Pod, namespace="default", fields={"metadata.name": pod}, server_timeout=within):
        statuses = obj.status.containerStatuses if obj.status else None
        if not statuses:
            continue
        c = statuses[0]
        kind = c.state.waiting.reason if c.state.waiting else ("running" if c.state.running else "terminated")
        last = c.lastState.terminated.exitCode if c.lastState and c.lastState.terminated else None
        if not seen or seen[-1][:3] != (c.restartCount, kind, last):
            seen.append((c.restartCount, kind, last, time.monotonic()))
        if until(c):
            return seen
    return seen


def test_crash_loop_shows_the_exit_through_the_back_off_and_crash_loop_back_off_just_before_the_restart(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory
) -> None:
    """As a 1.36 kubelet: the first restart at once; then each back-off shows state.terminated
    (restartCount >= 1, lastState the previous exit) until ~80 ms before the restart, when it
    shows waiting: CrashLoopBackOff."""
    from testenv.runner import BackoffPolicy

    runner_factory(backoff=BackoffPolicy(initial=1.0, maximum=1.0))
    make_pod(kubeapi_client, "crasher", "echo starting; exit 3")
    seen = container_states(kubeapi_client, "crasher", lambda c: c.restartCount >= 3)
    shape = [entry[:3] for entry in seen if entry[1] != "ContainerCreating"]
    assert shape == [(0, "running", None), (0, "terminated", None), (1, "running", 3),
                     (1, "terminated", 3), (1, "CrashLoopBackOff", 3), (2, "running", 3),
                     (2, "terminated", 3), (2, "CrashLoopBackOff", 3), (3, "running", 3)]
    when = {entry[:3]: entry[3] for entry in seen}
    for restarts in (1, 2):
        showing_exit = when[(restarts, "CrashLoopBackOff", 3)] - when[(restarts, "terminated", 3)]
        showing_back_off = when[(restarts + 1, "running", 3)] - when[(restarts, "CrashLoopBackOff", 3)]
        assert showing_exit > 0.5 and showing_back_off < showing_exit
    state = container_state(kubeapi_client, "crasher")
    assert (state.lastState.terminated.exitCode, state.lastState.terminated.reason) == (3, "Error")
    assert pod_status(kubeapi_client, "crasher").phase == "Running"  # restarting is not failing
    back_off = [e for e in events_for(kubeapi_client, "crasher") if e.reason == "BackOff"]
    assert back_off and back_off[0].type == "Warning"
    assert back_off[0].message.startswith("Back-off restarting failed container main in pod crasher_default(")


def test_pod_log_is_what_the_container_wrote_as_plain_text_through_the_api(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    """pods/log goes to the node's kubelet endpoint, as kube-apiserver proxies it."""
    make_pod(kubeapi_client, "talker", "for i in 1 2 3 4 5; do echo line $i; done; echo 'error: giving up' >&2; "
                                       "exec sleep 3600")

    def tail() -> str:
        return "".join(kubeapi_client.log("talker", namespace="default", container="main", tail_lines=2))

    wait_until(lambda: phase_is(kubeapi_client, "talker", "Running"), what="Running")
    assert wait_until(lambda: tail() == "line 5\nerror: giving up\n", what="the log's last two lines")
    everything = "".join(kubeapi_client.log("talker", namespace="default"))  # the only container
    assert everything.startswith("line 1\nline 2\n") and everything.count("\n") == 6


def test_pod_log_refusals_are_the_servers_and_the_kubelets(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(kubeapi_client, "ghostly", "true", container={"image": "registry.example.org/none:1", "imagePullPolicy": "Never"})
    wait_until(lambda: (container_state(kubeapi_client, "ghostly") or None) and
               container_state(kubeapi_client, "ghostly").state.waiting.reason == "ErrImageNeverPull",
               what="ErrImageNeverPull")
    with pytest.raises(ApiError) as refused:
        "".join(kubeapi_client.log("ghostly", namespace="default", container="main"))
    assert (refused.value.status.code, refused.value.status.reason) == (400, "BadRequest")
    assert refused.value.status.message == 'container "main" in pod "ghostly" is waiting to start: ErrImageNeverPull'
    with pytest.raises(ApiError) as invalid:
        "".join(kubeapi_client.log("ghostly", namespace="default", container="nope"))
    assert invalid.value.status.message == "container nope is not valid for pod ghostly"
    with pytest.raises(ApiError) as missing:
        "".join(kubeapi_client.log("nobody", namespace="default", container="main"))
    assert missing.value.status.code == 404


def test_on_failure_restarts_until_success(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    script = "echo run >> /out/runs; [ $(wc -l < /out/runs) -ge 3 ]"
    make_pod(kubeapi_client, "flaky", script, out=out, restartPolicy="OnFailure")
    wait_until(lambda: phase_is(kubeapi_client, "flaky", "Succeeded"), what="Succeeded")
    assert container_state(kubeapi_client, "flaky").restartCount == 2
    assert (out / "runs").read_text().count("run") == 3


def test_missing_image_shows_err_image_pull_then_back_off(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(kubeapi_client, "ghost", "true", container={"image": "registry.example.org/nope/missing:1.0"})

    def waiting_reasons() -> set[str]:
        state = container_state(kubeapi_client, "ghost")
        if state and state.state.waiting:
            seen.add(state.state.waiting.reason)
            messages[state.state.waiting.reason] = state.state.waiting.message
        return seen

    seen: set[str] = set()
    messages: dict[str, str] = {}
    wait_until(lambda: "ImagePullBackOff" in waiting_reasons(), what="ImagePullBackOff")
    assert phase_is(kubeapi_client, "ghost", "Pending")
    wanted = {"Error: ErrImagePull", "Error: ImagePullBackOff"}
    failed = wait_until(
        lambda: (
            (m := [e.message for e in events_for(kubeapi_client, "ghost") if e.reason == "Failed"])
            and wanted <= set(m)
            and m
        ),
        what="Failed events",
    )
    assert (
        'Failed to pull image "registry.example.org/nope/missing:1.0": rpc error: code = NotFound desc = '
        'failed to pull and unpack image "registry.example.org/nope/missing:1.0"'
    ) in failed[0]
    assert messages["ImagePullBackOff"].startswith('Back-off pulling image "registry.example.org/nope/missing:1.0"')
    # Each retry shows ErrImagePull only until its back-off starts, a few ms here: a watch sees it,
    # polling may not.
    retry = container_states(kubeapi_client, "ghost", within=10,
                              until=lambda c: bool(c.state.waiting) and c.state.waiting.reason == "ErrImagePull")
    assert retry and retry[-1][1] == "ErrImagePull", f"no ErrImagePull on a retry in 10 s: {retry}"


def test_init_containers_run_in_order_before_the_container(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    mount = [{"name": "out", "mountPath": "/out"}]
    inits = [
        {
            "name": "first",
            "image": "busybox",
            "command": ["sh", "-c", "echo first >> /out/order"],
            "volumeMounts": mount,
        },
        {
            "name": "second",
            "image": "busybox",
            "command": ["sh", "-c", "echo second >> /out/order"],
            "volumeMounts": mount,
        },
    ]
    make_pod(kubeapi_client, "staged", "echo main >> /out/order", out=out, initContainers=inits, restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "staged", "Succeeded"), what="Succeeded")
    assert (out / "order").read_text().split() == ["first", "second", "main"]
    status = pod_status(kubeapi_client, "staged")
    assert [s.state.terminated.reason for s in status.initContainerStatuses] == ["Completed", "Completed"]
    assert next(c for c in status.conditions if c.type == "Initialized").status == "True"


def test_failed_init_container_fails_a_never_restarting_pod(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    inits = [{"name": "check", "image": "busybox", "command": ["sh", "-c", "exit 7"]}]
    make_pod(kubeapi_client, "blocked", "touch /out/main-ran", out=out, initContainers=inits, restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "blocked", "Failed"), what="Failed")
    status = pod_status(kubeapi_client, "blocked")
    assert status.initContainerStatuses[0].state.terminated.exitCode == 7
    assert status.containerStatuses[0].state.waiting.reason == "PodInitializing"
    assert not (out / "main-ran").exists()


def test_readiness_probe_gates_ready(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    probe = {"exec": {"command": ["sh", "-c", "touch /out/probed; test -e /out/ready"]}, "periodSeconds": 1,
             "failureThreshold": 1}
    make_pod(kubeapi_client, "slow-start", "sleep 3600", out=out, container={"readinessProbe": probe})
    wait_until(lambda: phase_is(kubeapi_client, "slow-start", "Running"))
    wait_until(lambda: (out / "probed").exists(), what="the probe ran")  # and failed: not ready
    ready = {c.type: c for c in pod_status(kubeapi_client, "slow-start").conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    assert ready.message == "containers with unready status: [main]"
    (out / "ready").touch()
    wait_until(lambda: container_state(kubeapi_client, "slow-start").ready, what="ready")
    assert {c.type: c.status for c in pod_status(kubeapi_client, "slow-start").conditions}["Ready"] == "True"


def test_missing_secret_holds_the_pod_until_it_exists(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    volumes = [
        {"name": "conf", "configMap": {"name": "slurm-conf", "items": [{"key": "slurm.conf", "path": "slurm.conf"}]}}
    ]
    container = {"volumeMounts": [{"name": "conf", "mountPath": "/etc/slurm-test"}]}
    make_pod(
        kubeapi_client,
        "waits",
        "cp /etc/slurm-test/slurm.conf /out/",
        out=out,
        volumes=volumes,
        container=container,
        restartPolicy="Never",
    )
    wait_until(lambda: "FailedMount" in reasons(kubeapi_client, "waits"), what="FailedMount")
    mount_event = next(e for e in events_for(kubeapi_client, "waits") if e.reason == "FailedMount")
    assert mount_event.message == 'MountVolume.SetUp failed for volume "conf" : configmap "slurm-conf" not found'
    assert container_state(kubeapi_client, "waits").state.waiting.reason == "ContainerCreating"
    kubeapi_client.create(
        ConfigMap.from_dict({"metadata": {"name": "slurm-conf"}, "data": {"slurm.conf": "ClusterName=t\n"}})
    )
    wait_until(lambda: phase_is(kubeapi_client, "waits", "Succeeded"), timeout=15, what="Succeeded")
    assert (out / "slurm.conf").read_text() == "ClusterName=t\n"


def test_empty_dirs_are_private_to_each_pod(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    """What munged needs: /run/munge of its own in every pod, shared by the pod's containers only."""
    mount_point = Path("/run/testenv-munge")
    assert not mount_point.exists()
    for name in ("slurmd-a", "slurmd-b"):
        script = f"echo {name} > /run/testenv-munge/owner; sleep 0.5; cat /run/testenv-munge/owner > /out/{name}; ls /run/testenv-munge | wc -l >> /out/{name}"
        make_pod(
            kubeapi_client, name, script, out=out, restartPolicy="Never",
            volumes=[{"name": "run-munge", "emptyDir": {"medium": "Memory"}}],
            container={"volumeMounts": [{"name": "run-munge", "mountPath": "/run/testenv-munge"}]},
        )  # fmt: skip
    for name in ("slurmd-a", "slurmd-b"):
        wait_until(lambda name=name: phase_is(kubeapi_client, name, "Succeeded"), what=f"{name} done")
        assert (out / name).read_text().split() == [name, "1"]
    assert not mount_point.exists()  # the mount point made for them is gone with them
    assert "testenv-munge" not in Path("/proc/mounts").read_text()


# --- stopping pods -------------------------------------------------------------------------------


def test_graceful_delete_runs_pre_stop_then_sigterm_and_removes_the_pod(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    script = "trap 'echo term > /out/term; exit 0' TERM; while true; do sleep 0.1; done"
    pre_stop = {"preStop": {"exec": {"command": ["sh", "-c", "echo drain > /out/pre-stop"]}}}
    make_pod(kubeapi_client, "graceful", script, out=out, container={"lifecycle": pre_stop})
    wait_until(lambda: phase_is(kubeapi_client, "graceful", "Running"))
    pid = pid_of(kubeapi_client, "graceful")

    kubeapi_client.delete(Pod, "graceful")
    wait_until(lambda: gone(kubeapi_client, "graceful"), what="pod removed")
    assert (out / "pre-stop").read_text().strip() == "drain"
    assert (out / "term").read_text().strip() == "term"
    assert not alive(pid)
    killing = next(e for e in events_for(kubeapi_client, "graceful") if e.reason == "Killing")
    assert killing.message == "Stopping container main"


def test_sigterm_ignored_means_sigkill_after_the_grace_period(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(
        kubeapi_client, "stubborn", "trap '' TERM; while true; do sleep 0.1; done", terminationGracePeriodSeconds=1
    )
    wait_until(lambda: phase_is(kubeapi_client, "stubborn", "Running"))
    pid = pid_of(kubeapi_client, "stubborn")
    began = time.monotonic()
    kubeapi_client.delete(Pod, "stubborn")
    wait_until(lambda: gone(kubeapi_client, "stubborn"), what="pod removed")
    assert 0.9 < time.monotonic() - began < 5
    assert not alive(pid)


def test_force_deleted_pod_is_killed(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(kubeapi_client, "forced", "sleep 3600")
    wait_until(lambda: phase_is(kubeapi_client, "forced", "Running"))
    pid = pid_of(kubeapi_client, "forced")
    kubeapi_client.delete(Pod, "forced", grace_period=0)
    assert gone(kubeapi_client, "forced")
    wait_until(lambda: not alive(pid), timeout=5, what="process killed")


def test_signals_blocked_by_the_runners_parent_reach_the_container(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner], out: Path
) -> None:
    """Slurm's hooks start children with SIGTERM/SIGINT/SIGHUP blocked (facts/slurm.md)."""
    blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        runner_factory()  # its thread, and every process it starts, inherit the mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    script = "grep -E '^Sig(Blk|Ign)' /proc/self/status > /out/signals; trap 'touch /out/term; exit 0' TERM; while true; do sleep 0.1; done"
    make_pod(kubeapi_client, "masked", script, out=out)
    wait_until(lambda: (out / "signals").exists() and (out / "signals").read_text().count("\n") == 2)
    assert all(line.split()[1] == "0000000000000000" for line in (out / "signals").read_text().splitlines())
    kubeapi_client.delete(Pod, "masked")
    wait_until(lambda: gone(kubeapi_client, "masked"))
    assert (out / "term").exists()


class HeldRuntime:
    """The process runtime, with one of its calls held `hold` s after the runner makes it (a slow
    image pull or container start), so a test can delete the pod inside that window every time."""

    def __init__(self, inner: Runtime, call: str, hold: float) -> None:
        self._inner, self._call, self._hold = inner, call, hold
        self.name = inner.name
        self.entered = threading.Event()  # set from the runner's thread when the held call begins

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name != self._call:
            return method

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await asyncio.sleep(self._hold)
            return await method(*args, **kwargs)

        return held


# A program that, like the slurmd entrypoint before it execs slurmd, handles no SIGTERM for a
# while: as the container's PID 1 it cannot be stopped by SIGTERM until it installs its trap.
SLOW_TO_TRAP = "sleep 1; trap 'exit 0' TERM; touch /out/$HOSTNAME.trap; while :; do sleep 0.1; done"


@pytest.mark.parametrize("call", ["pull_image", "start_container"])
def test_pod_deleted_while_its_container_starts_is_removed_at_once(
    kubeapi_client: Client,
    runner_factory: Callable[..., PodRunner],
    runner_images: Path,
    tmp_path: Path,
    out: Path,
    call: str,
) -> None:
    """A deletion the runner sees before the start (image pull) or during it (container start)
    starts nothing more, or kills what was being started: the pod goes within seconds, not at the
    end of its 30 s grace period, and its program never gets as far as its SIGTERM trap (nor is
    it reported started)."""
    held = HeldRuntime(ProcessRuntime(images=ImageTable.load(runner_images), state_dir=tmp_path / "rt"), call, 0.5)
    runner_factory(runtime=held)
    for attempt in range(3):
        name = f"overtaken-{attempt}"
        held.entered.clear()
        make_pod(kubeapi_client, name, SLOW_TO_TRAP, out=out, nodeName="node-1", terminationGracePeriodSeconds=30)
        assert held.entered.wait(10), f"the runner did not start {name}"
        began = time.monotonic()
        kubeapi_client.delete(Pod, name)
        wait_until(lambda: gone(kubeapi_client, name), timeout=5, what=f"{name} removed")
        assert time.monotonic() - began < 15  # not at the end of its 30 s grace period
        assert not (out / f"{name}.trap").exists()
        assert "Started" not in reasons(kubeapi_client, name)


# --- devices ---------------------------------------------------------------------------------------

GPU_NODE = NodeSpec(
    name="gpu-node",
    capacity={"cpu": "4", "memory": "8Gi", "pods": "20", "nvidia.com/gpu": "2"},
    allocatable={"cpu": "4", "memory": "8Gi", "pods": "20", "nvidia.com/gpu": "2"},
)
# What the container sees of its GPUs: device nodes (name, major:minor in hex) and the plugin's variable.
SHOW_GPUS = (
    "cd /dev && stat -c '%n %t:%T' nvidia* > /out/$HOSTNAME.devices; "
    "echo $NVIDIA_VISIBLE_DEVICES > /out/$HOSTNAME.env; echo ok > /dev/null && touch /out/$HOSTNAME.done; sleep 3600"
)


def gpu_pod(client: Client, name: str, out: Path, gpus: int = 1) -> Pod:
    return make_pod(client, name, SHOW_GPUS, out=out, nodeName="gpu-node",
                    container={"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}})


def test_pods_granted_one_gpu_each_see_their_own_device_only(
    kubeapi_client: Client, runner_factory: Callable[..., PodRunner], out: Path
) -> None:
    runner_factory([GPU_NODE])
    for name in ("gpu-a", "gpu-b"):
        gpu_pod(kubeapi_client, name, out)
    wait_until(lambda: (out / "gpu-a.done").exists() and (out / "gpu-b.done").exists(), what="both pods looked")
    seen = {name: (out / f"{name}.devices").read_text().splitlines() for name in ("gpu-a", "gpu-b")}
    assert sorted(seen.values()) == [["nvidia0 c3:0", "nvidiactl c3:ff"], ["nvidia1 c3:1", "nvidiactl c3:ff"]]
    ids = [(out / f"{name}.env").read_text().strip() for name in ("gpu-a", "gpu-b")]
    assert all(i.startswith("GPU-") and "," not in i for i in ids) and ids[0] != ids[1]
    assert not Path("/dev/nvidia0").exists()  # the host's /dev is untouched

    # Both GPUs are taken: the kubelet rejects a third pod bound to the node anyway...
    gpu_pod(kubeapi_client, "gpu-c", out)
    status = wait_until(lambda: phase_is(kubeapi_client, "gpu-c", "Failed") and pod_status(kubeapi_client, "gpu-c"))
    assert status.reason == "UnexpectedAdmissionError"
    assert status.message == ("Pod was rejected: Allocate failed due to requested number of devices unavailable "
                              "for nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected")
    # ...and a pod that goes gives its GPU back.
    kubeapi_client.delete(Pod, "gpu-a")
    wait_until(lambda: gone(kubeapi_client, "gpu-a"), what="gpu-a removed")
    gpu_pod(kubeapi_client, "gpu-d", out)
    wait_until(lambda: (out / "gpu-d.done").exists(), what="gpu-d looked")
    assert (out / "gpu-d.devices").read_text().splitlines() == seen["gpu-a"]


# --- nodes and the runner itself -----------------------------------------------------------------


def test_nodes_are_registered_ready_and_heartbeating(
    kubeapi_client: Client, runner_factory: Callable[..., PodRunner]
) -> None:
    gpu = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "8", "nvidia.com/mig-1g.10gb": "7"}
    spec = NodeSpec(
        name="gpu-1",
        capacity=gpu,
        allocatable={**gpu, "cpu": "7500m"},
        labels={"nvidia.com/gpu.product": "A100"},
        taints=({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},),
    )
    runner_factory([spec], heartbeat_interval=0.2)
    node = kubeapi_client.get(Node, "gpu-1")
    assert node.status.capacity["nvidia.com/gpu"] == "8"
    assert node.status.allocatable["cpu"] == "7500m"
    assert node.metadata.labels["nvidia.com/gpu.product"] == "A100"
    assert node.metadata.labels["kubernetes.io/hostname"] == "gpu-1"
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("nvidia.com/gpu", "present", "NoSchedule")]
    assert {(a.type, a.address) for a in node.status.addresses} == {("InternalIP", "127.0.0.1"), ("Hostname", "gpu-1")}
    assert node.status.nodeInfo.operatingSystem == "linux"
    ready = {c.type: c for c in node.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    first_beat = ready.lastHeartbeatTime
    wait_until(
        lambda: (
            {c.type: c for c in kubeapi_client.get(Node, "gpu-1").status.conditions}["Ready"].lastHeartbeatTime
            > first_beat
        ),
        timeout=5,
        what="a later heartbeat",
    )


def test_stopping_the_runner_leaves_no_process_mount_or_directory(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    runner = runner_factory(state_dir=state)
    volumes = [{"name": "scratch", "emptyDir": {"medium": "Memory"}}, {"name": "spool", "emptyDir": {}}]
    mounts = [
        {"name": "scratch", "mountPath": "/run/testenv-scratch"},
        {"name": "spool", "mountPath": "/var/spool/testenv-slurmd"},
    ]
    make_pod(kubeapi_client, "daemon", "sleep 3600 & wait", volumes=volumes, container={"volumeMounts": mounts})
    make_pod(kubeapi_client, "looper", "while true; do sleep 0.1; done")
    for name in ("daemon", "looper"):
        wait_until(lambda name=name: phase_is(kubeapi_client, name, "Running"))
    pids = [pid_of(kubeapi_client, name) for name in ("daemon", "looper")]
    assert Path("/run/testenv-scratch").exists() and (state / "pods").exists()

    runner.stop()
    assert not any(alive(pid) for pid in pids)
    assert not Path("/run/testenv-scratch").exists() and not Path("/var/spool/testenv-slurmd").exists()
    assert str(state) not in Path("/proc/mounts").read_text()
    assert not (state / "pods").exists() or not any((state / "pods").iterdir())
    assert not (state / "containers").exists() or not any((state / "containers").iterdir())
    ready = {c.type: c for c in kubeapi_client.get(Node, "node-1").status.conditions}["Ready"]
    assert ready.status == "Unknown"


@pytest.mark.timeout(60)
def test_runner_cli_runs_pods_and_stops_on_sigterm(
    kubeapi_server: KubeApiServer,
    kubeapi_client: Client,
    scheduler_default: Scheduler,
    tmp_path: Path,
    runner_images: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeapi_server.write_kubeconfig(kubeconfig)
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("nodes:\n  - name: cli-node\n    capacity: {cpu: 2, memory: 4Gi, nvidia.com/gpu: 1}\n")
    command = [
        sys.executable, "-m", "testenv.runner", "--kubeconfig", str(kubeconfig), "--nodes", str(nodes),
        "--runtime", "process", "--state-dir", str(tmp_path / "state"), "--images", str(runner_images),
        "--on-stop", "delete",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: not gone_node(kubeapi_client, "cli-node"), timeout=20, what="node registered")
        make_pod(
            kubeapi_client,
            "via-cli",
            "sleep 3600",
            container={"image": "example.org/tools/sleeper:1.0", "command": None},
        )
        wait_until(lambda: phase_is(kubeapi_client, "via-cli", "Running"), timeout=20)
        pid = pid_of(kubeapi_client, "via-cli")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()
    assert not alive(pid)
    assert gone_node(kubeapi_client, "cli-node")


def gone_node(client: Client, name: str) -> bool:
    try:
        client.get(Node, name)
    except ApiError as e:
        return e.status.code == 404
    return False


# --- the real consumer ---------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_slurmd_pod_with_munge_key_secret_joins_slurm_and_runs_a_step(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner], tmp_path: Path
) -> None:
    """The slurmd pod as the bridge makes it: entrypoint (munged + slurmd -D -b -N), key from a
    Secret with defaultMode 0400, private /run/munge and spool dir from emptyDirs."""
    from testenv.slurm import NodeGroup, SlurmCluster
    from testenv.slurm.hostnode import ENTRYPOINT

    images = tmp_path / "slurm-images.yaml"
    images.write_text(f"images:\n  example.org/slurm/slurmd:22.05: {{entrypoint: [{ENTRYPOINT}]}}\n")
    with SlurmCluster(node_groups=(NodeGroup(count=1),)) as cluster:
        key = base64.b64encode(cluster.munge_key_path.read_bytes()).decode()
        kubeapi_client.create(Secret.from_dict({"metadata": {"name": "munge-key"}, "data": {"munge.key": key}}))
        runner_factory(images=images)
        spool = str(cluster.slurmd_spool_dir("elastic1"))
        container = {
            "name": "slurmd",
            "image": "example.org/slurm/slurmd:22.05",
            "args": ["-b", "-N", "elastic1", "--conf-server", cluster.slurmctld_address],
            "env": [{"name": "SLURMD_SPOOL_DIR", "value": spool}],
            "volumeMounts": [
                {"name": "munge-key", "mountPath": "/etc/munge/munge.key", "subPath": "munge.key", "readOnly": True},
                {"name": "run-munge", "mountPath": "/run/munge"},
                {"name": "munged", "mountPath": "/run/munged"},
                {"name": "spool", "mountPath": spool},
            ],
        }
        volumes = [
            {"name": "munge-key", "secret": {"secretName": "munge-key", "defaultMode": 0o400}},
            {"name": "run-munge", "emptyDir": {"medium": "Memory"}},
            {"name": "munged", "emptyDir": {"medium": "Memory"}},
            {"name": "spool", "emptyDir": {}},
        ]
        spec = {
            "hostname": "elastic1",
            "terminationGracePeriodSeconds": 10,
            "containers": [container],
            "volumes": volumes,
        }
        kubeapi_client.create(Pod.from_dict({"metadata": {"name": "slurmd-elastic1"}, "spec": spec}))

        wait_until(lambda: cluster.node_states().get("elastic1") == "idle", timeout=30, what="elastic1 idle")
        step = cluster.run("srun", "-w", "elastic1", "-N1", "hostname", timeout=30)
        assert step.stdout.strip() == "elastic1"  # the step ran in the pod's UTS namespace
        assert phase_is(kubeapi_client, "slurmd-elastic1", "Running")
        kubeapi_client.delete(Pod, "slurmd-elastic1")
        wait_until(lambda: gone(kubeapi_client, "slurmd-elastic1"), timeout=15, what="slurmd pod removed")


def test_failed_api_calls_are_retried(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    """An API that answers 503 for a while (an outage, API Priority and Fairness) delays, never loses, an update."""
    kubeapi_server.add_fault(resource="pods/binding", code=503, count=2)
    kubeapi_server.add_fault(resource="pods/status", verb="patch", code=503, count=3)
    make_pod(kubeapi_client, "patient", "trap 'sleep 0.5; exit 0' TERM; while true; do sleep 0.1; done")
    wait_until(lambda: phase_is(kubeapi_client, "patient", "Running"), timeout=15, what="Running despite 503s")

    kubeapi_client.delete(Pod, "patient")
    kubeapi_server.add_fault(resource="pods", verb="delete", code=503, count=2)  # the runner's final DELETE
    wait_until(lambda: gone(kubeapi_client, "patient"), timeout=15, what="removed despite 503s")


def test_force_delete_during_a_long_grace_period_kills_at_once(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner
) -> None:
    make_pod(
        kubeapi_client, "slow-stop", "trap '' TERM; while true; do sleep 0.1; done", terminationGracePeriodSeconds=60
    )
    wait_until(lambda: phase_is(kubeapi_client, "slow-stop", "Running"))
    pid = pid_of(kubeapi_client, "slow-stop")
    kubeapi_client.delete(Pod, "slow-stop")  # 60 s to stop, and the process ignores SIGTERM
    wait_until(lambda: "Killing" in reasons(kubeapi_client, "slow-stop"), what="SIGTERM sent")
    assert alive(pid)
    kubeapi_client.delete(Pod, "slow-stop", grace_period=0)
    wait_until(lambda: not alive(pid), timeout=5, what="process killed")


def test_sidecar_starts_before_the_next_init_step_and_runs_beside_the_container(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path
) -> None:
    mount = [{"name": "out", "mountPath": "/out"}]
    sidecar = {
        "name": "munged",
        "image": "busybox",
        "restartPolicy": "Always",
        "command": ["sh", "-c", "echo sidecar >> /out/order; while true; do sleep 0.1; done"],
        "volumeMounts": mount,
    }
    setup = {
        "name": "setup",
        "image": "busybox",
        "command": ["sh", "-c", "echo setup >> /out/order"],
        "volumeMounts": mount,
    }
    make_pod(
        kubeapi_client, "with-sidecar", "echo main >> /out/order; sleep 3600", out=out, initContainers=[sidecar, setup]
    )
    wait_until(
        lambda: phase_is(kubeapi_client, "with-sidecar", "Running") and (out / "order").read_text().count("\n") == 3
    )
    assert (out / "order").read_text().split() == ["sidecar", "setup", "main"]
    statuses = {s.name: s for s in pod_status(kubeapi_client, "with-sidecar").initContainerStatuses}
    assert statuses["munged"].state.running is not None and statuses["setup"].state.terminated.reason == "Completed"


def test_each_container_run_has_its_log_file(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner], tmp_path: Path
) -> None:
    runner_factory(state_dir=tmp_path / "state")
    make_pod(kubeapi_client, "chatty", "echo to-stdout; echo to-stderr >&2; exit 1", restartPolicy="OnFailure")
    wait_until(lambda: (state := container_state(kubeapi_client, "chatty")) is not None and state.restartCount >= 1)
    uid = kubeapi_client.get(Pod, "chatty").metadata.uid
    logs = tmp_path / "state" / "logs" / f"default_chatty_{uid}" / "main"
    wait_until(lambda: (logs / "1.log").exists())
    assert (logs / "0.log").read_text().split() == ["to-stdout", "to-stderr"]


# --- a container sees what its pod declares, nothing more ----------------------------------------


def test_masked_host_paths_are_empty_unless_a_volume_declares_them(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner],
    runner_images: Path, tmp_path: Path, out: Path,
) -> None:
    """A node has neither the test environment's state nor the site's "NFS" unless the pod mounts
    it; a volume inside a masked directory (the site's homes) is seen, at the host's path."""
    state, site = tmp_path / "state", tmp_path / "site"
    (state / "spool").mkdir(parents=True)
    (state / "spool" / "secret").write_text("host only\n")
    (site / "home" / "alice").mkdir(parents=True)
    (site / "home" / "alice" / "input").write_text("alice's data\n")
    (site / "other").mkdir()
    runtime = ProcessRuntime(images=ImageTable.load(runner_images), state_dir=tmp_path / "rt", masks=(state, site))
    runner_factory(runtime=runtime)
    home = str(site / "home")
    script = (f"ls -A {state} > /out/state; ls -A {site} > /out/site; cat {home}/alice/input > /out/input;"
              f" echo result > {home}/alice/output")
    make_pod(kubeapi_client, "masked", script, out=out, restartPolicy="Never",
             volumes=[{"name": "home", "hostPath": {"path": home, "type": "Directory"}}],
             container={"volumeMounts": [{"name": "home", "mountPath": home}]})
    wait_until(lambda: phase_is(kubeapi_client, "masked", "Succeeded"), what="pod done")
    assert (out / "state").read_text() == ""  # the host's state directory: empty in the pod
    assert (out / "site").read_text().split() == ["home"]  # only the declared part of the site
    assert (out / "input").read_text() == "alice's data\n"
    assert (site / "home" / "alice" / "output").read_text() == "result\n"  # written through to the host


def test_image_files_are_a_private_copy_per_container_not_the_hosts(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_factory: Callable[..., PodRunner],
    runner_images: Path, tmp_path: Path, out: Path,
) -> None:
    """/etc/passwd as an image has it: the host's users are unknown in the pod, and what a
    container adds (the slurmd entrypoint adds the site's users) stays in that container."""
    image_passwd = tmp_path / "passwd"
    image_passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    host_passwd = Path("/etc/passwd").read_bytes()
    runtime = ProcessRuntime(images=ImageTable.load(runner_images), state_dir=tmp_path / "rt",
                             image_files={"/etc/passwd": image_passwd})
    runner_factory(runtime=runtime)
    for name in ("first", "second"):
        make_pod(kubeapi_client, name, f"cat /etc/passwd > /out/{name}; echo 'site:x:2999:2999::/:/bin/sh' >> /etc/passwd",
                 out=out, restartPolicy="Never")
        wait_until(lambda name=name: phase_is(kubeapi_client, name, "Succeeded"), what=f"{name} done")
    assert (out / "first").read_text() == (out / "second").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert Path("/etc/passwd").read_bytes() == host_passwd
    assert image_passwd.read_text() == "root:x:0:0:root:/root:/bin/sh\n"


def test_a_pod_reads_its_cgroup_filesystems_and_proc_sys_but_cannot_change_them(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner, out: Path,
) -> None:
    """runc mounts /sys and the cgroup filesystems read-only for a container that is not
    privileged: a slurmd with cgroup plugins must fail in such a pod here as on a real node, not
    find this machine's writable cgroupfs."""
    probe = Path(f"/sys/fs/cgroup/pids/k8s-bridge-probe-{os.getpid()}")
    script = (f"ls /sys/fs/cgroup/pids > /out/read; mkdir {probe} 2> /out/mkdir; echo $? > /out/rc;"
              " (echo renamed > /proc/sys/kernel/hostname) 2> /out/procsys; true")
    make_pod(kubeapi_client, "ro", script, out=out, restartPolicy="Never")
    wait_until(lambda: phase_is(kubeapi_client, "ro", "Succeeded"), what="pod done")
    assert "cgroup.procs" in (out / "read").read_text().split()  # readable
    assert (out / "rc").read_text().strip() == "1" and "Read-only file system" in (out / "mkdir").read_text()
    assert not probe.exists()
    assert "Read-only file system" in (out / "procsys").read_text()  # /proc/sys too, as containerd's readonlyPaths
    host = {line.split()[4]: line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    assert host["/sys/fs/cgroup/pids"].startswith("rw") and host["/sys"].startswith("rw")  # the host's stay writable


def test_a_privileged_container_is_refused_by_the_process_runtime(
    kubeapi_client: Client, scheduler_default: Scheduler, runner_node1: PodRunner,
) -> None:
    """The process runtime cannot give a privileged container a cgroup of its own (the Docker
    runtime does, testenv/runner/cgroups.py): it says so instead of handing it this machine's."""
    make_pod(kubeapi_client, "priv", "true", restartPolicy="Never", container={"securityContext": {"privileged": True}})
    state = wait_until(lambda: (s := container_state(kubeapi_client, "priv")) and s.state.terminated and s.state,
                       what="start refused")
    assert state.terminated.reason == "StartError" and "cannot run a privileged container" in state.terminated.message
    assert pod_status(kubeapi_client, "priv").phase == "Failed"
