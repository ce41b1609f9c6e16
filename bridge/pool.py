"""The daemon's warm-pool step: per warm pool (a nodeset with ``warm.max > 0``, or the nodesets
that name one ``warm.pool``), keep the target number of idle nodes powered up
(:mod:`bridge.warmpool` sizes it), through Slurm.

Demand is read from the node facts the daemon reads anyway: nodes of the nodeset that became
allocated since the last look are one arrival of that many nodes. Slurm allocates powered-down
nodes to a job the moment it schedules it, so a job is seen before its nodes are up. A burst
within one look counts as one larger job.

Nodes are powered up with no job (``scontrol power up`` or ``State=POWER_UP``): Slurm calls
ResumeProgram, the hook creates the pod, slurmd registers, the node is idle. Idle nodes beyond
the target are powered down (``POWER_DOWN``: graceful) once idle for ``warmpool.linger``.

A pool's nodes are ranked by price: a nodeset on spot capacity before one on on-demand or
unmarked capacity, then the config's order. Power-ups take the cheapest usable nodes (so a spot
nodeset whose breaker is open, or whose nodes are DOWN or DRAIN, leaves the pool to the dearer
one), power-downs the dearest idle nodes first, and a dearer node idle past the linger is
swapped for a cheaper powered-down one (within ``max``, or one over it when the pool is full):
the cheaper node is powered up, and the dearer one goes once the pool has its target without it.

With ``warm.idle_hours_per_day`` set, the target is at most ``min`` plus the whole hours left
under it over the last 24 hours; once spent, the target is ``min``, idle nodes beyond it go at once, and no
node is started ahead of a planned job (those up for one stay).

A job that waits for nodes other jobs hold is planned by Slurm's backfill scheduler (squeue's
StartTime and SchedNodes, one squeue per look): one ``horizon`` before its expected start, the
powered-down nodes planned for it are powered up (within ``max``) and kept up while the plan
stands, so it starts warm when its turn comes.

Slurm's own SuspendTime still powers idle nodes down; on every version the next look powers the
shortfall up again (README "Warm pool" says how to set SuspendTime). A node that is DOWN,
DRAIN, NOT_RESPONDING (unless powering up) or held by the capacity breaker is never counted nor
powered up.

What was learned (:class:`warmpool.Demand`) and the nodes allocated at the last look are kept in
``<resume.state_dir>/warm-<pool>.json`` (a pool of one nodeset is named after it), so a
restarted daemon loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import breaker, hostlist, nodestate, warmpool
from bridge.config import Config, Nodeset, price_rank, warm_pools
from bridge.errors import SlurmError
from bridge.metrics import Metrics
from bridge.slurm import NodeFacts, SlurmClient

_MAX_ELAPSED = 3600.0
"""Longest gap between two looks that is counted as idle/busy time (a stopped daemon saw nothing)."""
_STALE_PLAN = 600.0
"""A pending job's planned start this far past is a plan Slurm no longer acts on (the backfill
scheduler places a waiting job again every bf_interval, 30 s by default): its nodes are not kept."""
_STALE_LOOK = 120.0
"""A last look older than this (a restarted daemon, a replica that leads again) is no baseline
for arrivals: every node allocated in between would count as one burst now, and the pool would
fill to max for it."""


def policy(nodeset: Nodeset) -> warmpool.PoolPolicy:
    w = nodeset.warm
    return warmpool.PoolPolicy(min=w.min, max=w.max, horizon=w.horizon, hold=w.hold, linger=w.linger,
                               quiet_after=w.quiet_after, idle_share=w.idle_share,
                               idle_hours_per_day=w.idle_hours_per_day)


def usable(fact: NodeFacts) -> bool:
    """A node the pool may count or power up: not DOWN, DRAIN, NOT_RESPONDING, nor breaker-held.
    A node powering up is NOT_RESPONDING until its slurmd registers (22.05, 24.11 and 26.05 show a
    node powered up with no job as ``IDLE+CLOUD+NOT_RESPONDING+POWERING_UP``): that one is starting, and
    counts, or the pool would power up a second node for each one on its way."""
    s = fact.state
    silent = nodestate.is_not_responding(s) and not (nodestate.is_powering_up(s) or nodestate.is_power_up_requested(s))
    return not (nodestate.is_down(s) or nodestate.is_drained(s) or silent or breaker.open_until(fact) is not None)


def starting_up(fact: NodeFacts) -> bool:
    """On its way up with no job: powering up, or asked to and waiting for Slurm's power-save
    thread (a power-up asked at the last look must not be asked again, nor replaced)."""
    s = fact.state
    return (nodestate.is_powering_up(s) or nodestate.is_power_up_requested(s)) and not nodestate.is_allocated(s)


def free_and_off(fact: NodeFacts) -> bool:
    """Powered down, no job and no power-up asked: one the pool may power up."""
    s = fact.state
    return nodestate.is_powered_down(s) and not nodestate.is_allocated(s) and not nodestate.is_power_up_requested(s)


def read_state(path: Path) -> _Learned:
    """A pool's state file. Raises OSError (FileNotFoundError: none yet), or ValueError: not a
    file this version writes (a hand edit, a truncated copy)."""
    try:
        data = json.loads(path.read_text())
        looked, allocated, demand = data["looked"], data["allocated"], data["demand"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a warm pool state: {type(e).__name__} {e}") from None
    if not (looked is None or (isinstance(looked, (int, float)) and math.isfinite(looked))) \
            or not isinstance(allocated, list) or not all(isinstance(n, str) for n in allocated):
        raise ValueError("looked or allocated is not what this version writes")
    return _Learned(warmpool.from_json(demand), set(allocated), looked)


@dataclass
class _Learned:
    demand: warmpool.Demand = field(default_factory=warmpool.Demand)
    allocated: set[str] | None = None
    """Nodes allocated at the last look; None before the first (nothing to compare with)."""
    looked: float | None = None


@dataclass(frozen=True)
class Decision:
    """One pool at one look."""

    nodeset: str
    """The pool's name: its nodeset's, or the ``warm.pool`` its nodesets share."""
    target: int
    idle: tuple[str, ...]
    starting: tuple[str, ...]
    power_up: tuple[str, ...] = ()
    power_down: tuple[str, ...] = ()
    planned: tuple[str, ...] = ()
    """Nodes Slurm means to give a pending job that starts within the horizon (kept up)."""
    capped: bool = False
    """The idle pod-hours of the last 24 hours have reached ``warm.idle_hours_per_day``."""
    idle_hours: float = 0.0
    """Idle pod-hours of the pool's nodes over the last 24 hours."""


class Pool:
    def __init__(self, config: Config, *, slurm: SlurmClient, log: Any, metrics: Metrics,
                 dry_run: bool = False) -> None:
        self._pools = warm_pools(config.nodesets)
        # Cheapest first, each nodeset's nodes in its order (elastic2 before elastic10).
        self._nodes: dict[str, list[str]] = {name: [] for name in self._pools}
        self._rank: dict[str, int] = {}
        for name, members in self._pools.items():
            for ns in members:
                nodes = hostlist.expand(ns.nodes)
                self._nodes[name] += nodes
                self._rank.update(dict.fromkeys(nodes, price_rank(ns)))
        self._slurm, self._log, self._metrics, self._dry_run = slurm, log, metrics, dry_run
        self._dir = Path(config.resume.state_dir)
        self._stale = max(_STALE_LOOK, 3 * config.daemon.tick)  # a long tick is no gap
        self._learned: dict[str, _Learned] = {}
        self._idle_since: dict[str, float] = {}

    def step(self, facts: dict[str, NodeFacts], now: float, changed: frozenset[str] = frozenset()) -> list[Decision]:
        """Learn, size, and power up or down; one decision per pool. ``changed``: nodes this
        look's own actions just drained or released, which ``facts`` (read before them) still
        show as before: counted as allocated if they were, never as idle, starting or free."""
        planned = self._planned() if self._pools else []
        decisions = [self._decide(name, members[0], facts, now, planned, changed)
                     for name, members in self._pools.items()]
        for decision in decisions:
            self._carry_out(decision)
        return decisions

    # ---- deciding --------------------------------------------------------------------------

    def _planned(self) -> list[tuple[float, tuple[str, ...]]]:
        try:
            return self._slurm.planned_starts()
        except SlurmError as e:
            self._metrics.api_errors.labels("slurm", "planned_starts").inc()
            self._log.warning("warm pool: cannot read the pending jobs' planned starts", error=str(e))
            return []

    def _decide(self, name: str, first: Nodeset, facts: dict[str, NodeFacts], now: float,
                planned: list[tuple[float, tuple[str, ...]]], changed: frozenset[str] = frozenset()) -> Decision:
        rules = policy(first)
        mine = {n: facts[n] for n in self._nodes[name] if n in facts}
        # In the pool's order, cheapest capacity first: the pool takes the first free nodes.
        idle = [n for n, f in mine.items() if n not in changed and usable(f) and nodestate.is_up(f.state)
                and not nodestate.is_allocated(f.state)]
        starting = [n for n, f in mine.items() if n not in changed and usable(f) and starting_up(f)]
        allocated = {n for n, f in mine.items() if nodestate.is_allocated(f.state)}
        learned = self._learn(name, allocated, len(idle), now, rules)
        target = warmpool.target(learned.demand, now, rules)
        capped = warmpool.capped(learned.demand, now, rules)
        for node in set(self._idle_since) & set(mine) - set(idle):
            del self._idle_since[node]
        for node in idle:
            self._idle_since.setdefault(node, now)
        # A job waiting for nodes other jobs hold, due within the horizon: the powered-down nodes
        # Slurm means to give it start now, so it starts warm when its turn comes (up to max),
        # and those already up are kept. While the cap is reached none is started: Slurm starts
        # them itself when the job's turn comes.
        soon = list(dict.fromkeys(n for start, nodes in planned if -_STALE_PLAN <= start - now <= rules.horizon
                                  for n in nodes if n in mine))
        off = [n for n, f in mine.items() if n not in changed and usable(f) and free_and_off(f)]
        have, kept = len(idle) + len(starting), set(soon)  # kept: not the pool's to power down
        up = [] if capped else [n for n in off if n in kept][: max(0, rules.max - have)]
        down: list[str] = []
        stay = warmpool.linger(learned.demand, now, rules)
        lingered = [n for n in idle if n not in kept and now - self._idle_since[n] >= stay]
        if have + len(up) < target:
            chosen = set(up)
            up += [n for n in off if n not in chosen][: target - have - len(up)]
        elif len(idle) > target:
            # Only what is up and idle beyond the target: a node still starting may yet fail.
            # Dearest capacity first, then the longest idle.
            lingered.sort(key=lambda n: (-self._rank[n], self._idle_since[n]))
            down = lingered[: len(idle) - target]
        if not up and not down and not starting and not capped:
            # A dearer node that lingered, and a cheaper one that can be powered up: swap them,
            # within max, or one at a time over it when the pool is full (it would never swap
            # else). The dearer one goes at a later look, once the cheaper one is up and idle.
            dear = sorted((self._rank[n] for n in lingered), reverse=True)[: max(1, rules.max - have)]
            cheap = [n for n in off if n not in kept]
            up = [n for n, rank in zip(cheap, dear) if self._rank[n] < rank]
        self._metrics.warm_target.labels(name).set(target)
        self._metrics.warm_idle.labels(name).set(len(idle))
        idle_hours = warmpool.idle_last_day(learned.demand, now) / 3600
        self._metrics.warm_idle_hours.labels(name).set(idle_hours)
        return Decision(name, target, tuple(idle), tuple(starting), tuple(up), tuple(down), tuple(soon), capped,
                        idle_hours)

    def _learn(self, name: str, allocated: set[str], idle: int, now: float,
               rules: warmpool.PoolPolicy) -> _Learned:
        learned = self._learned.get(name) or self._load(name)
        demand = learned.demand
        fresh = learned.looked is not None and now - learned.looked <= self._stale
        if fresh and learned.allocated is not None and (arrived := allocated - learned.allocated):
            demand = warmpool.observe(demand, now, len(arrived), rules)
        if learned.looked is not None and now > learned.looked:
            elapsed = min(now - learned.looked, _MAX_ELAPSED)
            demand = warmpool.account(demand, idle_seconds=idle * elapsed, busy_seconds=len(allocated) * elapsed,
                                      elapsed=elapsed, now=now, policy=rules)
        learned = _Learned(demand, allocated, now)
        self._learned[name] = learned
        if not self._dry_run:
            self._save(name, learned)
        return learned

    def forget(self) -> None:
        """Drop what is held in memory (a replica standing by: another one keeps the pool); the
        next look starts from the state file."""
        self._learned.clear()
        self._idle_since.clear()

    # ---- carrying out ----------------------------------------------------------------------

    def _carry_out(self, d: Decision) -> None:
        for nodes, action, call in ((d.power_up, "power_up", self._slurm.power_up),
                                    (d.power_down, "power_down", self._slurm.power_down_idle)):
            if not nodes:
                continue
            self._log.info("warm pool", action=action, nodeset=d.nodeset, nodes=hostlist.fold(list(nodes)),
                           target=d.target, idle=len(d.idle), starting=len(d.starting),
                           for_planned_jobs=len(set(nodes) & set(d.planned)), capped=d.capped,
                           dry_run=self._dry_run)
            if self._dry_run:
                continue
            try:
                call(list(nodes))
            except SlurmError as e:
                self._metrics.api_errors.labels("slurm", action).inc()
                self._log.error(f"warm pool: cannot {action.replace('_', ' ')}", nodeset=d.nodeset, error=str(e))
                continue
            counter = self._metrics.warm_power_ups if action == "power_up" else self._metrics.warm_power_downs
            counter.labels(d.nodeset).inc(len(nodes))
            if action == "power_down":
                for node in nodes:
                    self._idle_since.pop(node, None)

    # ---- what survives a restart -----------------------------------------------------------

    def path(self, name: str) -> Path:
        """Where pool ``name`` keeps what it learned."""
        return self._dir / f"warm-{name}.json"

    def _load(self, name: str) -> _Learned:
        try:
            return read_state(self.path(name))
        except FileNotFoundError:
            return _Learned()
        except (OSError, ValueError) as e:  # read_state says what is wrong as one of these
            self._log.warning("warm pool: unreadable state, learning afresh", path=str(self.path(name)),
                              error=str(e))
            return _Learned()

    def _save(self, name: str, learned: _Learned) -> None:
        data = {"demand": warmpool.to_json(learned.demand), "allocated": sorted(learned.allocated or ()),
                "looked": learned.looked}
        path = self.path(name)
        partial = None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            # A name of its own: another process writing the same pool (daemon --once beside the
            # daemon) never moves this one's half-written file into place.
            fd, partial = tempfile.mkstemp(dir=self._dir, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o644)  # as before: status --pools may read it as another user
                f.write(json.dumps(data))
            os.replace(partial, path)  # a crash mid-write leaves the old state, never half a file
        except OSError as e:
            self._log.warning("warm pool: cannot keep state", path=str(path), error=str(e))
            if partial is not None:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
