"""Resume hook, exec -> 2 pods accepted, for two checkouts of the bridge run alternately on one
environment, so a loaded machine slows both alike (paired before/after of a change).

    PYTHONPATH=. .venv/bin/python benchmarks/hook_latency_ab.py OLD_CHECKOUT [RUNS]

OLD_CHECKOUT is a directory holding another version's ``bridge/`` (e.g. ``git archive main |
tar -x -C /tmp/old``); its dependencies must be installed in this venv.
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks._common import REPO, pods_gone, summary
from testenv.env import BIN, Environment


def run(env: Environment, checkout: str, hook: str, hostlist: str) -> float:
    code = f"import sys; sys.argv = ['{hook}', '{hostlist}']; from bridge.hooks import {hook.split('-', 2)[2]}_main as m; m()"
    environment = {"SLURM_CONF": str(env.slurm.conf_path), "PYTHONPATH": checkout}
    start = time.perf_counter()
    pid = os.posix_spawn(str(BIN / "python"), [str(BIN / "python"), "-c", code], environment)
    _, status, _ = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"{hook} of {checkout} failed"
    return time.perf_counter() - start


def main(old: str, runs: int) -> None:
    samples: dict[str, list[float]] = {old: [], str(REPO): []}
    with Environment(bridge={"resume": {"follow": False}}) as env:
        for _ in range(runs):
            for checkout in samples:
                samples[checkout].append(run(env, checkout, "slurm-k8s-resume", "elastic[1-2]"))
                run(env, checkout, "slurm-k8s-suspend", "elastic[1-2]")
                pods_gone(env)
    for checkout, seconds in samples.items():
        print(f"resume hook of {checkout}: {summary(seconds)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)
