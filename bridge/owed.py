"""Pod deletes a suspend owes, remembered until they are done.

Slurm counts a node powered down whatever its SuspendProgram does: a suspend killed mid-way,
or one whose deletes the API keeps refusing, would leave a pod running (and holding its
resources) for a node Slurm no longer uses. So a suspend writes down the pods it is about to
delete before the deletes go out and crosses them off when they are done; the next hook call
pays what is left (suspend and resume-fail all of it, resume that of its own nodes). A pod is
named with its uid: only that incarnation is owed, never a pod a later resume made.
One small file per node, like :mod:`bridge.causes`; losing one costs only the cleanup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _dir(state_dir: str) -> Path:
    return Path(state_dir) / "owed-deletes"


def owe(state_dir: str, pods: dict[str, tuple[str, str]], *, log: Any) -> None:
    """Remember ``pods`` (node → (pod name, uid)) as owed deletes."""
    try:
        _dir(state_dir).mkdir(parents=True, exist_ok=True)
        for node, (name, uid) in pods.items():
            (_dir(state_dir) / node.replace("/", "_")).write_text(f"{name} {uid}")
    except OSError as e:
        log.warning("cannot remember the pods to delete", error=e.strerror, state_dir=state_dir)


def owed(state_dir: str, nodes: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """Owed deletes (node → (pod name, uid)), of ``nodes`` only if given."""
    found = {}
    try:
        paths = list(_dir(state_dir).iterdir())
    except OSError:
        return {}
    for path in paths:
        if nodes is not None and path.name not in nodes:
            continue
        try:
            name, uid = path.read_text().split()
        except (OSError, ValueError):
            continue
        found[path.name] = (name, uid)
    return found


def before(stamp: float) -> str:
    """The uid of a delete owed for whatever pod a node had at ``stamp``: the suspend could not
    list its pods, so it knows no uid (a pod made later, for a new job, is not owed)."""
    return f"before:{stamp:.3f}"


def matches(owing: tuple[str, str], pod: dict[str, Any]) -> bool:
    """Whether ``pod`` is the one owed: that name and uid, or, for a :func:`before` record, that
    name created before then."""
    name, uid = owing
    meta = pod.get("metadata") or {}
    if meta.get("name") != name:
        return False
    if not uid.startswith("before:"):
        return meta.get("uid", "") == uid
    from bridge.lease import parse_time

    created = parse_time(meta.get("creationTimestamp"))
    try:
        return created is not None and created < float(uid.removeprefix("before:"))
    except ValueError:
        return False


def paid(state_dir: str, nodes: list[str]) -> None:
    for node in nodes:
        try:
            (_dir(state_dir) / node.replace("/", "_")).unlink()
        except OSError:
            pass
