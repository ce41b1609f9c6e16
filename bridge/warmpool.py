"""How many idle nodes a nodeset should keep powered up: the warm pool's target, as a pure model.

A job that lands on nodes that are already up starts at static speed; one that needs a node
started waits for the pod to be scheduled, pulled, started and registered. A warm pool trades
idle pod-hours for that wait. The model here decides the pool's size from what Slurm shows:

- **demand** is counted in nodes, not jobs: a 16-node job needs 16 warm nodes at once. Every
  submission is :func:`observe`d with its node count.
- a **fast rate** (exponentially weighted, half-life ``fast_half_life``, default 10 min) follows
  bursts: one user submitting a series of jobs raises it within the first job;
- a **weekly profile** (168 hour-of-week bins, each an exponentially weighted mean over the weeks
  seen, falling back to the hour-of-day mean while a week is incomplete) remembers the rhythm of
  working hours, so the pool is filled before the morning's first job, not after it;
- a **size** estimate (a high quantile of the recent job sizes) is what one arriving job needs;
  the pool holds it only while an arrival within ``hold`` seconds is likely enough
  (``1 - exp(-rate * hold) >= min_arrival_probability``), otherwise idle nodes would wait for
  nothing;
- a **budget**: idle pod-seconds are kept at or below ``idle_share`` of busy pod-seconds over
  roughly a day; above it the target shrinks in proportion;
- **quiet**: with no submission for ``quiet_after`` seconds and a profile that expects none, the
  target is ``min`` (scale to zero by default).

Everything is a pure function of a :class:`Demand` value (JSON-serialisable, so a restarted
daemon keeps what it learned) and the time; no clock is read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

HOURS_PER_WEEK = 168
_SIZES_KEPT = 64


@dataclass(frozen=True)
class PoolPolicy:
    """A nodeset's warm-pool settings (``warm:`` in the config)."""

    min: int = 0
    """Nodes kept up whatever the model says (0: scale to zero when quiet)."""
    max: int = 0
    """Never more idle nodes than this (0: no warm pool at all)."""
    horizon: float = 60.0
    """Seconds ahead the pool must cover: about how long a new pod takes to register."""
    hold: float = 1800.0
    """An idle node is worth holding if a job is likely to arrive within this many seconds."""
    min_arrival_probability: float = 0.5
    size_quantile: float = 0.8
    """The job size the pool holds: this quantile of the recent sizes."""
    fast_half_life: float = 600.0
    profile_weight: float = 0.3
    """Weight of the newest week in each hour-of-week bin."""
    linger: float = 600.0
    """Idle nodes beyond the target are suspended after this long (as Slurm's SuspendTime): a
    node a job just left is the likeliest to be asked for again, by the same user's next job."""
    quiet_after: float = 3600.0
    idle_share: float = 0.10
    """Idle pod-seconds at most this share of busy pod-seconds (0: no cap)."""
    budget_half_life: float = 86400.0


@dataclass(frozen=True)
class Demand:
    """What the model has learned of a nodeset's demand; JSON-serialisable via :func:`to_json`."""

    updated: float = 0.0
    fast_rate: float = 0.0
    """Nodes asked per second, recent."""
    fast_jobs: float = 0.0
    """Jobs per second, recent."""
    last_arrival: float = -math.inf
    profile: tuple[float, ...] = (0.0,) * HOURS_PER_WEEK
    """Nodes asked per second in each hour of the week (Monday 00:00 UTC = bin 0)."""
    profile_seen: tuple[bool, ...] = (False,) * HOURS_PER_WEEK
    hour_start: float = 0.0
    """Start of the hour being counted and the nodes asked in it so far."""
    hour_nodes: float = 0.0
    recent: tuple[tuple[float, int], ...] = ()
    """The last submissions: (time, nodes)."""
    idle_seconds: float = 0.0
    """Exponentially weighted idle and busy pod-seconds, for the budget."""
    busy_seconds: float = 0.0


def hour_of_week(t: float) -> int:
    """Bin of a Unix time: Monday 00:00 UTC is 0 (1970-01-01 was a Thursday, bin 72)."""
    return int((t // 3600 + 72) % HOURS_PER_WEEK)


def _decay(value: float, elapsed: float, half_life: float) -> float:
    return value * 0.5 ** (max(0.0, elapsed) / half_life) if half_life > 0 else 0.0


def _advance(d: Demand, now: float, policy: PoolPolicy) -> Demand:
    """Decay the rates to ``now`` and close any hours that ended since the last update."""
    elapsed = now - d.updated
    d = replace(d, updated=now,
                fast_rate=_decay(d.fast_rate, elapsed, policy.fast_half_life),
                fast_jobs=_decay(d.fast_jobs, elapsed, policy.fast_half_life))
    if d.hour_start == 0.0:
        return replace(d, hour_start=now - now % 3600)
    if now < d.hour_start + 3600:
        return d
    profile, seen = list(d.profile), list(d.profile_seen)
    start, nodes = d.hour_start, d.hour_nodes
    while now >= start + 3600:
        b = hour_of_week(start)
        rate = nodes / 3600
        profile[b] = rate if not seen[b] else (1 - policy.profile_weight) * profile[b] + policy.profile_weight * rate
        seen[b] = True
        start, nodes = start + 3600, 0.0
        if now - start > HOURS_PER_WEEK * 3600:  # a long gap: the skipped weeks asked nothing
            skipped = int((now - start) // 3600) - 1
            for _ in range(min(skipped, HOURS_PER_WEEK)):
                b = hour_of_week(start)
                profile[b] = (1 - policy.profile_weight) * profile[b] if seen[b] else 0.0
                seen[b] = True
                start += 3600
            start = now - now % 3600
    return replace(d, profile=tuple(profile), profile_seen=tuple(seen), hour_start=start, hour_nodes=nodes)


def observe(d: Demand, now: float, nodes: int, policy: PoolPolicy) -> Demand:
    """A job asking for ``nodes`` nodes of the nodeset was submitted at ``now``."""
    d = _advance(d, now, policy)
    # An EWMA rate: each event adds ln2/half_life of itself, so a steady rate r converges to r.
    gain = math.log(2) / policy.fast_half_life
    recent = (d.recent + ((now, nodes),))[-_SIZES_KEPT:]
    return replace(d, fast_rate=d.fast_rate + gain * nodes, fast_jobs=d.fast_jobs + gain,
                   last_arrival=now, hour_nodes=d.hour_nodes + nodes, recent=recent)


def account(d: Demand, *, idle_seconds: float, busy_seconds: float, elapsed: float,
            policy: PoolPolicy) -> Demand:
    """Add the pod-seconds spent idle and busy over the last ``elapsed`` seconds (for the budget)."""
    return replace(d, idle_seconds=_decay(d.idle_seconds, elapsed, policy.budget_half_life) + idle_seconds,
                   busy_seconds=_decay(d.busy_seconds, elapsed, policy.budget_half_life) + busy_seconds)


def profile_rate(d: Demand, now: float) -> float:
    """Nodes per second the profile expects at ``now``: the hour-of-week bin once seen, else the
    mean of the same hour of day over the days seen."""
    b = hour_of_week(now)
    if d.profile_seen[b]:
        return d.profile[b]
    same_hour = [d.profile[i] for i in range(b % 24, HOURS_PER_WEEK, 24) if d.profile_seen[i]]
    return sum(same_hour) / len(same_hour) if same_hour else 0.0


def _budget(d: Demand, policy: PoolPolicy) -> float:
    """1 while idle pod-seconds are within the budget, else the factor that would bring them back."""
    if policy.idle_share <= 0 or d.busy_seconds <= 0:
        return 1.0
    share = d.idle_seconds / d.busy_seconds
    return min(1.0, policy.idle_share / share) if share > 0 else 1.0


def linger(d: Demand, policy: PoolPolicy) -> float:
    """Seconds an idle node beyond the target stays up: ``policy.linger``, shortened in proportion
    while idle pod-seconds are over budget."""
    return policy.linger * _budget(d, policy)


def _quantile(values: tuple[int, ...], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def target(d: Demand, now: float, policy: PoolPolicy, *, pending_nodes: int = 0) -> int:
    """Idle nodes to keep powered up at ``now`` (nodes already asked for by pending jobs are added:
    Slurm resumes those anyway)."""
    if policy.max <= 0:
        return 0
    d = _advance(d, now, policy)
    expected = profile_rate(d, now)
    rate = max(d.fast_rate, expected)
    sizes = tuple(n for _, n in d.recent)
    mean_size = (sum(sizes) / len(sizes)) if sizes else 1.0
    job_rate = max(d.fast_jobs, expected / max(mean_size, 1.0))
    quiet = now - d.last_arrival >= policy.quiet_after and expected * policy.hold < 1.0
    if quiet:
        want = 0.0
    else:
        likely = 1 - math.exp(-job_rate * policy.hold) >= policy.min_arrival_probability
        # What arrived in the last horizon is the best guess of the next one (users submit
        # series of alike jobs), and one typical job when an arrival is likely at all.
        series = sum(n for t, n in d.recent if now - t < policy.horizon)
        want = max(rate * policy.horizon, series, _quantile(sizes, policy.size_quantile) if likely else 0)
    want *= _budget(d, policy)
    return max(policy.min, min(policy.max, math.ceil(want - 1e-9))) + max(0, pending_nodes)


def to_json(d: Demand) -> dict:
    return {"updated": d.updated, "fast_rate": d.fast_rate, "fast_jobs": d.fast_jobs,
            "last_arrival": d.last_arrival if math.isfinite(d.last_arrival) else None,
            "profile": list(d.profile), "profile_seen": list(d.profile_seen), "hour_start": d.hour_start,
            "hour_nodes": d.hour_nodes, "recent": [list(x) for x in d.recent], "idle_seconds": d.idle_seconds,
            "busy_seconds": d.busy_seconds}


def from_json(data: dict) -> Demand:
    last = data.get("last_arrival")
    return Demand(updated=data["updated"], fast_rate=data["fast_rate"], fast_jobs=data["fast_jobs"],
                  last_arrival=-math.inf if last is None else last, profile=tuple(data["profile"]),
                  profile_seen=tuple(data["profile_seen"]), hour_start=data["hour_start"],
                  hour_nodes=data["hour_nodes"], recent=tuple((t, n) for t, n in data["recent"]),
                  idle_seconds=data["idle_seconds"], busy_seconds=data["busy_seconds"])
