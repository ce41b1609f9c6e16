"""The Docker runtime: each container runs from its image in a Docker engine, as the kubelet's
dockershim ran them.

What a container gets (runtime.py's ContainerConfig): its image's filesystem, ENTRYPOINT/CMD
replaced by command/args, env on top of the image's, the working directory, the user, its
volumes as bind mounts of the directories the runner prepared (secret, configMap, emptyDir,
hostPath ...), cpu and memory limits as Docker's (--cpus, --memory; no swap), the devices the
node's device plugin granted (devices.py) as --device nodes with the same numbers. Every container
uses the host's network (this VM's firewall drops traffic between network namespaces; slurmd
reaches slurmctld on 127.0.0.1 and listens on its node's own port) but has its own hostname,
mount, PID and IPC namespaces: /run/munge and the rest of the image are private to it.

The runner does what the kubelet does, so Docker does none of it: no restart policy (the runner
restarts, with back-off), no --init (the main process is PID 1 and gets the pod's SIGTERM), no
pulls (no registry here: an image the engine lacks is ErrImagePull). The container's output is
copied to the runner's log file while it runs; its state at exit (exit code, OOMKilled) is read
from the engine; then it is removed. `close()` removes every container this runtime created.

A container sees its image and the volumes its pod declares, nothing else: the test
environment's Slurm files reach it the way they reach a real pod (configless slurm.conf from
slurmctld, the munge key Secret, declared volumes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testenv.docker import session_labels
from testenv.kubeapi.quantity import QuantityError, parse

from . import cgroups
from .images import normalise, repository_of
from .kube import now
from .runtime import (
    ContainerConfig,
    ContainerHandle,
    ContainerStartError,
    ExecResult,
    ExitStatus,
    Image,
    ImagePullError,
    resolve_argv,
)

log = logging.getLogger(__name__)

LABEL_RUNTIME = "org.slurm-k8s-bridge.testenv.runtime"
"""On every container: the id of the runtime instance that created it (close() removes them)."""
STOP_TIMEOUT = 10.0
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
)
"""Linux capabilities by number (linux/capability.h), up to the last one Debian's Docker 20.10
knows (PERFMON, BPF and CHECKPOINT_RESTORE it refuses as unknown)."""


@dataclass
class _Container:
    id: str
    exited: asyncio.Future[ExitStatus]
    watcher: threading.Thread
    cgroup: cgroups.PodCgroup | None = None


class DockerRuntime:
    """Runtime protocol (see runtime.py) over a Docker engine (DOCKER_HOST, or docker_host)."""

    name = "docker"

    def __init__(self, *, docker_host: str | None = None) -> None:
        import docker  # only the Docker runtime needs the SDK

        self._docker = docker
        base_url = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._client = docker.DockerClient(base_url=base_url, timeout=60)
        self.instance = secrets.token_hex(6)
        # Host-side device nodes for --device (the engine copies a host node into the container).
        self._device_dir = Path(tempfile.mkdtemp(prefix="slurm-k8s-bridge-devices-"))
        # Blocking SDK calls run here; each container's watcher has a thread of its own.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker-api")
        self._containers: dict[str, _Container] = {}

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: function(*args, **kwargs))

    # --- images ------------------------------------------------------------------------------

    async def image_present(self, image: str) -> Image | None:
        try:
            found = await self._call(self._client.images.get, image)
        except self._docker.errors.ImageNotFound:
            return None
        except self._docker.errors.APIError as e:
            if e.status_code == 400:  # not a valid reference: it cannot be present
                return None
            raise
        return _image(image, found.attrs)

    async def pull_image(self, image: str) -> Image:
        found = await self.image_present(image)
        if found is None:
            ref = normalise(image)
            raise ImagePullError(
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                f"{ref}: not found in the local Docker engine (the test runner never pulls: "
                f"build or load the image, see testenv/docker-setup.sh)"
            )
        return found

    # --- containers --------------------------------------------------------------------------

    async def start_container(self, config: ContainerConfig) -> ContainerHandle:
        argv = resolve_argv(config.image, config.command, config.args)
        if not argv:
            raise ContainerStartError("no command specified")
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        cgroup = self._pod_cgroup(config) if config.privileged else None
        try:
            container = await self._call(self._client.containers.create, **self._create_args(config, argv, cgroup))
        except (self._docker.errors.APIError, ValueError) as e:
            if cgroup is not None:
                await self._call(cgroup.remove)
            raise ContainerStartError(_explain(e)) from e
        started = now()  # before the start: a container that exits at once ends in this second or later
        try:
            await self._call(container.start)
        except self._docker.errors.APIError as e:
            await self._call(_remove, container)
            if cgroup is not None:
                await self._call(cgroup.remove)
            raise ContainerStartError(_explain(e)) from e
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[ExitStatus] = loop.create_future()
        watcher = threading.Thread(target=self._watch, args=(container, config.log_path, loop, exited),
                                   name=f"docker-watch-{container.short_id}", daemon=True)
        watcher.start()
        container_id = f"docker://{container.id}"
        self._containers[container_id] = _Container(container.id, exited, watcher, cgroup)
        return ContainerHandle(container_id=container_id, started_at=started, config=config)

    async def wait_container(self, handle: ContainerHandle) -> ExitStatus:
        container = self._containers.get(handle.container_id)
        if container is None:
            raise KeyError(f"unknown container {handle.container_id}")
        status = await asyncio.shield(container.exited)
        if self._containers.pop(handle.container_id, None) is not None:
            await self._call(self._remove_id, container.id)
            if container.cgroup is not None:
                await self._call(container.cgroup.remove)
        return status

    async def signal_container(self, handle: ContainerHandle, sig: signal.Signals) -> None:
        container = self._containers.get(handle.container_id)
        if container is None:
            return
        try:
            await self._call(self._client.api.kill, container.id, signal=int(sig))
        except self._docker.errors.APIError as e:  # gone, or not running any more
            log.debug("signal %s to %s: %s", sig.name, handle.container_id, _explain(e))

    async def exec_in_container(
        self, handle: ContainerHandle, argv: list[str], *, env: dict[str, str], timeout: float
    ) -> ExecResult:
        container = self._containers.get(handle.container_id)
        if container is None:
            return ExecResult(exit_code=-1, output="container is not running")
        api = self._client.api
        try:
            exec_id = (await self._call(api.exec_create, container.id, argv, environment=env or None))["Id"]
            run = asyncio.ensure_future(self._call(api.exec_start, exec_id, demux=False))
            try:
                output = await asyncio.wait_for(asyncio.shield(run), timeout)
            except TimeoutError:
                pid = (await self._call(api.exec_inspect, exec_id)).get("Pid")
                if pid:  # the engine cannot stop an exec: its process is on this host
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(run, 5)
                return ExecResult(exit_code=-1, output="", timed_out=True)
            code = (await self._call(api.exec_inspect, exec_id)).get("ExitCode")
        except self._docker.errors.APIError as e:
            return ExecResult(exit_code=-1, output=_explain(e))
        text = (output or b"").decode(errors="replace")
        return ExecResult(exit_code=code if code is not None else -1, output=text)

    async def close(self) -> None:
        containers = list(self._containers.values())
        self._containers.clear()
        await asyncio.gather(*(self._call(self._remove_id, c.id) for c in containers), return_exceptions=True)
        for container in containers:  # their streams end with the container
            await asyncio.to_thread(container.watcher.join, STOP_TIMEOUT)
            if container.cgroup is not None:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(container.cgroup.remove)
        # Any other container of this instance (e.g. created while a start was cancelled).
        with contextlib.suppress(self._docker.errors.APIError):
            for leftover in await self._call(self._client.containers.list, all=True,
                                             filters={"label": f"{LABEL_RUNTIME}={self.instance}"}):
                await self._call(_remove, leftover)
        self._pool.shutdown(wait=True)
        self._client.close()
        cgroups.remove_instance(self.instance)
        shutil.rmtree(self._device_dir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------

    def _create_args(self, config: ContainerConfig, argv: list[str],
                     cgroup: cgroups.PodCgroup | None = None) -> dict[str, Any]:
        docker = self._docker
        own = [*config.mounts, *(cgroup.mounts() if cgroup is not None else ())]
        mounts = [docker.types.Mount(m.container_path, str(m.host_path), type="bind", read_only=m.read_only)
                  for m in own]
        user = None
        if config.run_as_user is not None:
            user = str(config.run_as_user) + (f":{config.run_as_group}" if config.run_as_group is not None else "")
        args: dict[str, Any] = {
            "image": config.image.image_id.split("@", 1)[1],
            "entrypoint": argv[:1],
            "command": argv[1:],
            "environment": dict(config.env),
            "working_dir": config.working_dir,
            "hostname": config.hostname,
            "user": user,
            "network_mode": "host",
            "mounts": mounts,
            "labels": {
                "io.kubernetes.pod.namespace": config.pod_namespace,
                "io.kubernetes.pod.name": config.pod_name,
                "io.kubernetes.pod.uid": config.pod_uid,
                "io.kubernetes.container.name": config.name,
                LABEL_RUNTIME: self.instance,
                **session_labels(),
            },
            "name": f"k8s_{config.name}_{config.pod_name}_{config.pod_namespace}_{config.pod_uid}_"
                    f"{secrets.token_hex(3)}",
            "detach": True,
        }
        args.update(_limits(dict(config.limits)))
        if cgroup is not None:
            args.update(cgroup_parent=cgroup.path, cap_add=_held_capabilities(),
                        security_opt=["seccomp=unconfined", "apparmor=unconfined"])
        if config.devices:
            args["devices"] = [f"{self._device_node(d.major, d.minor)}:{d.container_path}:rwm" for d in config.devices]
        return args

    def _pod_cgroup(self, config: ContainerConfig) -> cgroups.PodCgroup:
        limits = _limits(dict(config.limits))
        nano_cpus = limits.get("nano_cpus")
        return cgroups.PodCgroup(self.instance, memory=limits.get("mem_limit"),
                                 cpus=nano_cpus / 10**9 if nano_cpus else None)

    def _device_node(self, major: int, minor: int) -> Path:
        """A character device node with these numbers on the host (no driver needed behind it)."""
        node = self._device_dir / f"c{major}-{minor}"
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        except FileExistsError:
            pass
        return node

    def _watch(self, container: Any, log_path: Path, loop: asyncio.AbstractEventLoop,
               exited: asyncio.Future[ExitStatus]) -> None:
        """Copy the container's output to its log file until it exits, then report how it ended."""
        try:
            with open(log_path, "ab", buffering=0) as out:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    out.write(chunk)
            container.wait()
            container.reload()
            status = _exit_status(container.attrs["State"])
        except Exception as e:  # the engine went away, or the container was removed under us
            log.warning("lost track of container %s: %s", container.short_id, e)
            status = ExitStatus(exit_code=137, finished_at=now())
        loop.call_soon_threadsafe(_settle, exited, status)

    def _remove_id(self, container_id: str) -> None:
        with contextlib.suppress(self._docker.errors.NotFound):
            _remove(self._client.containers.get(container_id))


def _settle(future: asyncio.Future[ExitStatus], status: ExitStatus) -> None:
    if not future.done():
        future.set_result(status)


def _remove(container: Any) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)


def _image(reference: str, attrs: dict[str, Any]) -> Image:
    config = attrs.get("Config") or {}
    env = tuple(tuple(item.split("=", 1)) for item in config.get("Env") or [] if "=" in item)
    normalised = normalise(reference)
    return Image(
        reference=normalised,
        image_id=f"{repository_of(normalised)}@{attrs['Id']}",
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        env=env,  # type: ignore[arg-type]
        working_dir=config.get("WorkingDir") or None,
    )


def _limits(limits: dict[str, str]) -> dict[str, Any]:
    """limits.cpu -> --cpus, limits.memory -> --memory (and as much memory+swap: no swap)."""
    args: dict[str, Any] = {}
    try:
        if "cpu" in limits:
            args["nano_cpus"] = int(parse(limits["cpu"]).value * 10**9)
        if "memory" in limits:
            memory = int(parse(limits["memory"]).value)
            args["mem_limit"] = args["memswap_limit"] = memory
    except QuantityError as e:  # the API validated them; a bad one is a bug in the caller
        raise ContainerStartError(f"invalid resource limit: {e}") from e
    return args


def _held_capabilities() -> list[str]:
    """What containerd gives a privileged container: the capabilities it holds itself (its
    bounding set), not every one the kernel knows."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            held = int(line.split()[1], 16)
            return [name for bit, name in enumerate(CAPABILITIES) if held >> bit & 1]
    return []


def _exit_status(state: dict[str, Any]) -> ExitStatus:
    return ExitStatus(
        exit_code=int(state.get("ExitCode", 0)),
        finished_at=_timestamp(state.get("FinishedAt")) or now(),
        oom_killed=bool(state.get("OOMKilled")),
    )


def _timestamp(text: str | None) -> dt.datetime | None:
    """Docker's RFC 3339 with nanoseconds, e.g. 2024-01-02T03:04:05.123456789Z."""
    if not text or text.startswith("0001-"):
        return None
    head = text.partition(".")[0].removesuffix("Z")
    try:
        return dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
