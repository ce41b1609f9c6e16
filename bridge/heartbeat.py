"""The daemon's heartbeat: a file in the bridge's state dir, touched after every look.

The resume hook asks :func:`daemon_running` before it starts a follower process: one ``stat``,
no import beyond the standard library, nothing on the critical path. While the heartbeat is
fresh the daemon follows the jobs; when the daemon stops or hangs, the heartbeat goes stale
within ``daemon.heartbeat_fresh`` seconds and the hooks fall back to their own followers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

FILE = "daemon-heartbeat"


def path(state_dir: str) -> Path:
    return Path(state_dir) / FILE


def beat(state_dir: str, *, follows: bool = False, now: float | None = None) -> None:
    """Say the daemon is alive now, and whether it follows resumed jobs (atomically: a reader
    never sees half a file)."""
    target = path(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.time() if now is None else now
    tmp = target.with_name(f".{FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": stamp, "follows": follows}))
    os.utime(tmp, (stamp, stamp))
    tmp.replace(target)


def age(state_dir: str, *, now: float | None = None) -> float | None:
    """Seconds since the last beat; None if there never was one."""
    try:
        stamp = path(state_dir).stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - stamp


def daemon_running(state_dir: str, fresh: float, *, now: float | None = None) -> bool:
    """Whether a daemon beat within ``fresh`` seconds: then the hook need not start a follower."""
    seconds = age(state_dir, now=now)
    return seconds is not None and seconds < fresh


def hand_over(state_dir: str, fresh: float, *, now: float | None = None) -> bool:
    """Whether the resume hook should leave following its jobs to a running daemon: its heartbeat
    is fresh and it follows jobs. The hook's call, e.g. in ``bridge.hooks``::

        if config.resume.follow and not heartbeat.hand_over(config.resume.state_dir,
                                                            config.daemon.heartbeat_fresh):
            follow.spawn(...)
    """
    if not daemon_running(state_dir, fresh, now=now):
        return False
    try:
        return bool(json.loads(path(state_dir).read_text()).get("follows"))
    except (OSError, ValueError, AttributeError):
        return False


def stop(state_dir: str) -> None:
    """A daemon that stops cleanly says so at once, so hooks start their followers again."""
    try:
        path(state_dir).unlink()
    except OSError:
        pass
