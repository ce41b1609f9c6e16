"""Why the bridge set a node DOWN, remembered across Slurm's ResumeTimeout.

Slurm 22.05 overwrites a powering-up node's Reason with "ResumeTimeout reached" when
ResumeTimeout expires, even when the bridge set it DOWN with the real cause long before.
The resume-fail hook puts the cause back from here; a successful resume forgets it.
One small file per node; losing one costs only the nicer Reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _path(state_dir: str, node: str) -> Path:
    return Path(state_dir) / "down-reasons" / node.replace("/", "_")


def remember(state_dir: str, node: str, cause: str, *, log: Any) -> None:
    try:
        path = _path(state_dir, node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cause)
    except OSError as e:
        log.warning("cannot remember the down reason", node=node, error=e.strerror, state_dir=state_dir)


def recall(state_dir: str, node: str) -> str | None:
    try:
        return _path(state_dir, node).read_text()
    except OSError:
        return None


def forget(state_dir: str, nodes: list[str]) -> None:
    for node in nodes:
        try:
            _path(state_dir, node).unlink()
        except OSError:
            pass
