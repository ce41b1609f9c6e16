"""A job whose slurmd crash-loops → the job requeued, through real slurmctld, the bridge's
hooks and follower, the API stand-in and the pod runner with the kubelet's own back-off
(10 s, doubling to 300 s) and a 1.36 kubelet's status during it (the exit for the back-off,
CrashLoopBackOff for ~80 ms before each restart). Without the bridge Slurm waits ResumeTimeout.
Prints sbatch → requeued per run, and first container exit → requeued (the exit as the pod
status dates it: whole seconds).

    PYTHONPATH=. .venv/bin/python benchmarks/crash_loop.py [RUNS]
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from benchmarks._common import summary
from testenv.env import Environment

CRASHING = {"crashing:1": {"entrypoint": ["/bin/sh", "-c", "echo 'slurmd: fatal: bad config' >&2; exit 1"]}}


def one_job(env: Environment) -> tuple[float, float]:
    from lightkube.resources.core_v1 import Pod

    submitted = time.time()
    job = env.slurm.run("sbatch", "--parsable", "-N1", "--wrap", "hostname").stdout.strip()
    first_exit = None
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        for pod in env.kube().list(Pod, namespace="slurm"):
            for c in (pod.status.containerStatuses or []) if pod.status else []:
                ended = (c.state.terminated or (c.lastState.terminated if c.lastState else None))
                if ended and first_exit is None:
                    first_exit = ended.finishedAt.timestamp()
        line = env.slurm.run("scontrol", "-o", "show", "job", job).stdout
        if "Restarts=1" in line:
            requeued = time.time()
            return requeued - submitted, requeued - (first_exit or submitted)
        time.sleep(0.1)
    raise TimeoutError(f"job {job} not requeued in 200 s")


def main(runs: int) -> None:
    from_sbatch, from_exit = [], []
    for run in range(runs):
        with Environment(images=CRASHING, backoff=10.0,
                         nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": "crashing:1"}]) as env:
            env.slurm.wait_for_first_scheduling_pass()
            a, b = one_job(env)
        from_sbatch.append(a)
        from_exit.append(b)
        print(f"run {run + 1}: sbatch -> requeued {a:.2f} s, first exit -> requeued {b:.2f} s", flush=True)
    print(f"crash-looping slurmd, sbatch -> job requeued: {summary(from_sbatch)}")
    print(f"crash-looping slurmd, first exit -> job requeued: {summary(from_exit)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
