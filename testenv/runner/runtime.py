"""The container runtime seen from the pod runner (the kubelet's CRI, cut down to what it uses).

The runner decides what to run and when (pods, restarts, back-off, status); a Runtime only knows
images and single containers. `process.ProcessRuntime` runs containers as host processes in
their own namespaces; a Docker runtime implements the same protocol.
"""

from __future__ import annotations

import datetime as dt
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class ContainerRuntimeError(Exception):
    """Base of the errors a runtime reports; `reason` is the kubelet's word for it."""

    reason = "RuntimeError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImagePullError(ContainerRuntimeError):
    """The image cannot be had (the kubelet shows ErrImagePull, then ImagePullBackOff)."""

    reason = "ErrImagePull"


class ContainerStartError(ContainerRuntimeError):
    """The container was created but its process could not start (bad command, mount, ...)."""

    reason = "StartError"


@dataclass(frozen=True)
class Image:
    """An image the runtime has: what `docker image inspect` would say of it."""

    reference: str  # normalised, e.g. docker.io/library/busybox:latest
    image_id: str  # e.g. docker.io/library/busybox@sha256:...
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None


@dataclass(frozen=True)
class Mount:
    host_path: Path
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Device:
    """A device node the container sees (CRI's Device), made in its own /dev (see devices.py)."""

    container_path: str  # e.g. /dev/nvidia0
    major: int
    minor: int


@dataclass(frozen=True)
class ContainerConfig:
    """One container to start: the pod spec's container after env and volume resolution."""

    pod_namespace: str
    pod_name: str
    pod_uid: str
    name: str
    image: Image
    command: tuple[str, ...] | None  # overrides the image's entrypoint (and drops its cmd)
    args: tuple[str, ...] | None  # overrides the image's cmd
    env: tuple[tuple[str, str], ...]  # on top of the image's env
    working_dir: str | None
    hostname: str
    mounts: tuple[Mount, ...]
    log_path: Path
    run_as_user: int | None = None
    run_as_group: int | None = None
    limits: tuple[tuple[str, str], ...] = ()  # resources.limits, e.g. (("cpu", "1"),); Docker enforces them
    devices: tuple[Device, ...] = ()  # from the device plugins: the container gets a /dev of its own with them
    privileged: bool = False  # securityContext.privileged: what it grants is the runtime's to model


@dataclass(frozen=True)
class ContainerHandle:
    container_id: str  # e.g. process://1234
    started_at: dt.datetime
    config: ContainerConfig = field(repr=False)


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    finished_at: dt.datetime
    signal: int | None = None  # the signal that ended the process, if one did
    oom_killed: bool = False


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
    timed_out: bool = False


def resolve_argv(image: Image, command: tuple[str, ...] | None, args: tuple[str, ...] | None) -> list[str]:
    """Docker's rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if command:
        return [*command, *(args or ())]
    return [*image.entrypoint, *(args if args else image.cmd)]


class Runtime(Protocol):
    name: str

    async def image_present(self, image: str) -> Image | None:
        """The image if the runtime already has it (no pull)."""

    async def pull_image(self, image: str) -> Image:
        """Get the image; raises ImagePullError."""

    async def start_container(self, config: ContainerConfig) -> ContainerHandle:
        """Create and start the container; raises ContainerStartError."""

    async def wait_container(self, handle: ContainerHandle) -> ExitStatus:
        """Wait for the container to exit and release what it held (mount points, ...)."""

    async def signal_container(self, handle: ContainerHandle, sig: signal.Signals) -> None:
        """Send a signal to the container's main process; no error if it is gone."""

    async def exec_in_container(
        self, handle: ContainerHandle, argv: list[str], *, env: dict[str, str], timeout: float
    ) -> ExecResult:
        """Run a command inside the running container (hooks, probes)."""

    async def close(self) -> None:
        """Kill every container still running and release everything."""
