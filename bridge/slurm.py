"""Slurm, read and updated through its own commands.

We do not link libslurm (pyslurm only installs against one Slurm release, and none that
Debian 12 ships): ``scontrol`` speaks every version's wire protocol for us. Hooks run with no
PATH, so the commands are called by absolute path from the configured ``bin_dir``.

:class:`SlurmClient` is the small protocol the flows use; :class:`CommandSlurm` implements it
with the commands, and tests pass in-memory fakes.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bridge import NAME, hostlist
from bridge.errors import SlurmError

REASON_PREFIX = f"{NAME}: "
_REASON_MAX = 200  # slurmctld keeps longer reasons, but sinfo -R columns and admins do not
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_]*)=")


@dataclass(frozen=True)
class NodeFacts:
    """What Slurm says a node is: the shape its pod must have."""

    name: str
    cpus: int
    real_memory_mb: int
    gres: tuple[str, ...] = ()
    """``gpu:h100:8`` style entries, socket suffixes removed."""
    features: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    """Base state and flags, e.g. ``("IDLE", "CLOUD", "POWERED_DOWN")``."""
    reason: str = ""

    def gres_count(self, name: str, type_: str | None = None) -> int:
        """How many of a generic resource (``gpu``, optionally of one type) the node has."""
        total = 0
        for entry in self.gres:
            gres_name, gres_type, count = split_gres(entry)
            if gres_name == name and (type_ is None or gres_type == type_):
                total += count
        return total


def split_gres(entry: str) -> tuple[str, str | None, int]:
    """``gpu:h100:8`` → ``("gpu", "h100", 8)``; ``gpu:2`` → ``("gpu", None, 2)``; ``gpu`` → 1."""
    parts = entry.split(":")
    count = int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    kinds = [p for p in parts[1:] if not p.isdigit()]
    return parts[0], (kinds[0] if kinds else None), count


class SlurmClient(Protocol):
    def node_facts(self, nodes: list[str]) -> dict[str, NodeFacts]:
        """Facts of each named node that Slurm knows; unknown nodes are left out."""
        ...

    def set_down(self, nodes: list[str], reason: str) -> None:
        """Mark nodes DOWN with ``reason`` (prefixed with the bridge's name): Slurm requeues
        their batch jobs. They stay DOWN until an admin resumes them."""
        ...

    def power_down(self, nodes: list[str], reason: str) -> None:
        """Power nodes down now (POWER_DOWN_FORCE): their jobs are requeued and the nodes
        are back in service, powered down, after SuspendTimeout."""
        ...

    def job_state(self, job_id: int) -> tuple[str, int] | None:
        """The job's state (PENDING, RUNNING, ...) and how often Slurm requeued it; None if gone."""
        ...

    def hold(self, job_id: int, comment: str) -> None:
        """Hold a pending job and say why in its AdminComment."""
        ...

    def delay(self, job_id: int, seconds: float) -> None:
        """Let a pending job start no sooner than ``seconds`` from now."""
        ...

    def set_drained(self, nodes: list[str], reason: str | None) -> None:
        """DRAIN nodes with ``reason`` (running jobs finish, no new ones start); with None,
        lift the drain (UNDRAIN: the node's base state, DOWN say, is left as it is)."""
        ...


def reason(text: str) -> str:
    """A node Reason that starts with the bridge's name, on one line, of bounded length."""
    text = " ".join(text.split())
    if not text.startswith(REASON_PREFIX):
        text = REASON_PREFIX + text
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


class CommandSlurm:
    """:class:`SlurmClient` through ``scontrol``."""

    def __init__(self, bin_dir: str = "/usr/bin", *, timeout: float = 10.0) -> None:
        self._scontrol = str(Path(bin_dir) / "scontrol")
        self._timeout = timeout

    def node_facts(self, nodes: list[str]) -> dict[str, NodeFacts]:
        if not nodes:
            return {}
        out = self._run("-o", "show", "node", hostlist.fold(nodes), ok_missing=True)
        facts = (parse_node_line(line) for line in out.splitlines() if line.startswith("NodeName="))
        return {f.name: f for f in facts}

    def set_down(self, nodes: list[str], reason_text: str) -> None:
        if nodes:
            self._run("update", f"NodeName={hostlist.fold(nodes)}", "State=DOWN",
                      f"Reason={reason(reason_text)}")

    def power_down(self, nodes: list[str], reason_text: str) -> None:
        if nodes:
            self._run("update", f"NodeName={hostlist.fold(nodes)}", "State=POWER_DOWN_FORCE",
                      f"Reason={reason(reason_text)}")

    def job_state(self, job_id: int) -> tuple[str, int] | None:
        out = self._run("-o", "show", "job", str(job_id), ok_missing=True)
        if not out.strip():
            return None
        fields = _fields(out.splitlines()[0])
        return fields.get("JobState", ""), _int(fields.get("Restarts"))

    def hold(self, job_id: int, comment: str) -> None:
        self._run("hold", str(job_id))
        self._run("update", f"JobId={job_id}", f"AdminComment={reason(comment)}")

    def delay(self, job_id: int, seconds: float) -> None:
        self._run("update", f"JobId={job_id}", f"StartTime=now+{max(0, round(seconds))}")

    def set_drained(self, nodes: list[str], reason_text: str | None) -> None:
        if nodes and reason_text is not None:
            self._run("update", f"NodeName={hostlist.fold(nodes)}", "State=DRAIN", f"Reason={reason(reason_text)}")
        elif nodes:
            self._run("update", f"NodeName={hostlist.fold(nodes)}", "State=UNDRAIN")

    def job_waiting(self, job_id: str) -> bool:
        """Whether a job is still CONFIGURING or RUNNING (not cancelled, requeued or done)."""
        job = self.job_state(int(job_id))
        return job is not None and job[0] in ("CONFIGURING", "RUNNING")

    def _run(self, *args: str, ok_missing: bool = False) -> str:
        cmd = [self._scontrol, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self._timeout)
        except FileNotFoundError:
            raise SlurmError(f"{self._scontrol} not found (set slurm.bin_dir in the config)") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"scontrol {args[0]} did not answer in {self._timeout:.0f} s") from None
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["no message"])[0]
            if ok_missing and "not found" in message.lower():
                return done.stdout
            raise SlurmError(f"scontrol {' '.join(args[:2])} failed: {message}")
        return done.stdout


def parse_node_line(line: str) -> NodeFacts:
    """One line of ``scontrol -o show node``.

    Values may hold spaces (``Reason=...``, ``OS=...``), so a field ends where the next
    ``Key=`` begins.
    """
    fields = _fields(line)
    return NodeFacts(
        name=fields["NodeName"],
        cpus=_int(fields.get("CPUTot")),
        real_memory_mb=_int(fields.get("RealMemory")),
        gres=_gres(fields.get("Gres", "")),
        features=_list(fields.get("AvailableFeatures", "")),
        state=tuple(s for s in fields.get("State", "").split("+") if s),
        reason=fields.get("Reason", "") if fields.get("Reason") != "(null)" else "",
    )


def _fields(line: str) -> dict[str, str]:
    marks = list(_FIELD.finditer(line))
    out: dict[str, str] = {}
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(line)
        out[mark.group(1)] = line[mark.end():end].strip()
    return out


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _list(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x and x != "(null)")


def _gres(text: str) -> tuple[str, ...]:
    """``gpu:h100:8(S:0-1),mps:100`` → ``("gpu:h100:8", "mps:100")``."""
    return tuple(re.sub(r"\(.*?\)", "", x) for x in _list(re.sub(r"\(S:[^)]*\)", "", text)))
