"""What slurmctld tells ResumeProgram in ``$SLURM_RESUME_FILE``.

The variable names ``/proc/<slurmctld pid>/fd/N``, a memfd that exists only while the hook's
parent holds it: read it first thing, before anything else can take time. Two formats:

* 22.05: ``{"all_nodes": "...", "jobs": [{"job_id": 6, "nodes": "elastic1"}]}``
* 23.02 and later: ``all_nodes_resume``, and per job ``nodes_resume`` (the nodes being
  resumed), ``nodes_alloc`` (all of the job's nodes, some maybe already up), ``partition``,
  ``features``, ``reservation``, ... A manual ``scontrol update state=power_up`` has no job.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field

from bridge import hostlist
from bridge.errors import ResumeFileError, ResumeFileGone, UsageError

ENV_VAR = "SLURM_RESUME_FILE"
_GONE = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.ESRCH)
"""How reading ``/proc/<slurmctld pid>/fd/N`` fails once that slurmctld died: ENOENT when it is
gone, EACCES while the kernel is still tearing it down (measured: both, SIGKILL then restart)."""


@dataclass(frozen=True)
class JobRequest:
    job_id: int
    nodes: tuple[str, ...]
    """Nodes of this job that are being resumed now."""
    nodes_alloc: tuple[str, ...] = ()
    """All nodes allocated to the job (23.02+; empty when Slurm did not say)."""
    partition: str | None = None
    features: str | None = None
    reservation: str | None = None


@dataclass(frozen=True)
class ResumeRequest:
    nodes: tuple[str, ...]
    jobs: tuple[JobRequest, ...] = field(default=())

    def job_of(self, node: str) -> JobRequest | None:
        """The (first) job a node is resumed for; None for a manual power up."""
        for job in self.jobs:
            if node in job.nodes:
                return job
        return None


Group = tuple[tuple[int, ...], list[str]]
"""Job ids and the nodes resumed for them, which stand or fall together."""


def groups(nodes: list[str], request: ResumeRequest | None) -> list[Group]:
    """``nodes`` split into what must succeed or fail as one: each job with its nodes, jobs
    that share a node (Slurm allows it, e.g. with OverSubscribe) merged into one group, and
    every node resumed without a job alone."""
    wanted = set(nodes)
    merged: list[tuple[set[int], set[str]]] = []
    for job in request.jobs if request else ():
        ids, members = {job.job_id}, set(job.nodes) & wanted
        for other in [g for g in merged if g[1] & members]:
            merged.remove(other)
            ids |= other[0]
            members |= other[1]
        merged.append((ids, members))
    claimed = set().union(*(m for _, m in merged)) if merged else set()
    out: list[Group] = [(tuple(sorted(ids)), [n for n in nodes if n in members]) for ids, members in merged if members]
    return out + [((), [n]) for n in nodes if n not in claimed]


def read_env() -> ResumeRequest | None:
    """Read ``$SLURM_RESUME_FILE`` if Slurm set it; None when it did not (manual runs).

    Raises:
        ResumeFileError: it is set but unreadable or malformed.
    """
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        if e.errno in _GONE:
            raise ResumeFileGone(f"cannot read {ENV_VAR}={path}: {e.strerror}") from None
        raise ResumeFileError(f"cannot read {ENV_VAR}={path}: {e.strerror}") from None
    return parse(text, source=path)


def from_slurm(nodes: list[str], jobs: list[tuple[int, tuple[str, ...]]]) -> ResumeRequest:
    """The request Slurm would have written, rebuilt from its queue when the file is gone
    (:class:`ResumeFileGone`): ``jobs`` are (job id, all of its nodes) of the jobs CONFIGURING or
    RUNNING on ``nodes``, as ``squeue`` tells them."""
    wanted = set(nodes)
    return ResumeRequest(nodes=tuple(nodes), jobs=tuple(
        JobRequest(job_id, tuple(n for n in alloc if n in wanted), alloc) for job_id, alloc in jobs
        if wanted & set(alloc)))


def parse(text: bytes | str, *, source: str = ENV_VAR) -> ResumeRequest:
    """Parse either format (see the module docstring).

    Raises:
        ResumeFileError: not JSON, or not the shape Slurm writes.
    """
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ResumeFileError(f"{source}: not JSON: {e}") from None
    except RecursionError:  # Slurm nests two levels; a file nested deeper than Python's stack is none of its
        raise ResumeFileError(f"{source}: not the JSON Slurm writes: nested too deeply") from None
    if not isinstance(data, dict):
        raise ResumeFileError(f"{source}: expected a JSON object")
    jobs = data.get("jobs") or []
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise ResumeFileError(f"{source}: jobs: expected a list of objects")
    try:
        nodes = _nodes(data.get("all_nodes_resume", data.get("all_nodes")))
        return ResumeRequest(nodes=nodes, jobs=tuple(_job(j) for j in jobs))
    except KeyError as e:
        raise ResumeFileError(f"{source}: a job without {e.args[0]!r}") from None
    except (UsageError, TypeError, ValueError) as e:
        raise ResumeFileError(f"{source}: unexpected content: {e}") from None


def _nodes(expression: object) -> tuple[str, ...]:
    if expression in (None, ""):
        return ()
    if not isinstance(expression, str):
        raise TypeError(f"a hostlist must be a string, got {expression!r}")
    return tuple(hostlist.expand(expression))


def _job(job: dict) -> JobRequest:
    return JobRequest(
        job_id=_job_id(job["job_id"]),
        nodes=_nodes(job.get("nodes_resume", job.get("nodes"))),
        nodes_alloc=_nodes(job.get("nodes_alloc")),
        partition=job.get("partition"),
        features=job.get("features"),
        reservation=job.get("reservation"),
    )


def _job_id(value: object) -> int:
    """Slurm writes a job id as a positive JSON integer; ``1.5`` or ``true`` would otherwise
    read as job 1, and the bridge would label, requeue or hold the wrong job."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise ValueError(f"job_id: expected a positive integer, got {json.dumps(value)}")
    return value
