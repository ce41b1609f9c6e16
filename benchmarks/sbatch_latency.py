"""sbatch -N2 → batch script running, on powered-down CLOUD nodes whose slurmd runs in pods
(process runtime), through real slurmctld, the bridge's hooks and prolog, the API stand-in,
its scheduler and the pod runner. Each run waits until the nodes are powered down again, so
every job pays the whole resume. Target: median ≤ 2.5 s (Slurm alone: ~2 s here).

    PYTHONPATH=. .venv/bin/python benchmarks/sbatch_latency.py [RUNS] [--user alice]

--user: the job is typed by that test user (testenv/site.py) from a directory in her home on
the site filesystem, as a researcher would; without it, root submits from the environment's
job directory. Either way the pods mount the site's homes and get the users' ConfigMap.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import time
from pathlib import Path

from benchmarks._common import summary
from testenv import site
from testenv.env import Environment


def one_job(env: Environment, run: int, user: site.User | None, directory: Path) -> float:
    marker = directory / f"started-{run}"
    script = directory / f"job-{run}.sh"
    script.write_text(f"#!/bin/sh\ndate +%s.%N > {marker}\n")
    argv = ("sbatch", "--parsable", "-N2", str(script))
    submitted = time.time()
    if user is None:
        job = env.slurm.run(*argv).stdout.strip()
    else:
        shutil.chown(script, user.name, user.name)
        result = site.run_as(user, env.slurm, *argv, cwd=directory)
        assert result.returncode == 0, result.stderr
        job = result.stdout.strip()
    env.slurm.wait_until(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job}")
    return float(marker.read_text()) - submitted


def powered_down(env: Environment) -> bool:
    return all(state.endswith("~") for state in env.slurm.node_states().values())


def main(runs: int, user: site.User | None) -> None:
    samples = []
    with Environment() as env:
        directory = env.slurm.layout.job_dir
        if user is not None:
            directory = user.home / f"bench-{secrets.token_hex(4)}"
            directory.mkdir(mode=0o750)
            shutil.chown(directory, user.name, user.name)
        try:
            env.slurm.wait_for_first_scheduling_pass()
            for run in range(runs):
                samples.append(one_job(env, run, user, directory))
                print(f"run {run + 1}: {samples[-1]:.2f} s", flush=True)
                env.slurm.wait_until(lambda: powered_down(env), timeout=60, what="nodes powered down")
        finally:
            if user is not None:
                shutil.rmtree(directory, ignore_errors=True)
    who = f"as {user.name}, from her home" if user else "as root"
    print(f"sbatch -N2 -> batch script running ({who}): {summary(samples)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int, nargs="?", default=7)
    parser.add_argument("--user", choices=[u.name for u in site.USERS], help="submit as this test user")
    args = parser.parse_args()
    main(args.runs, next((u for u in site.USERS if u.name == args.user), None))
