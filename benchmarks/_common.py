"""Shared by the benchmark scripts: run a hook as slurmctld does, and summarise samples."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from testenv.env import BIN, Environment


def run_hook(env: Environment, hook: str, hostlist: str) -> tuple[float, int, int]:
    """Exec → exit of one hook with Slurm's bare environment; (seconds, exit code, peak RSS KiB)."""
    start = time.perf_counter()
    pid = os.posix_spawn(str(BIN / hook), [hook, hostlist], {"SLURM_CONF": str(env.slurm.conf_path)})
    _, status, usage = os.wait4(pid, 0)
    return time.perf_counter() - start, os.waitstatus_to_exitcode(status), usage.ru_maxrss


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
