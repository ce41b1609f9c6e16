"""Slurm node states as questions: is the node powered down, powering up, up, drained ...?

Slurm reports a node's state as a base state and flags: ``scontrol -o show node`` writes
``IDLE+CLOUD+POWERED_DOWN``, ``scontrol show node --json`` (23.02+) a list
``["IDLE", "CLOUD", "POWERED_DOWN"]``. :attr:`bridge.slurm.NodeFacts.state` carries either as a
tuple of upper-case names, and every module asks these predicates instead of keeping its own
set of strings (ParallelCluster's ``SlurmNode.is_powering_up()`` style).

Slurm facts these rest on (22.05, measured; later versions documented): a CLOUD node walks
``IDLE+CLOUD+POWERED_DOWN`` → ``MIXED+CLOUD+POWERED_DOWN`` (allocated) →
``MIXED+CLOUD+POWERING_UP`` (ResumeProgram ran) → ``MIXED+CLOUD`` (slurmd registered) →
``IDLE+CLOUD+POWERING_DOWN`` (SuspendProgram ran) → ``IDLE+CLOUD+POWERED_DOWN``. Base states
are IDLE, ALLOCATED, MIXED, COMPLETING (a flag from 23.02), DOWN, FUTURE, UNKNOWN; DRAIN,
NOT_RESPONDING, POWER_DOWN, ... are flags.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

State = tuple[str, ...]

_BUSY = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})
# sinfo-style suffixes (idle~, alloc#, down*) that some outputs glue to the base state.
_SUFFIXES = "*~#!%$@^-"


def normalize(state: Iterable[str] | str) -> State:
    """The state as upper-case names, from a tuple/list or a ``IDLE+CLOUD`` string."""
    return _normalized(state if isinstance(state, (str, tuple)) else tuple(state))


@functools.lru_cache(maxsize=1024)
def _normalized(state: tuple[str, ...] | str) -> State:
    # A cluster has a handful of distinct states: the daemon asks for each of 10,000 nodes
    # several times a look.
    parts = state.split("+") if isinstance(state, str) else state
    return tuple(p.strip().rstrip(_SUFFIXES).upper() for p in parts if p and p.strip())


def _has(state: Iterable[str], flag: str) -> bool:
    return flag in normalize(state)


def is_powered_down(state: Iterable[str]) -> bool:
    """Off: Slurm will call ResumeProgram before running anything there."""
    return _has(state, "POWERED_DOWN")


def is_powering_down(state: Iterable[str]) -> bool:
    """SuspendProgram ran; the node is off once SuspendTimeout has passed."""
    return _has(state, "POWERING_DOWN") or _has(state, "POWER_DOWN")


def is_powering_up(state: Iterable[str]) -> bool:
    """ResumeProgram ran and slurmd has not registered yet."""
    return _has(state, "POWERING_UP")


def is_power_up_requested(state: Iterable[str]) -> bool:
    """``scontrol power up`` (or ``State=POWER_UP``) asked for it and Slurm's power-save thread has
    not called ResumeProgram yet: still POWERED_DOWN, with the POWER_UP flag, for up to
    ``power_save_interval``."""
    return _has(state, "POWER_UP")


def is_down(state: Iterable[str]) -> bool:
    s = normalize(state)
    return bool(s) and s[0] == "DOWN"


def is_drained(state: Iterable[str]) -> bool:
    """DRAIN set: no new jobs; running ones finish (sinfo says draining until they do)."""
    return bool({"DRAIN", "DRAINED", "DRAINING"} & set(normalize(state)))


def is_not_responding(state: Iterable[str]) -> bool:
    return _has(state, "NOT_RESPONDING")


def is_allocated(state: Iterable[str]) -> bool:
    """A job holds (part of) the node, whether it is up yet or not."""
    s = normalize(state)
    return bool(s) and (s[0] in _BUSY or "COMPLETING" in s)


def is_up(state: Iterable[str]) -> bool:
    """slurmd registered and answers: the node is in service (idle, busy or drained)."""
    s = normalize(state)
    return bool(s) and not (is_powered_down(s) or is_powering_down(s) or is_powering_up(s) or is_down(s)
                            or is_not_responding(s) or s[0] in ("FUTURE", "UNKNOWN"))


def is_off(state: Iterable[str]) -> bool:
    """Powered down or going there: the node should have no pod."""
    return is_powered_down(state) or is_powering_down(state)


def needs_pod(state: Iterable[str]) -> bool:
    """Slurm counts on this node's pod: it is up, or coming up for a job."""
    return is_up(state) or is_powering_up(state)


def word(state: Iterable[str]) -> str:
    """One short word for tables and metric labels: ``powered_down``, ``powering_up``, ``down``,
    ``drained``, ``allocated``, ``idle`` ..."""
    s = normalize(state)
    if not s:
        return "unknown"
    for test, name in ((is_powered_down, "powered_down"), (is_powering_down, "powering_down"),
                       (is_powering_up, "powering_up"), (is_down, "down"), (is_drained, "drained"),
                       (is_not_responding, "not_responding"), (is_allocated, "allocated")):
        if test(s):
            return name
    return s[0].lower()
