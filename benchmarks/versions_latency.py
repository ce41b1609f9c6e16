"""Per Slurm release, side by side: sbatch -N2 → batch script running on powered-down CLOUD
nodes whose slurmd runs in Docker pods of that release, and sbatch → job requeued for a job
whose pods cannot start (an image the engine lacks: ErrImagePull). 22.05 is the host's
slurmctld; 24.11 and 26.05 run slurmctld in a container with the bridge of its image
(testenv/ctld_container.py), as tests/docker/test_versions.py does.

    bash testenv/docker-setup.sh        # once: the images of every release
    PYTHONPATH=. .venv/bin/python benchmarks/versions_latency.py [RUNS] [RELEASE...]
    PYTHONPATH=. .venv/bin/python benchmarks/versions_latency.py --early [RUNS] [RELEASE...]

``--early``: early start's gain on each release (issue 13): sbatch -N2 → batch script running
with ``resume.early_start`` on and off, with slurmctld's power_save_min_interval 10 (a site
batching its resume calls: what early start saves most) and 0 (the README's slurm.conf).

The batch script stamps its start into the job's Comment (`date` first, then scontrol), so the
figure needs no file shared between a pod and the host. Each run waits until the nodes are
powered down again, so every job pays the whole resume; each failing job gets an
environment of its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from benchmarks._common import summary
from testenv import docker as engine
from testenv.env import Environment

STAMP = 'started=$(date +%s.%N); scontrol update JobId="$SLURM_JOB_ID" Comment="$started"'


@contextmanager
def environment(version: str, **kwargs: object) -> Iterator[Environment]:
    host = version == engine.release_of(engine.slurm_version())
    env = Environment(runtime="docker", slurm_version=None if host else version,
                      **kwargs).start()  # type: ignore[arg-type]
    try:
        env.slurm.wait_for_first_scheduling_pass()
        yield env
    finally:
        env.stop()


def field(env: Environment, job: str, name: str) -> str:
    line = env.slurm.run("scontrol", "-o", "show", "job", job).stdout
    return dict(f.split("=", 1) for f in line.split() if "=" in f).get(name, "")


def powered_down(env: Environment) -> bool:
    return all(state.endswith("~") for state in env.slurm.node_states().values())


def sbatch_to_running(version: str, runs: int, **kwargs: object) -> list[float]:
    samples = []
    with environment(version, **kwargs) as env:
        for run in range(runs):
            submitted = time.time()
            job = env.slurm.run("sbatch", "--parsable", "-N2", "--wrap", STAMP).stdout.strip()
            env.slurm.wait_until(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job}")
            samples.append(float(field(env, job, "Comment")) - submitted)
            print(f"{version} run {run + 1}: sbatch -N2 -> batch script running {samples[-1]:.2f} s", flush=True)
            env.slurm.wait_until(lambda: powered_down(env), timeout=60, what="nodes powered down")
    return samples


def requeued_at(env: Environment, job: str) -> float | None:
    """When the bridge's log says it requeued the job (the hooks' clock is this host's)."""
    for record in env.bridge_log_records():
        if record.get("event") == "job requeued" and record.get("job") == int(job):
            return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
    return None


def sbatch_to_requeued(version: str, runs: int) -> list[float]:
    """A fresh environment per run: after a failed resume the bridge holds its cause and a
    cooldown on the nodes, which a second job would meet instead of a fresh resume."""
    samples = []
    nodesets = [{"name": "elastic", "nodes": "elastic[1-4]", "image": "slurm-k8s-bridge/slurmd:missing"}]
    for run in range(runs):
        with environment(version, nodesets=nodesets) as env:
            submitted = time.time()
            job = env.slurm.run("sbatch", "--parsable", "-N2", "--wrap", "hostname").stdout.strip()
            env.slurm.wait_until(lambda: requeued_at(env, job), timeout=60, what=f"job {job} requeued")
            samples.append(requeued_at(env, job) - submitted)  # type: ignore[operator]
            print(f"{version} run {run + 1}: sbatch -N2 -> job requeued {samples[-1]:.2f} s", flush=True)
    return samples


def early_start(runs: int, versions: list[str]) -> None:
    from testenv.slurm import Timeouts

    figures = {}
    for version in versions:
        for interval in (10, 0):
            timeouts = Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2, power_save_min_interval=interval)
            for early in (True, False):
                figures[version, interval, early] = sbatch_to_running(
                    version, runs, timeouts=timeouts, bridge={"resume": {"early_start": early}})
    print()
    for (version, interval, early), samples in figures.items():
        print(f"Slurm {version}, power_save_min_interval={interval}, early start {'on ' if early else 'off'}: "
              f"sbatch -N2 -> batch script running: {summary(samples)}")


def main(runs: int, versions: list[str]) -> None:
    figures: dict[str, tuple[list[float], list[float]]] = {}
    for version in versions:
        figures[version] = (sbatch_to_running(version, runs), sbatch_to_requeued(version, runs))
    print()
    for version, (running, requeued) in figures.items():
        print(f"Slurm {version}: sbatch -N2 -> batch script running: {summary(running)}")
        print(f"Slurm {version}: sbatch -N2 -> job requeued (pods cannot start): {summary(requeued)}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    compare_early = "--early" in arguments
    arguments = [a for a in arguments if a != "--early"]
    count = int(arguments.pop(0)) if arguments and arguments[0].isdigit() else 5
    (early_start if compare_early else main)(count, arguments or list(engine.SLURM_RELEASES))
