"""Replay a window of a job trace against real Slurm and the environment, per warm-pool policy.

    PYTHONPATH=. .venv/bin/python benchmarks/warm_pool_replay.py [--trace nasa|lublin|synthetic]
        [--first 13000] [--count 100] [--speed 60] [--nodes 8] [--policy reactive fixed-2 predictive]

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
and idle pod-seconds as a share of busy pod-seconds (sampled every 0.5 s from the pods that
exist and the nodes Slurm has allocated, from the first submission to the last job's end).

Why from the allocation: submit → allocation is slurmctld's wait for its next scheduling pass
(0–1 s here) or for capacity, the same on a static cluster. What a job pays for being elastic
comes after its allocation (slurmctld's log says when, to the ms). ``--static`` is that time on
nodes already up with no PrologSlurmctld at all: 0.02 s here (benchmarks/prolog_cost.py).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from benchmarks._common import allocated_to_start, allocations
from benchmarks.warm_pool_sim import TRACES, Job, read_swf, synthetic
from testenv.env import BIN, IMAGE, Environment
from testenv.slurm.config import NodeGroup, Timeouts

FILES = {"nasa": "NASA-iPSC-1993-3.1-cln.swf.gz", "lublin": "lublin_256.swf.gz"}


def window(trace: str, first: int, count: int) -> tuple[list[Job], int]:
    if trace == "synthetic":
        jobs, size = synthetic(), 64
    else:
        jobs, size, _ = read_swf(TRACES / FILES[trace])
    picked = jobs[first:first + count]
    t0 = picked[0].submit
    return [Job(j.submit - t0, j.runtime, j.nodes) for j in picked], size


def settings(policy: str, nodes: int, speed: float) -> dict:
    nodeset = {"name": "elastic", "nodes": f"elastic[1-{nodes}]", "image": IMAGE}
    if policy == "reactive":
        return {"nodesets": [nodeset], "timeouts": Timeouts(suspend_time=max(5, round(300 / speed)),
                                                            resume_timeout=120, suspend_timeout=2)}
    if policy.startswith("fixed-"):
        n = int(policy.split("-", 1)[1])
        warm = {"min": n, "max": n}
    else:
        warm = {"min": 0, "max": nodes, "horizon": max(1.0, 60 / speed), "hold": 3600 / speed,
                "linger": 600 / speed, "quiet_after": 3600 / speed}
    # The pool, not Slurm's SuspendTime, decides which idle nodes stay up (README "Warm pool").
    return {"nodesets": [{**nodeset, "warm": warm}], "bridge": {"daemon": {"tick": 1, "metrics_address": "127.0.0.1:0"}},
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
            pods = sum(1 for p in client.list(Pod, namespace=NAMESPACE) if p.status and p.status.phase == "Running")
            busy = sum(1 for s in self.env.slurm.node_states().values() if s.rstrip("*~#!%$@^-") in ("alloc", "mix", "comp"))
            now = time.monotonic()
            self.pod_s += pods * (now - last)
            self.busy_s += busy * (now - last)
            last = now


def replay(policy: str, jobs: list[Job], size: int, *, nodes: int, speed: float, static: float) -> str:
    import subprocess

    with Environment(node_groups=(NodeGroup(prefix="elastic", count=nodes, cpus=1, real_memory=500),),
                     **settings(policy, nodes, speed)) as env:
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
            for i, job in enumerate(jobs):
                delay = began + job.submit / speed - time.time()
                if delay > 0:
                    time.sleep(delay)
                marker = directory / f"started-{i}"
                script = directory / f"job-{i}.sh"
                script.write_text(f"#!/bin/sh\ndate +%s.%N > {marker}\nsleep {job.runtime / speed:.2f}\n")
                want = max(1, min(nodes, round(job.nodes * nodes / size)))
                at = time.time()
                job_id = env.slurm.run("sbatch", "--parsable", f"-N{want}", str(script)).stdout.strip()
                submitted[job_id] = (at, str(marker))
            env.slurm.wait_until(lambda: all(env.slurm.job_state(j) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
                                             for j in submitted), timeout=600, what="every job ended")
            sampler.stop.set()
            sampler.join()
            from pathlib import Path

            ran = {job_id: (at, float(Path(marker).read_text())) for job_id, (at, marker) in submitted.items()
                   if Path(marker).exists()}
            allocated = allocations(env.slurm.slurmctld_log)
            starts = sorted(began_at - at for at, began_at in ran.values())
            since = sorted(allocated_to_start(allocated[job_id], began_at) for job_id, (_, began_at) in ran.items())
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=30)
    fast = sum(1 for s in since if s <= static + 0.3) / len(since)
    idle = max(0.0, sampler.pod_s - sampler.busy_s)

    def p90(values: list[float]) -> float:
        return values[int(0.9 * (len(values) - 1))]

    return (f"{policy:>12}: submit -> running median {statistics.median(starts):.2f} s, p90 {p90(starts):.2f} s; "
            f"allocation -> running median {statistics.median(since):.2f} s, p90 {p90(since):.2f} s; "
            f"{fast:.0%} within 0.3 s of static ({static:g} s); "
            f"idle/busy pod-time {idle / max(sampler.busy_s, 1e-9):.0%} ({len(starts)} of {len(jobs)} jobs ran)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", choices=["nasa", "lublin", "synthetic"], default="nasa")
    parser.add_argument("--first", type=int, default=13000, help="index of the trace's first job replayed")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--speed", type=float, default=60.0, help="trace seconds per second here")
    parser.add_argument("--nodes", type=int, default=8, help="elastic nodes the trace's machine is scaled to")
    parser.add_argument("--static", type=float, default=0.02,
                        help="allocation -> running on nodes already up, no PrologSlurmctld (s)")
    parser.add_argument("--policy", nargs="+", default=["reactive", "fixed-2", "predictive"])
    args = parser.parse_args()
    jobs, size = window(args.trace, args.first if args.trace != "synthetic" else 0, args.count)
    print(f"{args.trace}: jobs {args.first}..{args.first + len(jobs) - 1}, {jobs[-1].submit / 3600:.2f} trace hours "
          f"in {jobs[-1].submit / args.speed:.0f} s (speed {args.speed:g}), {size} nodes -> {args.nodes}", flush=True)
    for policy in args.policy:
        print(replay(policy, jobs, size, nodes=args.nodes, speed=args.speed, static=args.static), flush=True)


if __name__ == "__main__":
    main()
