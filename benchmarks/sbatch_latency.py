"""sbatch -N2 → batch script running, on powered-down CLOUD nodes whose slurmd runs in pods
(process runtime), through real slurmctld, the bridge's hooks and prolog, the API stand-in,
its scheduler and the pod runner. Each run waits until the nodes are powered down again, so
every job pays the whole resume. Target: median ≤ 2.5 s (Slurm alone: ~2 s here).

    PYTHONPATH=. .venv/bin/python benchmarks/sbatch_latency.py [RUNS]
"""

from __future__ import annotations

import sys
import time

from benchmarks._common import summary
from testenv.env import Environment


def one_job(env: Environment, run: int) -> float:
    marker = env.slurm.layout.job_dir / f"started-{run}"
    script = env.slurm.layout.job_dir / f"job-{run}.sh"
    script.write_text(f"#!/bin/sh\ndate +%s.%N > {marker}\n")
    submitted = time.time()
    job = env.slurm.run("sbatch", "--parsable", "-N2", str(script)).stdout.strip()
    env.slurm.wait_until(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job}")
    return float(marker.read_text()) - submitted


def powered_down(env: Environment) -> bool:
    return all(state.endswith("~") for state in env.slurm.node_states().values())


def main(runs: int) -> None:
    samples = []
    with Environment() as env:
        env.slurm.wait_for_first_scheduling_pass()
        for run in range(runs):
            samples.append(one_job(env, run))
            print(f"run {run + 1}: {samples[-1]:.2f} s", flush=True)
            env.slurm.wait_until(lambda: powered_down(env), timeout=60, what="nodes powered down")
    print(f"sbatch -N2 -> batch script running: {summary(samples)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
