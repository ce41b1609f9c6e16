"""What ``securityContext.privileged: true`` gives a container's cgroups on a cgroup v1 node,
for the Docker runtime (docker.py).

containerd (and CRI-O) on cgroup v1: no cgroup namespace; runc bind-mounts each controller's
directory of the container's own cgroup at ``/sys/fs/cgroup/<controller>``, read-only unless
the container is privileged. Privileged, the container can create cgroups below its own,
still under the pod's cgroup and its limits (the kubelet sets the pod's memory and CPU limits
on ``kubepods/.../pod<uid>``). Docker cannot be asked for "privileged" here (it adds every
capability the kernel knows, and this machine's runtime lacks CAP_SYS_RESOURCE, so runc
refuses), so the runtime builds the same grant:

- a pod cgroup per container, made by the runtime under every v1 controller, carrying the
  pod's memory and CPU limits as the kubelet's pod cgroup does; Docker puts the container
  in it (``cgroup_parent``) with its own limits;
- that pod cgroup bind-mounted read-write at ``/sys/fs/cgroup/<controller>`` over Docker's
  read-only one.

Where it differs from containerd: the container sees its pod's cgroup rather than its own
(cgroups it makes sit beside the container's, not inside it); both are under the pod's limits,
which is what a job must not escape. A container that is not privileged gets none of this:
Docker's read-only mounts, as runc gives them.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from pathlib import Path

from .runtime import Mount

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
TOP = "slurm-k8s-bridge-pods"
"""Under each controller's root: one directory per runtime instance, one per privileged pod."""


def controllers() -> list[str]:
    """The v1 controllers this machine mounts (``cpu``, ``memory`` ... not ``name=systemd``)."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, _ = line.split(":", 2)
        for name in names.split(","):
            if name and not name.startswith("name=") and (ROOT / name).is_dir():
                found.append(name)
    return sorted(set(found))


class PodCgroup:
    """One privileged container's pod cgroup: made with the pod's limits, removed with it."""

    def __init__(self, instance: str, *, memory: int | None, cpus: float | None) -> None:
        self.path = f"/{TOP}/{instance}/{secrets.token_hex(6)}"
        """The cgroup path, the same under every controller (Docker's ``cgroup_parent``)."""
        self._controllers = controllers()
        for controller in self._controllers:
            _make(ROOT / controller, self.path, controller)
        if memory is not None:
            memory_dir = ROOT / "memory" / self.path.lstrip("/")
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting: nothing to cap
                (memory_dir / "memory.memsw.limit_in_bytes").write_text(str(memory))
        if cpus is not None:
            cpu_dir = ROOT / "cpu" / self.path.lstrip("/")
            period = int((cpu_dir / "cpu.cfs_period_us").read_text())
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * period))))

    def mounts(self) -> list[Mount]:
        """Each controller's pod cgroup, writable, where the container looks for it."""
        return [Mount(ROOT / c / self.path.lstrip("/"), f"/sys/fs/cgroup/{c}") for c in self._controllers]

    def remove(self, timeout: float = 10.0) -> None:
        """rmdir every cgroup below the pod's, deepest first (cgroupfs has no recursive rmdir).
        The container's processes, the jobs' included, died with its PID namespace; a cgroup
        whose last task is still exiting is busy for a moment."""
        deadline = time.monotonic() + timeout
        for controller in self._controllers:
            top = ROOT / controller / self.path.lstrip("/")
            if not top.exists():
                continue
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                _rmdir(directory, deadline)


def remove_instance(instance: str) -> None:
    """The instance's directory under each controller, once its pods are removed."""
    for controller in controllers():
        with contextlib.suppress(FileNotFoundError, OSError):
            (ROOT / controller / TOP / instance).rmdir()


def _make(root: Path, path: str, controller: str) -> None:
    directory = root
    for part in path.strip("/").split("/"):
        parent, directory = directory, directory / part
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        if controller == "cpuset":  # a new cpuset has no CPUs: no task could join it
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (directory / name).read_text().strip():
                    (directory / name).write_text((parent / name).read_text())


def _rmdir(directory: Path, deadline: float) -> None:
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:  # EBUSY: a task is still leaving it
            if time.monotonic() > deadline:
                log.warning("cgroup %s left behind: %s", directory, e)
                return
            time.sleep(0.05)
