"""The container's first process: set up its namespaces and exec its command (runc's "init").

Started by the process runtime as

    unshare --mount --uts --pid --propagation private -- python3 -I -S nsinit.py SPEC.json STATUS_FIFO

This process stays outside as the container's shim: it forks the container's PID 1 into the new
PID namespace, reports that child's host PID, waits for it and exits the way it did (same exit
code, or killed by the same signal), so the runtime sees the container's real exit status
(util-linux's own --fork cannot re-raise SIGKILL and exits 1 instead).

The child gives the container a /dev of its own if the spec lists devices (a tmpfs with the
basic devices bound in from the host and a node per device, see devices.py), bind-mounts the
volumes, hides the masked host paths no volume covers under an empty tmpfs, makes /sys (with
the cgroup filesystems) read-only, mounts a /proc of its PID namespace (``/proc/sys`` and
containerd's other read-only paths read-only: the process runtime runs no privileged container),
sets the hostname, working directory and user, resets the signal mask and dispositions (a hook
of Slurm's starts us with SIGTERM/SIGINT/SIGHUP blocked) and execs the command. Both report on
STATUS_FIFO (a named pipe: an inherited pipe would stay open in unshare): the PID first, then
either nothing (the close-on-exec descriptor closes when the exec succeeds) or {"error": ...}.

Standard library only: it runs with -I -S, before anything else of the project is importable.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import stat
import sys

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
#: What runc puts in a container's /dev besides the devices it is given.
BASIC_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)


class SetupError(Exception):
    pass


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    if _libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def _ensure_target(source_is_dir: bool, target: str) -> None:
    if os.path.lexists(target):
        return
    if source_is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _open_sources(mounts: list[dict]) -> dict[str, int]:
    """An O_PATH descriptor of every source, taken before any mount: a volume mounted over /tmp
    (the pod's private /tmp) or a mask hides host paths that later sources live under."""
    opened = {}
    for mount in mounts:
        source = mount["source"]
        try:
            opened[source] = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            raise SetupError(f'error mounting "{source}" to rootfs at "{mount["target"]}": {reason}') from e
    return opened


def _covered(path: str, targets: list[str]) -> bool:
    """A declared mount is at ``path`` or above it: the pod asked to see what is there."""
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def bind_mounts(mounts: list[dict], masks: list[str] = ()) -> None:
    """The volumes, and an empty tmpfs over each masked host path no volume covers (what a
    node's own filesystem lacks: the test environment's state, the site's "NFS" directories),
    outermost first so a volume inside a masked path is mounted on top of the mask."""
    sources = _open_sources(mounts)
    targets = [m["target"] for m in mounts]
    steps = [(m["target"], m) for m in mounts]
    steps += [(path, None) for path in masks if os.path.isdir(path) and not _covered(path, targets)]
    for target, mount in sorted(steps, key=lambda step: step[0].rstrip("/").count("/")):
        if mount is None:
            _mask(target)
            continue
        source = mount["source"]
        try:
            fd = sources[source]
            _ensure_target(stat.S_ISDIR(os.fstat(fd).st_mode), target)
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
            if mount.get("readOnly"):
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            raise SetupError(f'error mounting "{source}" to rootfs at "{target}": {reason}') from e
    for fd in sources.values():
        os.close(fd)


def _mask(path: str) -> None:
    try:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=65536k")
    except OSError as e:
        raise SetupError(f'error masking "{path}": {(e.strerror or str(e)).lower()}') from e


def private_dev(staging: str, devices: list[dict]) -> None:
    """A /dev of the container's own: built on a tmpfs at `staging` while the host's /dev is still
    visible (its basic devices are bound in from there), then moved over /dev."""
    try:
        _mount("tmpfs", staging, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
        for name in BASIC_DEVICES:
            target = os.path.join(staging, name)
            open(target, "a").close()
            _mount(f"/dev/{name}", target, None, MS_BIND)
        os.mkdir(os.path.join(staging, "pts"))
        _mount("/dev/pts", os.path.join(staging, "pts"), None, MS_BIND | MS_REC)
        os.mkdir(os.path.join(staging, "shm"))
        _mount("shm", os.path.join(staging, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
        for name, points_to in DEV_LINKS.items():
            os.symlink(points_to, os.path.join(staging, name))
        for device in devices:
            path = os.path.join(staging, device["path"].removeprefix("/dev/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(device["major"], device["minor"]))
        _mount(staging, "/dev", None, MS_MOVE)
    except OSError as e:
        raise SetupError(f"error setting up /dev: {e.strerror or e}") from e


_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def read_only_sys() -> None:
    """/sys and every mount below it (the cgroup filesystems) read-only in this namespace, as
    runc mounts them for a container that is not privileged: such a pod can read its cgroup
    but not create one or move a process, so a slurmd whose plugins need that fails here as on
    a real node (the runtime's namespace is private: the host's mounts stay as they are)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        point = fields[4].encode().decode("unicode_escape")  # \040 for a space, as the kernel writes it
        if point != "/sys" and not point.startswith("/sys/"):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(","):
            flags |= _FLAGS.get(option, 0)
        try:
            _mount(None, point, None, flags)
        except OSError as e:
            raise SetupError(f"error making {point} read-only: {e.strerror}") from e


READ_ONLY_PROC = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
"""containerd's default readonlyPaths: what a container that is not privileged cannot write."""


def mount_proc() -> None:
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for path in READ_ONLY_PROC:
            if os.path.exists(path):
                _mount(path, path, None, MS_BIND | MS_REC)
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as e:
        raise SetupError(f"error mounting proc: {e.strerror}") from e


def change_user(uid: int | None, gid: int | None) -> None:
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def reset_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # signals reserved by the C library
            pass


def exec_command(argv: list[str], env: dict[str, str]) -> None:
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError as e:
        where = "executable file not found in $PATH" if "/" not in argv[0] else "no such file or directory"
        raise SetupError(f'exec: "{argv[0]}": {where}') from e
    except OSError as e:
        raise SetupError(f'exec: "{argv[0]}": {(e.strerror or str(e)).lower()}') from e
    except ValueError as e:  # a NUL byte in an argument or a variable
        raise SetupError(f'exec: "{argv[0]}": invalid argument ({e})') from e


def set_up(spec: dict) -> None:
    socket.sethostname(spec["hostname"])
    if spec.get("devices"):
        private_dev(spec["devStaging"], spec["devices"])
    bind_mounts(spec["mounts"], spec.get("masks", []))
    read_only_sys()
    mount_proc()
    cwd = spec.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise SetupError(f'chdir to cwd ("{cwd}") set in config failed: {(e.strerror or "").lower()}') from e
    change_user(spec.get("uid"), spec.get("gid"))


def _report(status: int, **message: object) -> None:
    os.write(status, (json.dumps(message) + "\n").encode())


def run_child(spec: dict, status: int) -> None:
    """In the new PID namespace (PID 1): set up, then exec. Never returns."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the shim
        if not spec["argv"]:
            raise SetupError("no command specified")
        set_up(spec)
        reset_signals()
        exec_command(spec["argv"], spec["env"])
    except (SetupError, OSError) as e:
        _report(status, error=str(e))
    os._exit(128)


def exit_like(wait_status: int) -> int:
    """The child's exit code to return; or die by the signal that killed the child."""
    code = os.waitstatus_to_exitcode(wait_status)
    if code >= 0:
        return code
    sig = -code
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sig != signal.SIGKILL:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    return 128 + sig  # not reached for signals that terminate


def main() -> int:
    spec_path, status_path = sys.argv[1], sys.argv[2]
    status = os.open(status_path, os.O_WRONLY | os.O_CLOEXEC)  # the child's copy closes on exec
    try:
        with open(spec_path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        _report(status, error=f"cannot read the container spec: {e}")
        return 128
    child = os.fork()
    if child == 0:
        run_child(spec, status)
    _report(status, pid=child)
    os.close(status)
    _, wait_status = os.waitpid(child, 0)
    return exit_like(wait_status)


if __name__ == "__main__":
    sys.exit(main())
