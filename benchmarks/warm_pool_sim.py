"""Discrete-event replay of a job trace under the warm-pool policies; prints start times and idle cost.

    PYTHONPATH=. .venv/bin/python benchmarks/warm_pool_sim.py [--boot 60] [--trace nasa|lublin|synthetic|all]

What it models: one elastic nodeset of the trace's size, first-come-first-served (a job starts
when enough nodes are not allocated; the queue's order is kept, no backfill). A job takes idle
powered-up nodes first, then nodes already starting, then starts powered-down ones; it runs once
its slowest node is up (``--boot`` seconds after the node was started: pod scheduled, image
present, slurmd registered; 1.2 s on this machine's environment, tens of seconds on real
clusters with large images). Times are the trace's own (no compression: nothing sleeps).

Policies:
- ``reactive``: today's bridge: nodes start when a job needs them and are suspended after
  ``--suspend-time`` idle seconds (Slurm's SuspendTime).
- ``fixed-N``: as reactive, plus N idle nodes always kept up (Slurm 24.05's ``SuspendExcNodes=<nodes>:N``).
- ``predictive``: bridge.warmpool's target (refilled 1 s after nodes are taken, the daemon's
  Slurm read); idle nodes beyond it are suspended after ``warmpool.linger`` (SuspendTime, cut
  while idle pod-hours are over budget). As the daemon does with squeue's StartTime and
  SchedNodes, the free nodes of the queue's first job are started once its expected start is
  within the pool's horizon; Slurm expects it from the time limits of the jobs ahead, here
  ``--limit-factor`` times their runtimes (1: exact, the best case).
- ``clairvoyant`` (a bound, not a policy one could run): knowing every arrival in advance, each
  node a job needs is either one a job freed before (kept idle until then) or one started
  ``--boot`` seconds ahead, whichever idles less; every job starts warm. Its idle share is the
  least any policy pays for all-warm starts (the trace's order and capacity waits as in FCFS
  with no boot delay); the distance from it to a policy is the cost of not knowing the future.

Printed per trace and policy: median and p90 of submit → running minus the wait for capacity
(what elastic adds to a job, plus the static start of ``--static`` s), the share of jobs that
found all their nodes up ("warm"), and idle pod-hours as a share of busy pod-hours.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import math
import os
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from bridge import warmpool

TRACES = Path(os.environ.get("SLURM_K8S_BRIDGE_TRACES", Path(__file__).resolve().parents[2] / "shared" / "traces"))
"""The shared traces beside the checkout (``../shared/traces``); elsewhere, set SLURM_K8S_BRIDGE_TRACES."""


@dataclass(frozen=True)
class Job:
    submit: float
    runtime: float
    nodes: int
    user: int = -1
    """Who submitted it (the trace's user ID; in the synthetic trace, one per series)."""


def read_swf(path: Path) -> tuple[list[Job], int, float]:
    """Jobs, the machine's node count and the trace's Unix start time from an SWF file."""
    jobs, max_nodes, start = [], 0, 0.0
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith(";"):
                key, _, value = line[1:].partition(":")
                if key.strip() == "MaxNodes":
                    max_nodes = int(value)
                elif key.strip() == "UnixStartTime":
                    start = float(value)
                continue
            fields = line.split()
            if len(fields) < 8:
                continue
            submit, runtime = float(fields[1]), float(fields[3])
            nodes = int(fields[4]) if int(fields[4]) > 0 else int(fields[7])
            user = int(fields[11]) if len(fields) > 11 else -1
            if runtime > 0 and nodes > 0:
                jobs.append(Job(submit, runtime, nodes, user))
    return jobs, max_nodes or max(j.nodes for j in jobs), start


def synthetic(*, days: int = 28, nodes: int = 64, seed: int = 7) -> list[Job]:
    """Working-day rhythm (arrivals peak 9-18 h, weekends at a fifth), bursts of 3-20 similar
    jobs from one user, sizes 1-16 nodes, runtimes log-uniform 1 min - 4 h."""
    rng = random.Random(seed)
    jobs, t, series = [], 0.0, 0
    while t < days * 86400:
        hour, weekday = (t % 86400) / 3600, int(t // 86400) % 7
        rate = (1 / 600 if 9 <= hour < 18 else 1 / 5400) * (0.2 if weekday >= 5 else 1.0)
        t += rng.expovariate(rate)
        size = min(nodes, rng.choice([1, 1, 1, 2, 2, 4, 4, 8, 16]))
        for i in range(rng.choice([1, 1, 1, 3, 5, 20])):
            runtime = math.exp(rng.uniform(math.log(60), math.log(4 * 3600)))
            jobs.append(Job(t + i * rng.uniform(5, 60), runtime, size, series))
        series += 1
    jobs.sort(key=lambda j: j.submit)
    return jobs


class Pool:
    """The nodeset's nodes: idle-up ones (with the time they went idle), starting ones (ready
    time), allocated ones; the rest are powered down."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reused = 0
        self.idle: deque[float] = deque()  # idle since, oldest first
        self.starting: list[float] = []  # ready at (heap)
        self.allocated = 0

    @property
    def powered(self) -> int:
        return len(self.idle) + len(self.starting) + self.allocated

    def settle(self, now: float) -> None:
        """Nodes that finished starting become idle."""
        while self.starting and self.starting[0] <= now:
            self.idle.append(heapq.heappop(self.starting))

    def take(self, count: int, now: float, boot: float, freed_after: float = math.inf) -> float:
        """Allocate ``count`` nodes; return when the slowest is up. ``reused``: how many of them
        went idle after ``freed_after`` (a job held them then)."""
        ready = now
        self.reused = 0
        for _ in range(count):
            if self.idle:
                since = self.idle.pop()  # the most recently idle: the others are nearer suspension
                self.reused += since > freed_after
            elif self.starting:
                ready = max(ready, heapq.heappop(self.starting))
            else:
                ready = now + boot
        self.allocated += count
        return ready

    def start(self, count: int, now: float, boot: float) -> None:
        for _ in range(min(count, self.size - self.powered)):
            heapq.heappush(self.starting, now + boot)

    def suspend_idle(self, now: float, *, keep: int, after: float) -> None:
        """Power down idle nodes idle for ``after`` seconds, keeping the ``keep`` most recent."""
        while len(self.idle) > keep and now - self.idle[0] >= after:
            self.idle.popleft()


def simulate(jobs: list[Job], size: int, policy: str, *, boot: float, suspend_time: float, tick: float,
             epoch: float, pool_policy: warmpool.PoolPolicy, fixed: int = 0,
             refill_lag: float = 1.0, limit_factor: float = 1.0, learn_at_looks: bool = False,
             up_at_start: int = 0, sched_interval: float = 0.0) -> dict:
    """With ``learn_at_looks`` the predictive policy learns as the daemon does: at each tick, the
    nodes newly allocated since the last one as one arrival, so a job that came and went between
    two looks is never seen, nor a node that went from one job to the next between them; without,
    it learns every job as it arrives. ``up_at_start``: nodes idle and up when the trace starts."""
    pool = Pool(size)
    pool.idle.extend([jobs[0].submit] * min(size, up_at_start))
    expected_ends: dict[int, tuple[float, int]] = {}  # running job -> (Slurm's expected end, nodes)
    demand = warmpool.Demand()
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(t: float, kind: str, data: object = None) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, data))
        seq += 1

    for j in jobs:
        push(j.submit, "arrive", j)
    push(jobs[0].submit, "tick")
    end_of_trace = max(j.submit for j in jobs)
    queue: deque[Job] = deque()
    extra: list[float] = []  # per job: elastic wait (start - time capacity was there)
    started: list[tuple[Job, float]] = []  # per job, in the same order: (job, when it ran)
    powered_seconds = busy_seconds = 0.0
    last = jobs[0].submit
    tick_idle = tick_busy = 0.0
    day_idle: dict[int, float] = {}  # idle pod-seconds per calendar day (UTC) of the trace

    since_look: list[tuple[int, int]] = []  # (job key, nodes) newly allocated since the last tick
    last_look = -math.inf

    def try_start(now: float) -> None:
        nonlocal busy_seconds, tick_busy
        while queue and size - pool.allocated >= queue[0].nodes:
            job = queue.popleft()
            ready = pool.take(job.nodes, now, boot, freed_after=last_look)
            extra.append(ready - now)
            started.append((job, ready))
            busy_seconds += job.nodes * job.runtime
            tick_busy += job.nodes * job.runtime
            key = seq
            push(ready + job.runtime, "end", (key, job.nodes))
            expected_ends[key] = (ready + job.runtime * limit_factor, job.nodes)
            since_look.append((key, job.nodes - pool.reused))  # a node held at the last look is no arrival

    def schedule(now: float) -> None:
        """Slurm's next scheduling pass: at once, or on the next multiple of ``sched_interval``."""
        if not sched_interval:
            try_start(now)
        else:
            push(math.floor(now / sched_interval + 1) * sched_interval, "sched")

    def planned(now: float) -> int:
        """The queue's first job, waiting for nodes others hold: the free nodes Slurm plans for it,
        when its expected start (running jobs end at their time limit) is within the horizon."""
        if not queue:
            return 0
        free, need = size - pool.allocated, queue[0].nodes
        starts = now if free >= need else None
        for end, nodes in sorted(expected_ends.values()):
            if starts is not None:
                break
            free += nodes
            if free >= need:
                starts = end
        return min(need, size - pool.allocated) if starts is not None and starts - now <= pool_policy.horizon else 0

    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "tick" and now > end_of_trace and not queue and pool.allocated == 0:
            continue
        span = now - last
        powered_seconds += pool.powered * span
        tick_idle += (pool.powered - pool.allocated) * span
        day = int((epoch + now) // 86400)
        day_idle[day] = day_idle.get(day, 0.0) + (pool.powered - pool.allocated) * span
        last = now
        pool.settle(now)
        if kind == "arrive":
            queue.append(data)  # type: ignore[arg-type]
            if policy == "predictive" and not learn_at_looks:
                demand = warmpool.observe(demand, epoch + now, data.nodes, pool_policy)  # type: ignore[union-attr]
            schedule(now)
        elif kind == "end":
            job_seq, nodes = data  # type: ignore[misc]
            del expected_ends[job_seq]
            pool.allocated -= nodes
            pool.idle.extend([now] * nodes)
            schedule(now)
        elif kind == "sched":
            try_start(now)
        else:
            if policy == "predictive" and learn_at_looks:
                arrived = sum(nodes for key, nodes in since_look if key in expected_ends)  # still allocated
                since_look.clear()
                last_look = now
                if arrived:
                    demand = warmpool.observe(demand, epoch + now, arrived, pool_policy)
            if policy == "predictive":
                demand = warmpool.account(demand, idle_seconds=tick_idle, busy_seconds=tick_busy,
                                          elapsed=tick, now=epoch + now, policy=pool_policy)
            tick_idle = tick_busy = 0.0
            push(now + tick, "tick")
        # The daemon refills the pool as soon as its Slurm read shows nodes taken, and shrinks it
        # at its ticks.
        if policy == "predictive":
            want = warmpool.target(demand, epoch + now, pool_policy, pending_nodes=planned(now))
            pool.start(want - len(pool.idle) - len(pool.starting), now + refill_lag, boot)
            if kind == "tick":
                pool.suspend_idle(now, keep=want, after=warmpool.linger(demand, epoch + now, pool_policy))
        else:
            pool.start(fixed - len(pool.idle) - len(pool.starting), now + refill_lag, boot)
            if kind == "tick":
                pool.suspend_idle(now, keep=fixed, after=suspend_time)
    idle_seconds = powered_seconds - busy_seconds
    return {"jobs": len(extra), "extra": extra, "started": started, "idle_share": idle_seconds / busy_seconds,
            "worst_day_idle_hours": max(day_idle.values(), default=0.0) / 3600}


def clairvoyant(jobs: list[Job], size: int, boot: float) -> float:
    """Idle over busy node-seconds when every job starts warm and each arrival is known ahead:
    FCFS with no boot delay; each node a job takes is the most recently freed one (idle since it
    was freed, or ``boot`` if that is less: suspend it and start it again ``boot`` before), and a
    node never used yet costs ``boot``. Most-recent-first is the cheapest assignment: the cost
    ``min(boot, gap)`` is concave in the gap, so pairing the shortest gaps first never loses."""
    free = [math.inf] * size  # heap of negated free times: the most recently freed on top
    running: list[tuple[float, int]] = []  # (end, nodes)
    queue: deque[Job] = deque()
    arrivals = deque(sorted(jobs, key=lambda j: j.submit))
    idle = busy = 0.0
    while arrivals or queue:
        if running and (not arrivals or running[0][0] <= arrivals[0].submit):
            now, nodes = heapq.heappop(running)
            for _ in range(nodes):
                heapq.heappush(free, -now)
        elif arrivals:
            now = arrivals[0].submit
            queue.append(arrivals.popleft())
        else:
            break  # unreachable: a queued job always fits once everything has ended
        while queue and len(free) >= queue[0].nodes:
            job = queue.popleft()
            for _ in range(job.nodes):
                idle += min(boot, now + heapq.heappop(free))
            busy += job.nodes * job.runtime
            heapq.heappush(running, (now + job.runtime, job.nodes))
    return idle / busy


WARM_WITHIN = 0.3
"""A job is warm when elastic adds at most this to its start (the issue's goal: within 0.3 s of static)."""


def warm_share(result: dict) -> float:
    return sum(1 for e in result["extra"] if e <= WARM_WITHIN) / len(result["extra"])


def report(name: str, result: dict, static: float) -> str:
    extra = sorted(result["extra"])
    starts = [static + e for e in extra]
    warm = warm_share(result)
    p90 = starts[int(0.9 * (len(starts) - 1))]
    return (f"  {name:<12} median {statistics.median(starts):7.2f} s  p90 {p90:7.2f} s  "
            f"warm {warm:6.1%}  idle/busy pod-hours {result['idle_share']:6.1%}  "
            f"worst day's idle {result['worst_day_idle_hours']:5.0f} pod-hours")


SWEEP_SUSPEND = (60.0, 120.0, 180.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0)
SWEEP_FIXED = (1, 2, 4, 8, 16, 32, 64)
SWEEP_PREDICTIVE = {"hold": (900.0, 3600.0, 14400.0), "linger": (60.0, 180.0, 600.0)}
GOAL_IDLE = 0.10


def sweep(name: str, jobs: list[Job], size: int, epoch: float, args: argparse.Namespace) -> None:
    """Every setting of each policy family on one trace; then the frontier: for each idle cost,
    the most jobs that found their nodes up. Answers "could any setting reach the goal?"."""
    import itertools

    points: list[tuple[float, float, str]] = []  # (idle share, warm share, setting)

    def run(label: str, policy: str, *, fixed: int = 0, suspend_time: float = args.suspend_time,
            pool_policy: warmpool.PoolPolicy | None = None) -> None:
        pool_policy = pool_policy or warmpool.PoolPolicy(max=size, horizon=args.boot + args.tick, linger=suspend_time)
        result = simulate(jobs, size, policy, boot=args.boot, suspend_time=suspend_time, tick=args.tick,
                          epoch=epoch, pool_policy=pool_policy, fixed=fixed, limit_factor=args.limit_factor)
        warm = warm_share(result)
        points.append((result["idle_share"], warm, label))
        print(f"  {label:<58} warm {warm:6.1%}  idle/busy {result['idle_share']:7.1%}")
        sys.stdout.flush()

    print(f"{name}: {len(jobs)} jobs, {size} nodes; clairvoyant bound: every job warm at idle/busy "
          f"{clairvoyant(jobs, size, args.boot):.1%}")
    for suspend_time in SWEEP_SUSPEND:
        run(f"reactive SuspendTime={suspend_time:g}", "reactive", suspend_time=suspend_time)
    for n in SWEEP_FIXED:
        if n <= size:
            run(f"fixed-{n}", "fixed", fixed=n)
    keys = list(SWEEP_PREDICTIVE)
    for values in itertools.product(*SWEEP_PREDICTIVE.values()):
        settings = dict(zip(keys, values))
        pool_policy = warmpool.PoolPolicy(max=size, horizon=args.boot + args.tick, **settings)
        run("predictive " + " ".join(f"{k}={v:g}" for k, v in settings.items()), "predictive",
            pool_policy=pool_policy)
    frontier, best = [], -1.0
    for idle, warm, label in sorted(points):
        if warm > best:
            frontier.append((idle, warm, label))
            best = warm
    print("  frontier (each point: the least idle cost for that share of warm starts):")
    for idle, warm, label in frontier:
        print(f"    idle/busy {idle:7.1%}  warm {warm:6.1%}  {label}")
    within = [p for p in points if p[0] <= GOAL_IDLE]
    top = max(within, key=lambda p: p[1]) if within else None
    print(f"  best at idle <= {GOAL_IDLE:.0%}: " + (f"warm {top[1]:.1%} ({top[2]})" if top else "no setting"))


FOLLOW_WINDOW = 600.0
"""A job whose user's previous job ended at most this long before its submit "follows" it."""


RUNNING, WAITING, FOLLOWS, UNANNOUNCED = ("user has a job running", "user has a job waiting",
                                          f"user's last job ended <= {FOLLOW_WINDOW:g} s before",
                                          "unannounced (first, or a quiet user)")


def misses(result: dict) -> dict[str, dict[str, tuple[int, int]]]:
    """Where a run misses, and why: (jobs, warm jobs) by job size in powers of two ("1", "2",
    "3-4", "5-8", ...) and by what the submitting user had been doing: a job of theirs running at
    submit, or waiting; their previous job ended within FOLLOW_WINDOW; none of these."""
    jobs_of: dict[int, list[tuple[float, float]]] = {}  # user -> (start, end) of their jobs still relevant
    tables: dict[str, dict[str, tuple[int, int]]] = {"size": {}, "history": {}}
    for i, (job, ready) in enumerate(result["started"]):  # FCFS: in submit order
        submit = job.submit
        mine = [(start, end) for start, end in jobs_of.get(job.user, []) if end >= submit - FOLLOW_WINDOW]
        if any(start <= submit < end for start, end in mine):
            history = RUNNING
        elif any(start > submit for start, _ in mine):
            history = WAITING
        elif mine:
            history = FOLLOWS
        else:
            history = UNANNOUNCED
        jobs_of[job.user] = mine + [(ready, ready + job.runtime)]
        top = 1 << (job.nodes - 1).bit_length()
        size = str(job.nodes) if job.nodes <= 2 else f"{top // 2 + 1}-{top}"
        for table, key in ((tables["size"], size), (tables["history"], history)):
            n, w = table.get(key, (0, 0))
            table[key] = (n + 1, w + (result["extra"][i] <= WARM_WITHIN))
    return tables


def print_misses(result: dict) -> None:
    tables, total = misses(result), len(result["extra"])
    for title, table, order in (("by job size (nodes)", tables["size"], lambda k: int(k.split("-")[0])),
                                ("by the user's recent jobs", tables["history"], lambda k: -tables["history"][k][0])):
        print(f"    {title}:")
        for key in sorted(table, key=order):
            n, w = table[key]
            print(f"      {key:<40} {n / total:6.1%} of jobs, {w / n:6.1%} warm; misses {(n - w) / total:5.1%} of all jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", choices=["nasa", "lublin", "synthetic", "all"], default="all")
    parser.add_argument("--boot", type=float, default=60.0, help="seconds from powering a node up to registered")
    parser.add_argument("--static", type=float, default=0.39, help="submit → running on nodes already up")
    parser.add_argument("--suspend-time", type=float, default=600.0)
    parser.add_argument("--tick", type=float, default=15.0)
    parser.add_argument("--fixed", type=int, nargs="*", default=[4, 16])
    parser.add_argument("--limit-factor", type=float, default=1.0,
                        help="jobs' time limits as a multiple of their runtimes: Slurm expects a waiting "
                             "job's start from the limits of the jobs ahead (1: exact; users' limits are longer)")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of the three policies: sweep SuspendTime, fixed N and the predictive "
                             "model's settings, and print each trace's frontier (most warm starts for each idle cost)")
    parser.add_argument("--hold", type=float, default=warmpool.PoolPolicy.hold,
                        help="the predictive policy's warm.hold (idle node-seconds one warm start is worth)")
    parser.add_argument("--idle-hours-per-day", type=float, default=None,
                        help="the predictive policy's warm.idle_hours_per_day (a hard cap on the idle "
                             "pod-hours of the last 24 hours; default none)")
    parser.add_argument("--misses", action="store_true",
                        help="after the predictive run: its warm share by job size and by the user's recent jobs")
    args = parser.parse_args()
    traces = []
    if args.trace in ("nasa", "all"):
        jobs, size, epoch = read_swf(TRACES / "NASA-iPSC-1993-3.1-cln.swf.gz")
        traces.append(("NASA iPSC/860 1993 (real)", jobs, size, epoch))
    if args.trace in ("lublin", "all"):
        jobs, size, epoch = read_swf(TRACES / "lublin_256.swf.gz")
        traces.append(("Lublin-Feitelson model, 256 nodes", jobs, size, epoch))
    if args.trace in ("synthetic", "all"):
        traces.append(("synthetic: working days + bursts, 64 nodes", synthetic(), 64, 4 * 86400.0))
    print(f"boot {args.boot:g} s, static start {args.static:g} s, SuspendTime {args.suspend_time:g} s, "
          f"tick {args.tick:g} s, time limits {args.limit_factor:g} x runtime")
    for name, jobs, size, epoch in traces:
        if args.sweep:
            sweep(name, jobs, size, epoch, args)
            continue
        busy = sum(j.nodes * j.runtime for j in jobs)
        span = max(j.submit for j in jobs) - min(j.submit for j in jobs)
        print(f"{name}: {len(jobs)} jobs over {span / 86400:.0f} days, utilisation {busy / (span * size):.0%}, "
              f"{busy / 3600 / (span / 86400):.0f} busy pod-hours a day")
        print(f"  {'clairvoyant':<12} every job warm at idle/busy pod-hours {clairvoyant(jobs, size, args.boot):6.1%}")
        pool_policy = warmpool.PoolPolicy(max=size, horizon=args.boot + args.tick, linger=args.suspend_time,
                                          hold=args.hold, idle_hours_per_day=args.idle_hours_per_day)
        runs = [("reactive", "reactive", 0)] + [(f"fixed-{n}", "fixed", n) for n in args.fixed] + \
               [("predictive", "predictive", 0)]
        for label, policy, n in runs:
            t0 = time.perf_counter()
            result = simulate(jobs, size, policy, boot=args.boot, suspend_time=args.suspend_time, tick=args.tick,
                              epoch=epoch, pool_policy=pool_policy, fixed=n, limit_factor=args.limit_factor)
            print(report(label, result, args.static) + f"   ({time.perf_counter() - t0:.1f} s)")
            if args.misses and policy == "predictive":
                print_misses(result)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
