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
- **what to hold** is chosen by the worth of a warm start: the recent submissions give a rate
  of jobs of each size (the fast rate split by size; the profile's rate in the recent sizes' mix
  when it expects more). Holding ``m`` idle nodes makes every job of at most ``m`` nodes start
  warm; the pool holds the ``m`` that maximises ``hold × (jobs per second that fit in m) − m``,
  i.e. it spends at most ``hold`` idle node-seconds per job it starts warm. Many small jobs and a
  rare large one: the pool holds the small size, not the large one. What arrived within the last
  ``horizon`` is held too (users submit series of alike jobs: a burst is followed at once);
- a **budget**: idle pod-seconds are steered toward ``idle_share`` of busy pod-seconds over
  roughly a day; above it the target and the linger shrink in proportion (a target, not a cap:
  the boots of cold starts are idle the pool cannot avoid);
- a **cap** (``idle_hours_per_day``, optional): the pool holds no more nodes beyond ``min`` than
  could each idle an hour on what the cap leaves of the last 24 hours (kept per hour); once it
  is spent, the target is ``min`` and the linger 0 until old hours roll off;
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
    hold: float = 3600.0
    """Idle node-seconds one warm start is worth: ``m`` nodes are held while jobs that fit in
    ``m`` arrive at least once every ``hold / m`` seconds (one node for a job expected within an
    hour, eight for one within 7.5 minutes)."""
    fast_half_life: float = 600.0
    profile_weight: float = 0.3
    """Weight of the newest week in each hour-of-week bin."""
    linger: float = 600.0
    """Idle nodes beyond the target are suspended after this long (as Slurm's SuspendTime): a
    node a job just left is the likeliest to be asked for again, by the same user's next job."""
    quiet_after: float = 3600.0
    idle_share: float = 0.10
    """Idle pod-seconds are steered toward this share of busy pod-seconds (0: not steered); a
    target, not a cap: boots of powered-down nodes count as idle too."""
    budget_half_life: float = 86400.0
    idle_hours_per_day: float | None = None
    """A cap on the idle pod-hours of the last 24 hours (None: none): the target is at most ``min``
    plus the whole hours left under it; once reached, the target is ``min`` and idle nodes beyond
    it go at once (linger 0)."""


@dataclass(frozen=True)
class Demand:
    """What the model has learned of a nodeset's demand; JSON-serialisable via :func:`to_json`."""

    updated: float = 0.0
    """When the model last learned (Unix time): only for a person reading the state file."""
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
    idle_hours: tuple[tuple[float, float], ...] = ()
    """Idle pod-seconds per hour of the last day: (start of the hour, seconds), for the cap."""


def hour_of_week(t: float) -> int:
    """Bin of a Unix time: Monday 00:00 UTC is 0 (1970-01-01 was a Thursday, bin 72)."""
    return int((t // 3600 + 72) % HOURS_PER_WEEK)


def _decay(value: float, elapsed: float, half_life: float) -> float:
    return value * 0.5 ** (max(0.0, elapsed) / half_life) if half_life > 0 else 0.0


def _advance(d: Demand, now: float, policy: PoolPolicy) -> Demand:
    """Close any hours of the profile that ended since the last update."""
    d = replace(d, updated=now)
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
    recent = (d.recent + ((now, nodes),))[-_SIZES_KEPT:]
    return replace(d, last_arrival=now, hour_nodes=d.hour_nodes + nodes, recent=recent)


def account(d: Demand, *, idle_seconds: float, busy_seconds: float, elapsed: float, now: float,
            policy: PoolPolicy) -> Demand:
    """Add the pod-seconds spent idle and busy over the ``elapsed`` seconds up to ``now`` (for the
    budget and the cap; the cap counts them in the hour of the interval's middle)."""
    middle = now - elapsed / 2
    hour = middle - middle % 3600
    kept = [(h, s) for h, s in d.idle_hours if h > now - 86400 - 3600 and h != hour]
    spent = sum(s for h, s in d.idle_hours if h == hour)
    return replace(d, idle_seconds=_decay(d.idle_seconds, elapsed, policy.budget_half_life) + idle_seconds,
                   busy_seconds=_decay(d.busy_seconds, elapsed, policy.budget_half_life) + busy_seconds,
                   idle_hours=(*kept, (hour, spent + idle_seconds)))


def idle_last_day(d: Demand, now: float) -> float:
    """Idle pod-seconds of the last 24 hours. The hour that began before them and ends inside
    them counts in proportion to its part inside (its seconds taken as spread evenly), so nodes
    idle all day spend exactly 24 hours each, as the ``24 × min`` rule for the cap says."""
    since = now - 86400
    return sum(s * min(1.0, (h + 3600 - since) / 3600) for h, s in d.idle_hours if h + 3600 > since)


def _headroom(d: Demand, now: float, policy: PoolPolicy) -> float:
    """Idle pod-seconds the cap still allows over the last 24 hours (inf: no cap)."""
    if policy.idle_hours_per_day is None:
        return math.inf
    return policy.idle_hours_per_day * 3600 - idle_last_day(d, now)


def capped(d: Demand, now: float, policy: PoolPolicy) -> bool:
    """Whether the idle pod-hours of the last 24 hours have reached ``policy.idle_hours_per_day``."""
    return _headroom(d, now, policy) <= 0


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


def linger(d: Demand, now: float, policy: PoolPolicy) -> float:
    """Seconds an idle node beyond the target stays up: ``policy.linger``, shortened in proportion
    while idle pod-seconds are over budget, 0 while the cap is reached."""
    return 0.0 if capped(d, now, policy) else policy.linger * _budget(d, policy)


def size_rates(d: Demand, now: float, policy: PoolPolicy) -> dict[int, float]:
    """Jobs per second expected of each size (in nodes) at ``now``: the recent submissions,
    exponentially weighted with ``fast_half_life`` (the fast rate split by size), or, when the
    weekly profile expects more, the profile's rate in the mix of the recent sizes."""
    if not d.recent:
        return {}
    gain, rates, mix = math.log(2) / policy.fast_half_life, {}, {}
    for t, n in d.recent:
        rates[n] = rates.get(n, 0.0) + gain * 0.5 ** (max(0.0, now - t) / policy.fast_half_life)
        mix[n] = mix.get(n, 0) + 1
    mean_size = sum(n * c for n, c in mix.items()) / len(d.recent)
    expected_jobs = profile_rate(d, now) / max(mean_size, 1.0)
    if expected_jobs > sum(rates.values()):
        return {n: expected_jobs * c / len(d.recent) for n, c in mix.items()}
    return rates


def worth_holding(rates: dict[int, float], hold: float) -> int:
    """The pool size ``m`` (0 or a job size) that maximises ``hold × (jobs per second of at most
    m nodes) − m``: each idle node-second buys the most warm starts."""
    best_value, best, fits = 0.0, 0, 0.0
    for size in sorted(rates):
        fits += rates[size]
        value = hold * fits - size
        if value > best_value:
            best_value, best = value, size
    return best


def target(d: Demand, now: float, policy: PoolPolicy, *, pending_nodes: int = 0) -> int:
    """Idle nodes to keep powered up at ``now`` (nodes already asked for by pending jobs are added:
    Slurm resumes those anyway)."""
    if policy.max <= 0:
        return 0
    d = _advance(d, now, policy)
    if capped(d, now, policy):
        return policy.min + max(0, pending_nodes)
    quiet = now - d.last_arrival >= policy.quiet_after and profile_rate(d, now) * policy.hold < 1.0
    if quiet:
        want = 0.0
    else:
        # What arrived in the last horizon is the best guess of the next one (users submit
        # series of alike jobs), and the sizes worth holding at the rates expected.
        series = sum(n for t, n in d.recent if now - t < policy.horizon)
        want = max(series, worth_holding(size_rates(d, now, policy), policy.hold))
    want *= _budget(d, policy)
    # Under a cap, no more nodes beyond min than could each stay idle an hour on what is left: a
    # pool that fills on a few pod-minutes of room would be cut again at the next look. (min is
    # kept whatever the cap, and its idle spends the cap like any other.)
    if policy.idle_hours_per_day is not None:
        want = min(want, policy.min + _headroom(d, now, policy) // 3600)
    return max(policy.min, min(policy.max, math.ceil(want - 1e-9))) + max(0, pending_nodes)


def to_json(d: Demand) -> dict:
    return {"updated": d.updated,
            "last_arrival": d.last_arrival if math.isfinite(d.last_arrival) else None,
            "profile": list(d.profile), "profile_seen": list(d.profile_seen), "hour_start": d.hour_start,
            "hour_nodes": d.hour_nodes, "recent": [list(x) for x in d.recent], "idle_seconds": d.idle_seconds,
            "busy_seconds": d.busy_seconds, "idle_hours": [list(x) for x in d.idle_hours]}


def from_json(data: dict) -> Demand:
    """Raises ValueError: not a state file this version wrote (a hand edit, another program's
    file, a truncated copy): the caller learns afresh rather than run on it."""
    try:
        last = data.get("last_arrival")
        profile = tuple(_number(x) for x in data["profile"])
        seen = tuple(data["profile_seen"])
        if len(profile) != HOURS_PER_WEEK or len(seen) != HOURS_PER_WEEK or not all(isinstance(x, bool) for x in seen):
            raise ValueError(f"expected {HOURS_PER_WEEK} hours of profile")
        return Demand(updated=_number(data["updated"]), last_arrival=-math.inf if last is None else _number(last),
                      profile=profile, profile_seen=seen, hour_start=_number(data["hour_start"]),
                      hour_nodes=_number(data["hour_nodes"]),
                      recent=tuple((_number(t), int(_number(n))) for t, n in data["recent"]),
                      idle_seconds=_number(data["idle_seconds"]), busy_seconds=_number(data["busy_seconds"]),
                      idle_hours=tuple((_number(h), _number(s)) for h, s in data.get("idle_hours", ())))  # older: none
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a warm pool state: {type(e).__name__} {e}") from None


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value
