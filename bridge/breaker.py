"""The capacity circuit breaker: when a nodeset's pods keep failing for lack of capacity, Slurm
stops choosing that nodeset's powered-down nodes for a cool-down, then tries again.

Without it a job whose pods are Unschedulable loops: resume, Unschedulable, released, requeued,
resumed again after ``resume.cooldown``, each time costing a scheduling round in Kubernetes and
an attempt of the job (held after ``resume.max_attempts``). With it, after
``daemon.breaker_failures`` capacity failures of one nodeset within ``daemon.breaker_window``,
its powered-down nodes are DRAINed with the reason ``slurm-k8s-bridge: capacity breaker open
until <time>``: jobs wait in the queue (ReqNodeNotAvail) instead of failing. When that time
passes the drains are lifted (the probe: the next job tries). A capacity failure during the
probe opens the breaker again for twice as long (``breaker_cooldown`` doubling up to
``breaker_max_cooldown``, as slurm-gcp's 300 → 1800 s); a node of the nodeset registering
closes it for good.

The open breaker lives on the Slurm nodes themselves (the drain reason carries its end), so a
restarted daemon keeps it; only the failure count and the doubling are the daemon's memory.
A capacity failure is what the release wrote: a node given back with a reason saying its pod
was unschedulable (:func:`bridge.follow.pod_failure`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from bridge import nodestate
from bridge.config import Config, ConfigError
from bridge.slurm import BREAKER_REASON, REASON_PREFIX, NodeFacts

_UNTIL = re.compile(re.escape(BREAKER_REASON) + r"(\S+Z)")
_CAPACITY = " unschedulable: "


@dataclass(frozen=True)
class OpenBreaker:
    """DRAIN these powered-down nodes of the nodeset until ``until`` (seconds since the epoch)."""

    nodeset: str
    nodes: tuple[str, ...]
    until: float
    failures: int
    rule: str = field(default="breaker_open", compare=False)
    kind = "open_breaker"

    @property
    def node(self) -> str:
        return ",".join(self.nodes)

    @property
    def cause(self) -> str:
        return (f"{BREAKER_REASON}{_iso(self.until)}: nodeset {self.nodeset}, "
                f"{self.failures} resume(s) failed for lack of capacity")


@dataclass(frozen=True)
class CloseBreaker:
    """Lift the breaker's drains: the probe (the next job) tries the nodeset again."""

    nodeset: str
    nodes: tuple[str, ...]
    rule: str = field(default="breaker_probe", compare=False)
    kind = "close_breaker"

    @property
    def node(self) -> str:
        return ",".join(self.nodes)

    @property
    def cause(self) -> str:
        return f"capacity breaker of nodeset {self.nodeset}: cool-down over, trying again"


@dataclass
class Breakers:
    """The daemon's memory of capacity failures (by nodeset) and of probes under way."""

    failures: dict[str, list[float]] = field(default_factory=dict)
    """Per nodeset, when each capacity failure was seen (one per release, whatever the number of
    its nodes: nodes released together share the reason)."""
    counted: dict[str, str] = field(default_factory=dict)
    """The capacity reason each node carries that was already counted: the same reason on the
    same node is a new failure only after the node was seen without it (powering up again)."""
    cooldown: dict[str, float] = field(default_factory=dict)
    """The cool-down of each nodeset's last opening."""
    probing: dict[str, float] = field(default_factory=dict)
    """Nodesets whose cool-down ended, and when the probe began."""


def plan(facts: dict[str, NodeFacts], now: float, config: Config, state: Breakers) -> list[OpenBreaker | CloseBreaker]:
    settings = config.daemon
    if settings.breaker_failures < 1:
        return []
    actions: list[OpenBreaker | CloseBreaker] = []
    for nodeset, nodes in sorted(_by_nodeset(facts, config).items()):
        actions += _one(nodeset, nodes, now=now, config=config, state=state)
    return actions


def open_until(fact: NodeFacts) -> float | None:
    """When the breaker that drained this node closes, if one did."""
    match = _UNTIL.search(fact.reason) if nodestate.is_drained(fact.state) else None
    if match is None:
        return None
    try:
        return dt.datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _one(nodeset: str, nodes: list[NodeFacts], *, now: float, config: Config,
         state: Breakers) -> list[OpenBreaker | CloseBreaker]:
    settings = config.daemon
    seen = state.failures.setdefault(nodeset, [])
    seen += [now] * len(_new_failures(nodes, state))
    seen[:] = [t for t in seen if now - t <= settings.breaker_window]
    drained = {f.name: until for f in nodes if (until := open_until(f)) is not None}
    if drained:
        until = max(drained.values())
        if now >= until:
            state.probing[nodeset] = now
            return [CloseBreaker(nodeset, tuple(sorted(drained)))]
        more = _closable(nodes, drained)
        return [OpenBreaker(nodeset, more, until, len(seen))] if more else []
    probe = state.probing.get(nodeset)
    if probe is not None and any(nodestate.is_up(f.state) for f in nodes):
        state.probing.pop(nodeset)  # capacity is back: the next failure starts from the beginning
        state.cooldown.pop(nodeset, None)
        return []
    recent = [t for t in seen if probe is None or t >= probe]
    if len(recent) < (1 if probe is not None else settings.breaker_failures):
        return []
    cooldown = min(settings.breaker_max_cooldown,
                   state.cooldown[nodeset] * 2 if probe is not None and nodeset in state.cooldown
                   else settings.breaker_cooldown)
    state.cooldown[nodeset] = cooldown
    state.probing.pop(nodeset, None)
    seen.clear()
    more = _closable(nodes, {})
    return [OpenBreaker(nodeset, more, now + cooldown, len(recent))] if more else []


def _new_failures(nodes: list[NodeFacts], state: Breakers) -> set[str]:
    """Capacity reasons seen for the first time on their nodes."""
    new = set()
    for fact in nodes:
        if not (fact.reason.startswith(REASON_PREFIX) and _CAPACITY in fact.reason and nodestate.is_off(fact.state)):
            state.counted.pop(fact.name, None)
        elif state.counted.get(fact.name) != fact.reason:
            state.counted[fact.name] = fact.reason
            new.add(fact.reason)
    return new


def _closable(nodes: list[NodeFacts], drained: dict[str, float]) -> tuple[str, ...]:
    """The nodes Slurm could choose next: powered down or on the way (a failed node powers down
    for as long as slurmctld tries to reach its gone slurmd, ~10 s measured), no job, not drained
    yet. Slurm may drop a drain sent while a node powers down: the next look sends it again."""
    return tuple(sorted(f.name for f in nodes if f.name not in drained and nodestate.is_off(f.state)
                        and not nodestate.is_allocated(f.state) and not nodestate.is_drained(f.state)))


def _by_nodeset(facts: dict[str, NodeFacts], config: Config) -> dict[str, list[NodeFacts]]:
    out: dict[str, list[NodeFacts]] = {}
    for name, fact in facts.items():
        try:
            out.setdefault(config.nodeset_for(name).name, []).append(fact)
        except ConfigError:
            continue
    return out


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
