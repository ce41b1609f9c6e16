"""The process runtime: each container is a host process in its own mount, UTS and PID namespaces.

It shares the host's filesystem and network (no network namespace: traffic between namespaces is
dropped on this VM's firewall, and slurmd needs to reach slurmctld on 127.0.0.1). Volumes are bind
mounts visible only inside the container. What a real node would not have is hidden: each
``masks`` path (the test environment's state, the directories standing in for the site's NFS)
is an empty tmpfs in the container unless a volume covers it, and each ``image_files`` path
(``/etc/passwd``, ``/etc/group``) is a private copy of the file an image would carry, without
the host's users, so a pod knows a user only if its manifest brings one; a mount point missing on the host is created for the
time it is used and removed afterwards. A container given devices gets a /dev of its own
(devices.py says why and what is in it). /sys and the cgroup filesystems are read-only inside, as
runc mounts them for a container that is not privileged; a privileged container is refused
(a StartError): it would get this machine's writable cgroupfs, not a cgroup of its own
(the Docker runtime models that). The container's main process is PID 1 of its namespace,
as in Docker without --init: it gets SIGTERM only if it handles it, and when it dies the kernel
kills everything else in the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .images import ImageTable, normalise
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

NSINIT = Path(__file__).with_name("nsinit.py")
START_TIMEOUT = 30.0


class MountPoints:
    """Mount points created on the host for containers, shared by them, removed once unused.

    One registry per process (every runtime of every runner in it uses it): removing a
    directory that is a mount point in another container's namespace silently detaches that
    container's mount, so only the last user may remove it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # runners run on threads of their own
        self._users: dict[str, int] = {}
        self._created: dict[str, list[Path]] = {}  # target -> paths created for it, outermost first

    def acquire(self, target: str, *, directory: bool) -> None:
        with self._lock:
            if target in self._users:
                self._users[target] += 1
                return
            path = Path(target)
            if os.path.lexists(path):
                return  # the host has it: nothing to create or remove
            missing = [p for p in [path, *path.parents] if not os.path.lexists(p)][::-1]
            for p in missing[:-1]:
                p.mkdir()
            if directory:
                path.mkdir()
            else:
                path.touch()
            self._users[target] = 1
            self._created[target] = missing

    def release(self, target: str) -> None:
        with self._lock:
            if target not in self._users:
                return
            self._users[target] -= 1
            if self._users[target] > 0:
                return
            del self._users[target]
            for path in reversed(self._created.pop(target)):
                try:
                    path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
                except OSError as e:  # something else put files there: leave it
                    log.warning("could not remove mount point %s: %s", path, e)
                    return


MOUNT_POINTS = MountPoints()


@dataclass
class _Container:
    process: asyncio.subprocess.Process  # the shim (nsinit.py), parent of the container's PID 1
    pid: int  # the container's PID 1, as the host sees it
    targets: list[str]
    env: dict[str, str]
    working_dir: str
    directory: Path


class ProcessRuntime:
    """Runtime protocol (see runtime.py) over host processes; needs root, unshare and nsenter."""

    name = "process"

    def __init__(self, *, images: ImageTable, state_dir: Path, masks: tuple[Path, ...] = (),
                 image_files: dict[str, Path] | None = None) -> None:
        self._images = images
        self._masks = tuple(str(p) for p in masks)
        self._image_files = dict(image_files or {})
        self._state_dir = state_dir / "containers"
        self._mount_points = MOUNT_POINTS
        self._containers: dict[str, _Container] = {}
        self._unshare = shutil.which("unshare") or "/usr/bin/unshare"
        self._nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"

    # --- images ------------------------------------------------------------------------------

    async def image_present(self, image: str) -> Image | None:
        return self._images.find(image)

    async def pull_image(self, image: str) -> Image:
        found = self._images.find(image)
        if found is None:
            ref = normalise(image)
            raise ImagePullError(
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                f'failed to resolve reference "{ref}": {ref}: not found'
            )
        return found

    # --- containers --------------------------------------------------------------------------

    async def start_container(self, config: ContainerConfig) -> ContainerHandle:
        if config.privileged:
            # What privileged grants is a cgroup subtree of the pod's own (cgroups.py); a host
            # process here would get this machine's whole cgroupfs instead: more than any pod.
            raise ContainerStartError("the process runtime cannot run a privileged container (it would get "
                                      "this machine's whole cgroupfs, not a cgroup of its own): use the Docker runtime")
        argv = resolve_argv(config.image, config.command, config.args)
        env = {"HOSTNAME": config.hostname, **dict(config.image.env), **dict(config.env)}
        working_dir = config.working_dir or config.image.working_dir or "/"
        directory = self._state_dir / f"{config.pod_uid}-{config.name}-{secrets.token_hex(3)}"
        directory.mkdir(parents=True)
        spec = directory / "spec.json"
        (directory / "dev").mkdir()  # where nsinit builds the container's own /dev, if it has devices
        files = self._copy_image_files(directory / "rootfs")
        spec.write_text(json.dumps({**_nsinit_spec(config, argv, env, working_dir, directory / "dev", files),
                                    "masks": list(self._masks)}))
        targets = self._acquire_mount_points(config)
        try:
            process, pid = await self._spawn(config, spec)
        except BaseException:
            self._release(targets, directory)
            raise
        container_id = f"process://{pid}"
        self._containers[container_id] = _Container(process, pid, targets, env, working_dir, directory)
        return ContainerHandle(container_id=container_id, started_at=now(), config=config)

    async def wait_container(self, handle: ContainerHandle) -> ExitStatus:
        container = self._containers.get(handle.container_id)
        if container is None:
            raise KeyError(f"unknown container {handle.container_id}")
        code = await container.process.wait()
        finished = now()
        self._forget(handle.container_id)
        if code < 0:  # the shim dies by the signal that killed the container's PID 1
            return ExitStatus(exit_code=128 - code, finished_at=finished, signal=-code)
        return ExitStatus(exit_code=code, finished_at=finished)

    async def signal_container(self, handle: ContainerHandle, sig: signal.Signals) -> None:
        container = self._containers.get(handle.container_id)
        if container is None:
            return
        try:
            os.kill(container.pid, sig)
        except ProcessLookupError:
            pass

    async def exec_in_container(
        self, handle: ContainerHandle, argv: list[str], *, env: dict[str, str], timeout: float
    ) -> ExecResult:
        container = self._containers.get(handle.container_id)
        if container is None:
            return ExecResult(exit_code=-1, output="container is not running")
        process = await asyncio.create_subprocess_exec(
            self._nsenter,
            "-t", str(container.pid), "-m", "-u", "-p", f"--wd={container.working_dir}", "--", *argv,
            env={**container.env, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            return ExecResult(exit_code=-1, output="", timed_out=True)
        return ExecResult(exit_code=process.returncode or 0, output=output.decode(errors="replace"))

    async def close(self) -> None:
        for container_id, container in list(self._containers.items()):
            for pid in (container.pid, container.process.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for container_id, container in list(self._containers.items()):
            try:
                await asyncio.wait_for(container.process.wait(), 10)
            except TimeoutError:
                log.error("container %s did not die", container_id)
            self._forget(container_id)

    # --- helpers -----------------------------------------------------------------------------

    def _copy_image_files(self, rootfs: Path) -> list[dict]:
        """The container's own copy of each image file (writable, as in an image's layer)."""
        mounts = []
        for target, source in self._image_files.items():
            copy = rootfs / target.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
            mounts.append({"source": str(copy), "target": target, "readOnly": False})
        return mounts


    def _acquire_mount_points(self, config: ContainerConfig) -> list[str]:
        """Create on the host the mount points that are not inside another of the container's mounts."""
        targets = [m.container_path.rstrip("/") or "/" for m in config.mounts]
        acquired = []
        try:
            for mount, target in zip(config.mounts, targets):
                if any(target.startswith(other + "/") for other in targets if other != target):
                    continue  # nsinit creates it inside the outer volume
                if config.devices and target.startswith("/dev/"):
                    continue  # inside the container's own /dev, where nsinit creates it
                self._mount_points.acquire(target, directory=mount.host_path.is_dir())
                acquired.append(target)
        except OSError as e:
            self._release(acquired, None)
            raise ContainerStartError(f"cannot create mount point: {e}") from e
        return acquired

    async def _spawn(self, config: ContainerConfig, spec: Path) -> tuple[asyncio.subprocess.Process, int]:
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        fifo = spec.with_name("status")
        os.mkfifo(fifo, 0o600)
        status = _StatusPipe(fifo)
        try:
            with open(config.log_path, "ab") as log_file:  # noqa: ASYNC230 (a local file, opened once)
                process = await asyncio.create_subprocess_exec(
                    self._unshare,
                    "--mount", "--uts", "--pid", "--propagation", "private",
                    "--", sys.executable, "-I", "-S", str(NSINIT), str(spec), str(fifo),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                )  # fmt: skip
            try:
                report = await asyncio.wait_for(status.read(process), START_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise ContainerStartError(f"container did not start within {START_TIMEOUT:.0f} s") from None
        finally:
            status.close()
        return process, await _started_pid(process, report, config.log_path)

    def _forget(self, container_id: str) -> None:
        container = self._containers.pop(container_id, None)
        if container is not None:
            self._release(container.targets, container.directory)

    def _release(self, targets: list[str], directory: Path | None) -> None:
        for target in targets:
            self._mount_points.release(target)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _nsinit_spec(config: ContainerConfig, argv: list[str], env: dict[str, str], working_dir: str,
                 dev_staging: Path, image_files: list[dict] = ()) -> dict:
    return {
        "argv": argv,
        "env": env,
        "cwd": working_dir,
        "hostname": config.hostname,
        # Image files first: nsinit mounts in depth order, keeping this order within a depth,
        # so a volume at the same path wins, as it does over an image's file.
        "mounts": [*image_files, *(
            {"source": str(m.host_path), "target": m.container_path, "readOnly": m.read_only} for m in config.mounts
        )],
        "uid": config.run_as_user,
        "gid": config.run_as_group,
        "devices": [{"path": d.container_path, "major": d.major, "minor": d.minor} for d in config.devices],
        "devStaging": str(dev_staging),
    }


class _StatusPipe:
    """The read end of nsinit's status FIFO.

    The runtime holds a write end too until nsinit has opened its own (a FIFO without writers
    reads as EOF), then waits for EOF: nsinit's end closes on exec, or when it exits.
    """

    def __init__(self, path: Path) -> None:
        self._read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._write_fd: int | None = os.open(path, os.O_WRONLY)
        self._reader = asyncio.StreamReader()
        self._transport: asyncio.ReadTransport | None = None

    async def read(self, process: asyncio.subprocess.Process) -> str:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._reader), os.fdopen(self._read_fd, "rb", buffering=0)
        )
        first = asyncio.create_task(self._reader.readline())
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({first, exited}, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        if not first.done():  # unshare failed before nsinit could report
            first.cancel()
            return ""
        self._close_writer()
        return first.result().decode() + (await self._reader.read()).decode()

    def _close_writer(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def close(self) -> None:
        self._close_writer()
        if self._transport is not None:
            self._transport.close()
        else:
            os.close(self._read_fd)


async def _started_pid(process: asyncio.subprocess.Process, report: str, log_path: Path) -> int:
    """The container's host PID from nsinit's report; raises ContainerStartError if it failed."""
    lines = [json.loads(line) for line in report.splitlines() if line.strip()]
    pid = next((line["pid"] for line in lines if "pid" in line), None)
    error = next((line["error"] for line in lines if "error" in line), None)
    if pid is not None and error is None:
        return pid
    await process.wait()
    if error is None:  # unshare itself failed before nsinit ran: its message is in the log
        error = _tail(log_path) or f"unshare exited with {process.returncode}"
    raise ContainerStartError(error)


def _tail(path: Path, limit: int = 2048) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
