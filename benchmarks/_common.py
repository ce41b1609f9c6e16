"""Shared by the benchmark scripts: run a hook as slurmctld does, and summarise samples."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

from testenv.env import BIN, Environment


def run_hook(env: Environment, hook: str, hostlist: str) -> tuple[float, int, int]:
    """Exec → exit of one hook with Slurm's bare environment; (seconds, exit code, peak RSS KiB)."""
    start = time.perf_counter()
    pid = os.posix_spawn(str(BIN / hook), [hook, hostlist], {"SLURM_CONF": str(env.slurm.conf_path)})
    _, status, usage = os.wait4(pid, 0)
    return time.perf_counter() - start, os.waitstatus_to_exitcode(status), usage.ru_maxrss


def python_floor(runs: int, imports: str) -> list[float]:
    """Seconds for the hooks' Python to start and run ``import IMPORTS``, ``runs`` times: what a
    hook costs before it does anything."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(BIN / "python"), "-c", f"import {imports}"], check=True)
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (f"median {statistics.median(ordered):.3f} s, min {ordered[0]:.3f} s, p90 {p90:.3f} s, "
            f"max {ordered[-1]:.3f} s (n={len(ordered)})")


def pods_gone(env: Environment, timeout: float = 60) -> None:
    from lightkube.resources.core_v1 import Pod

    client = env.kube()
    deadline = time.monotonic() + timeout
    while any(True for _ in client.list(Pod, namespace="slurm", labels={"app.kubernetes.io/managed-by": "slurm-k8s-bridge"})):
        if time.monotonic() > deadline:
            raise TimeoutError("pods still there")
        time.sleep(0.1)


REPO = Path(__file__).resolve().parent.parent


def set_prolog(env: Environment, prolog: str) -> None:
    """slurm.conf's PrologSlurmctld: the bridge's (as installed), none, or /bin/true."""
    if prolog == "bridge":
        return
    line = "PrologSlurmctld=/bin/true" if prolog == "true" else ""
    conf = env.slurm.conf_path
    text, count = re.subn(r"^PrologSlurmctld=.*$", line, conf.read_text(), flags=re.M)
    assert count == 1, "no PrologSlurmctld line in slurm.conf"
    conf.write_text(text)
    env.slurm.run("scontrol", "reconfigure")
    shown = env.slurm.run("scontrol", "show", "config").stdout
    assert re.search(r"^PrologSlurmctld\s*=\s*" + ("/bin/true" if prolog == "true" else r"\(null\)"), shown, re.M), \
        "slurmctld did not take the new PrologSlurmctld"


_ALLOCATED = re.compile(r"^\[([0-9T:.-]+)\] sched(?:/backfill)?: (?:Allocate JobId=(\d+) NodeList=(\S+)|"
                        r"_start_job: Started JobId=(\d+) in \S+ on (\S+))")
"""slurmctld's line for a job's allocation: its time, then the job and its nodes (the scheduler's
``Allocate`` or backfill's ``Started``)."""


def allocations(slurmctld_log: Path) -> dict[str, list[float]]:
    """When slurmctld allocated each job its nodes (its log's ``sched: Allocate`` or backfill's
    ``Started`` line, ms resolution), as Unix times; a requeued job has one per allocation."""
    times: dict[str, list[float]] = {}
    for line in slurmctld_log.read_text(errors="replace").splitlines():
        if match := _ALLOCATED.match(line):
            times.setdefault(match[2] or match[4], []).append(datetime.fromisoformat(match[1]).timestamp())  # local time
    return times


_RESPONDING = re.compile(r"^\[([0-9T:.-]+)\] Node (\S+) now responding")


def waited_for_boot(slurmctld_log: Path, started: dict[str, float]) -> set[str]:
    """Of the jobs ``started`` (job ID → when its script ran, Unix time), those that waited for a
    node to come up: one of the nodes of its last allocation registered with slurmctld ("now
    responding") between that allocation and the job's start. That covers a node powered up for
    the job and one already on its way up (the warm pool's); every other job found its nodes up."""
    from bridge import hostlist

    allocation: dict[str, tuple[float, list[str]]] = {}
    registered: dict[str, list[float]] = {}
    for line in slurmctld_log.read_text(errors="replace").splitlines():
        if match := _ALLOCATED.match(line):
            at = datetime.fromisoformat(match[1]).timestamp()  # local time, as slurmctld writes it
            job, nodes = (match[2], match[3]) if match[2] else (match[4], match[5])
            if job in started and at <= started[job] + 0.001:
                allocation[job] = (at, hostlist.expand(nodes))
        elif match := _RESPONDING.match(line):
            registered.setdefault(match[2], []).append(datetime.fromisoformat(match[1]).timestamp())
    return {job for job, (at, nodes) in allocation.items()
            if any(at <= t <= started[job] + 0.001 for node in nodes for t in registered.get(node, ()))}


def allocated_to_start(allocated: list[float], started: float) -> float:
    """Seconds from the job's allocation that led to its start (its last one before it) to the start."""
    return started - max(t for t in allocated if t <= started + 0.001)
