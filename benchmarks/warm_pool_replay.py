"""Replay a window of a job trace against real Slurm and the environment, per warm-pool policy.

    PYTHONPATH=. .venv/bin/python benchmarks/warm_pool_replay.py [--trace nasa|lublin|synthetic]
        [--first 13000] [--count 100] [--speed 60] [--nodes 8] [--policy reactive fixed-2 predictive]
        [--tick 1] [--keep-logs DIR] [--boot S (only simulate, in seconds)]

    nasa (default window): about 8 min for the three policies; synthetic --first 1000: 30 min
    (its jobs queue for 8 nodes and run up to 4 minutes).

Where benchmarks/warm_pool_sim.py models months of a trace, this runs a window of it through
the real thing: slurmctld 22.05, the bridge's hooks and prolog (early start on), the bridge daemon
with the nodeset's ``warm:`` section, the API stand-in, its scheduler and the process runtime.

Scaling, said plainly: times are divided by ``--speed`` (60: one trace hour is one minute here,
and Slurm's SuspendTime of 300 s becomes 5 s); a job of k of the trace's N nodes asks for
round(k × nodes / N) nodes, at least 1, of ``--nodes`` elastic nodes. The warm pool's own
times are divided the same way (horizon, hold, linger, quiet_after); its weekly profile cannot
learn anything in a few minutes, so this replay exercises the burst-following and hold parts of
the model, and the simulator the daily rhythm. Each job's script writes when it started; no job
runs anything but ``sleep``.

Printed per policy: median and p90 of submit → script running and of allocation → script
running, the share of jobs whose allocation → script running is within 0.3 s of ``--static``,
the share on warm nodes (slurmctld did not wait for any of its nodes to power up), and idle
pod-seconds as a share of busy pod-seconds (sampled every 0.5 s from the pods that exist and the
nodes Slurm runs a job on, from the first submission to the last job's end). Then the
simulator's figures for the same window, scaled alike (:func:`simulated`, given the boot this
run measured), and the clairvoyant bound for it: the check that the simulator, whose months-long
figures docs/warm-pool.md reports, models the real daemon and Slurm.

Why from the allocation: submit → allocation is slurmctld's wait for its next scheduling pass
(0–1 s here) or for capacity, the same on a static cluster. What a job pays for being elastic
comes after its allocation (slurmctld's log says when, to the ms). ``--static`` is that time on
nodes already up with no PrologSlurmctld at all: 0.02 s here (benchmarks/prolog_cost.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from pathlib import Path

from benchmarks._common import allocated_to_start, allocations, waited_for_boot
from benchmarks.warm_pool_sim import TRACES, Job, clairvoyant, read_swf, simulate, synthetic
from bridge import warmpool
from testenv.env import BIN, IMAGE, Environment
from testenv.slurm.cluster import SlurmClusterError
from testenv.slurm.config import NodeGroup, Timeouts

FILES = {"nasa": "NASA-iPSC-1993-3.1-cln.swf.gz", "lublin": "lublin_256.swf.gz"}


def scaled(jobs: list[Job], size: int, nodes: int) -> list[Job]:
    """The jobs of a ``size``-node machine on ``nodes`` nodes: k nodes become round(k × nodes /
    size), at least 1."""
    return [Job(j.submit, j.runtime, max(1, min(nodes, round(j.nodes * nodes / size))), j.user) for j in jobs]


def window(trace: str, first: int, count: int) -> tuple[list[Job], int]:
    if trace == "synthetic":
        jobs, size = synthetic(), 64
    else:
        jobs, size, _ = read_swf(TRACES / FILES[trace])
    picked = jobs[first:first + count]
    t0 = picked[0].submit
    return [Job(j.submit - t0, j.runtime, j.nodes) for j in picked], size


def settings(policy: str, nodes: int, speed: float, tick: float) -> dict:
    nodeset = {"name": "elastic", "nodes": f"elastic[1-{nodes}]", "image": IMAGE}
    if policy == "reactive":
        return {"nodesets": [nodeset], "timeouts": Timeouts(suspend_time=max(5, round(300 / speed)),
                                                            resume_timeout=120, suspend_timeout=2)}
    if policy.startswith("fixed-"):
        n = int(policy.split("-", 1)[1])
        # n nodes kept up; the nodes a job leaves beyond them go at SuspendTime (300 s), as the
        # simulator's fixed policy: no idle budget shortening that linger (without these the
        # nodes stayed up the pool's default linger, 600 s here, longer than the whole replay).
        warm = {"min": n, "max": n, "linger": max(5, round(300 / speed)), "idle_share": 0}
    else:
        warm = {"min": 0, "max": nodes, "horizon": max(1.0, 60 / speed), "hold": 3600 / speed,
                "linger": 600 / speed, "quiet_after": 3600 / speed}
    # The pool, not Slurm's SuspendTime, decides which idle nodes stay up (README "Warm pool").
    return {"nodesets": [{**nodeset, "warm": warm}], "bridge": {"daemon": {"tick": tick, "metrics_address": "127.0.0.1:0"}},
            "timeouts": Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2)}


class Sampler(threading.Thread):
    """Pod-seconds and busy node-seconds, every 0.5 s."""

    def __init__(self, env: Environment) -> None:
        super().__init__(daemon=True)
        self.env, self.stop, self.pod_s, self.busy_s = env, threading.Event(), 0.0, 0.0

    def run(self) -> None:
        from lightkube.resources.core_v1 import Pod

        from testenv.env import NAMESPACE

        client = self.env.kube()
        last = time.monotonic()
        while not self.stop.wait(0.5):
            # As the simulator counts: a pod holds its capacity from its creation to its
            # deletion (starting counts as idle), a node is busy while a job runs on it (not while
            # it powers up for one: "alloc#").
            pods = sum(1 for p in client.list(Pod, namespace=NAMESPACE) if not p.metadata.deletionTimestamp)
            busy = sum(1 for s in self.env.slurm.node_states().values()
                       if s.rstrip("*~!%$@^-") in ("alloc", "mix", "comp"))
            now = time.monotonic()
            self.pod_s += pods * (now - last)
            self.busy_s += busy * (now - last)
            last = now


def replay(policy: str, jobs: list[Job], size: int, *, nodes: int, speed: float, static: float, tick: float,
           keep: Path | None = None) -> dict:
    import subprocess

    with Environment(node_groups=(NodeGroup(prefix="elastic", count=nodes, cpus=1, real_memory=500),),
                     **settings(policy, nodes, speed, tick)) as env:
        daemon = None
        if policy != "reactive":
            daemon = subprocess.Popen([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "daemon"],
                                      env={"SLURM_CONF": str(env.slurm.conf_path)}, cwd=env.dir,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            env.slurm.wait_for_first_scheduling_pass()
            if policy.startswith("fixed-"):
                want = int(policy.split("-", 1)[1])
                env.slurm.wait_until(lambda: sum(s == "idle" for s in env.slurm.node_states().values()) >= want,
                                     timeout=60, what="the fixed pool up")
            directory = env.slurm.layout.job_dir
            sampler = Sampler(env)
            sampler.start()
            began = time.time()
            submitted: dict[str, tuple[float, str]] = {}
            for i, (job, want) in enumerate(zip(jobs, (j.nodes for j in scaled(jobs, size, nodes)))):
                delay = began + job.submit / speed - time.time()
                if delay > 0:
                    time.sleep(delay)
                marker = directory / f"started-{i}"
                script = directory / f"job-{i}.sh"
                script.write_text(f"#!/bin/sh\ndate +%s.%N > {marker}\nsleep {job.runtime / speed:.2f}\n")
                at = time.time()
                job_id = env.slurm.run("sbatch", "--parsable", f"-N{want}", str(script)).stdout.strip()
                submitted[job_id] = (at, str(marker))
            def ended(job_id: str) -> bool:
                try:
                    return env.slurm.job_state(job_id) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
                except SlurmClusterError as e:  # gone from slurmctld after MinJobAge (300 s): ended
                    if "Invalid job id" in str(e):
                        return True
                    raise

            env.slurm.wait_until(lambda: all(ended(j) for j in submitted), timeout=900, what="every job ended")
            sampler.stop.set()
            sampler.join()
            ran = {job_id: (at, float(Path(marker).read_text())) for job_id, (at, marker) in submitted.items()
                   if Path(marker).exists()}
            allocated = allocations(env.slurm.slurmctld_log)
            starts = sorted(began_at - at for at, began_at in ran.values())
            since = sorted(allocated_to_start(allocated[job_id], began_at) for job_id, (_, began_at) in ran.items())
            booted = waited_for_boot(env.slurm.slurmctld_log, {job_id: began_at for job_id, (_, began_at) in ran.items()})
            cold = [allocated_to_start(allocated[job_id], ran[job_id][1]) for job_id in booted]
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for log in (env.bridge_log, env.slurm.slurmctld_log):
                    if log.exists():
                        shutil.copy(log, keep / f"{policy}-{log.name}")
                with open(keep / f"{policy}-jobs.tsv", "w") as out:
                    out.write("job\tsubmitted\tallocated\trunning\tallocation_to_running\n")
                    for job_id, (at, began_at) in sorted(ran.items(), key=lambda kv: kv[1][0]):
                        out.write(f"{job_id}\t{at:.3f}\t{max(allocated[job_id]):.3f}\t{began_at:.3f}\t"
                                  f"{allocated_to_start(allocated[job_id], began_at):.3f}\n")
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=30)
    fast = sum(1 for s in since if s <= static + 0.3) / len(since)
    idle = max(0.0, sampler.pod_s - sampler.busy_s)
    line = (f"{policy:>12}: submit -> running median {statistics.median(starts):.2f} s, p90 {p90(starts):.2f} s; "
            f"allocation -> running median {statistics.median(since):.2f} s, p90 {p90(since):.2f} s; "
            f"{fast:.0%} within 0.3 s of static ({static:g} s); {1 - len(booted) / len(ran):.0%} on warm nodes; "
            f"idle/busy pod-time {idle / max(sampler.busy_s, 1e-9):.0%} ({len(starts)} of {len(jobs)} jobs ran)")
    return {"line": line, "cold": cold}


def p90(values: list[float]) -> float:
    return values[int(0.9 * (len(values) - 1))]


EPOCH = 4 * 86400.0
"""The simulated window's Unix start: a Monday 00:00 UTC (any time that is not 0, which the
daemon's model reads as "never started")."""
SCHED_PASS = 1.0
"""Seconds here between slurmctld's scheduling passes, as its log shows them in these replays:
a job is allocated 0.02–2.6 s after its submission (median 0.52 s), on the pass after it came
or after a job ended."""


def simulated(policy: str, jobs: list[Job], size: int, *, nodes: int, speed: float, boot: float, tick: float) -> str:
    """The simulator's figures for the same window, scaled as the replay scales it: the check that
    the simulator's months-long figures (docs/warm-pool.md) rest on a model of the real thing.

    In trace time: a boot of ``boot`` seconds here lasts ``boot × speed``; the daemon's tick lasts
    ``tick × speed``, the daemon sees a job take pool nodes half a tick later on average, and it
    learns demand at its looks (a job that came and went between two is not seen), and
    slurmctld allocates at its scheduling passes (``SCHED_PASS``);
    "within 0.3 s" here is within ``0.3 × speed`` of the trace. The
    pool's times are the trace's own (the replay divides them by ``speed``). The daemon's
    weekly profile starts empty in both, and a fixed pool is up when the first job comes, as the
    replay waits for it."""
    suspend_time = max(5, round(300 / speed)) * speed
    # The rate's and the idle budget's half-lives are not settings: the daemon keeps them in
    # seconds here (600 s, a day), i.e. ``speed`` times longer in the trace's time.
    base = warmpool.PoolPolicy()
    pool_policy = warmpool.PoolPolicy(max=nodes, horizon=max(1.0, 60 / speed) * speed,
                                      fast_half_life=base.fast_half_life * speed,
                                      budget_half_life=base.budget_half_life * speed)
    kind, fixed = ("fixed", int(policy.split("-", 1)[1])) if policy.startswith("fixed-") else (policy, 0)
    result = simulate(scaled(jobs, size, nodes), nodes, kind, boot=boot * speed, suspend_time=suspend_time, tick=tick * speed,
                      epoch=EPOCH, pool_policy=pool_policy, fixed=fixed, refill_lag=tick * speed / 2,
                      learn_at_looks=True, up_at_start=fixed, sched_interval=SCHED_PASS * speed)
    within = sum(1 for e in result["extra"] if e <= 0.3 * speed) / len(result["extra"])
    warm = sum(1 for e in result["extra"] if e <= 0) / len(result["extra"])
    return (f"{policy:>12}: simulated, boot {boot:.2f} s here: {within:.0%} within 0.3 s; {warm:.0%} on warm nodes; "
            f"idle/busy pod-time {result['idle_share']:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", choices=["nasa", "lublin", "synthetic"], default="nasa")
    parser.add_argument("--first", type=int, default=None,
                        help="index of the trace's first job replayed (default: 13000 on nasa, else 0)")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--speed", type=float, default=60.0, help="trace seconds per second here")
    parser.add_argument("--nodes", type=int, default=8, help="elastic nodes the trace's machine is scaled to")
    parser.add_argument("--static", type=float, default=0.02,
                        help="allocation -> running on nodes already up, no PrologSlurmctld (s)")
    parser.add_argument("--policy", nargs="+", default=["reactive", "fixed-2", "predictive"])
    parser.add_argument("--boot", type=float, default=None,
                        help="only simulate the window, with this cold start here (s) instead of the median "
                             "a replay measures: seconds, no Slurm")
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR",
                        help="copy each policy's bridge log and slurmctld log, and its jobs' times, to DIR")
    parser.add_argument("--tick", type=float, default=1.0, help="the daemon's daemon.tick here (s)")
    args = parser.parse_args()

    if args.first is None:
        args.first = 13000 if args.trace == "nasa" else 0
    jobs, size = window(args.trace, args.first, args.count)
    print(f"{args.trace}: jobs {args.first}..{args.first + len(jobs) - 1}, {jobs[-1].submit / 3600:.2f} trace hours "
          f"in {jobs[-1].submit / args.speed:.0f} s (speed {args.speed:g}), {size} nodes -> {args.nodes}", flush=True)
    cold: list[float] = []
    if args.boot is None:
        for policy in args.policy:
            result = replay(policy, jobs, size, nodes=args.nodes, speed=args.speed, static=args.static,
                            tick=args.tick, keep=args.keep_logs)
            print(result["line"], flush=True)
            cold += result["cold"]
    # The allocation -> running of the jobs that waited for a boot, measured above: the boot the
    # simulator is given.
    boot = args.boot if args.boot is not None else statistics.median(cold) if cold else 1.0
    for policy in args.policy:
        print(simulated(policy, jobs, size, nodes=args.nodes, speed=args.speed, boot=boot, tick=args.tick), flush=True)
    bound = clairvoyant(scaled(jobs, size, args.nodes), args.nodes, boot * args.speed)
    print(f"{'clairvoyant':>12}: every job warm at idle/busy pod-time {bound:.0%} "
          f"(the bound for this window at this speed: a cold start of {boot:.2f} s here is {boot * args.speed:.0f} trace s)")


if __name__ == "__main__":
    main()
