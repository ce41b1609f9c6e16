"""Resume hook, exec → all pods accepted by the API (the hook exits after the creates), for
2 nodes, against real slurmctld (scontrol) and the API stand-in. Target: median ≤ 0.4 s.

    PYTHONPATH=. .venv/bin/python benchmarks/hook_latency.py [RUNS]
"""

from __future__ import annotations

import sys

from benchmarks._common import pods_gone, python_floor, run_hook, summary
from testenv.env import Environment


def main(runs: int) -> None:
    floor = python_floor(runs, "bridge.hooks, bridge.resume, bridge.kube, lightkube")
    with Environment(bridge={"resume": {"follow": False}}) as env:
        resume, suspend = [], []
        for _ in range(runs):
            seconds, code, _ = run_hook(env, "slurm-k8s-resume", "elastic[1-2]")
            assert code == 0, f"resume exited {code}"
            resume.append(seconds)
            seconds, code, _ = run_hook(env, "slurm-k8s-suspend", "elastic[1-2]")
            assert code == 0, f"suspend exited {code}"
            suspend.append(seconds)
            pods_gone(env)
    print(f"python start + the resume hook's imports:  {summary(floor)}")
    print(f"resume hook, exec -> 2 pods accepted:      {summary(resume)}")
    print(f"suspend hook, exec -> 2 pods deleted:       {summary(suspend)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
