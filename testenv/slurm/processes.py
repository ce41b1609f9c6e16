"""Supervising daemons as our own children, and finding the ones that escaped us.

Daemons run in the foreground as children of the test process: PID 1 on these machines
reaps daemonized processes late, so `kill -0` on a daemonized pid says "alive" for a while.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no dlopen after fork


def _die_with_parent() -> None:
    """Runs in the child: the kernel kills it when the thread that started it ends (pytest
    killed, or a thread-mode timeout), so a daemon never outlives a run that skipped stop()."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: list[str], *, log: Path, env: Mapping[str, str],
          cwd: Path, user: str | None = None) -> subprocess.Popen[bytes]:
    """Start a foreground daemon in its own session (a Ctrl-C to pytest is ours to handle).

    Its children (slurmctld's hooks and prolog) inherit `cwd`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            env=dict(env), start_new_session=True, preexec_fn=_die_with_parent,
            user=user, group=user, extra_groups=[] if user else None,
        )


def is_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (which PID 1 may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def terminate(pids: Iterable[int], *, grace: float) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, SIGKILL the rest. Returns the pids killed hard."""
    pending = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = [pid for pid in pending if is_alive(pid)]
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    return pending


def stop_child(proc: subprocess.Popen[bytes], *, grace: float) -> None:
    """Stop one of our own children and reap it, so no zombie is left either."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _mentions(pid: str, needle: bytes) -> bool:
    proc = Path("/proc", pid)
    try:
        return needle in (proc / "cmdline").read_bytes() or needle in (
            proc / "environ").read_bytes()
    except OSError:  # gone meanwhile, or a kernel thread
        return False


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line or environment names a file under `path`.

    Not the working directory: a developer's shell looking at the logs must survive stop().
    """
    needle, skip = (str(path).rstrip("/") + "/").encode(), _ancestors()
    return [int(pid) for pid in os.listdir("/proc")
            if pid.isdigit() and int(pid) not in skip
            and _mentions(pid, needle) and is_alive(int(pid))]
