"""Resume of many nodes in one call (default 500) → all pods accepted by the API: seconds and
the hook's peak memory, at the default client rate limit and with it raised.

    PYTHONPATH=. .venv/bin/python benchmarks/resume_many.py [NODES]

Pods are left unscheduled (no scheduler, no virtual nodes): this measures the bridge and the
API calls, not a scheduler.
"""

from __future__ import annotations

import sys

from benchmarks._common import pods_gone, run_hook
from testenv.env import Environment
from testenv.slurm.config import NodeGroup


def main(count: int) -> None:
    settings = [("default (qps 50, burst 200)", {}), ("qps 1000, burst 1000", {"qps": 1000, "burst": 1000})]
    for label, kube in settings:
        with Environment(node_groups=(NodeGroup(prefix="elastic", count=count, cpus=1, real_memory=500),),
                         kube_nodes=(), scheduler=False,
                         bridge={"resume": {"follow": False}, "kubernetes": kube}) as env:
            seconds, code, rss = run_hook(env, "slurm-k8s-resume", f"elastic[1-{count}]")
            assert code == 0, f"resume exited {code}"
            pods = len(list(env.kube().list(__import__("lightkube.resources.core_v1", fromlist=["Pod"]).Pod,
                                            namespace="slurm")))
            assert pods == count, f"{pods} pods, expected {count}"
            print(f"resume of {count} nodes, {label}: {seconds:.2f} s, peak RSS {rss / 1024:.0f} MiB, {pods} pods")
            seconds, code, rss = run_hook(env, "slurm-k8s-suspend", f"elastic[1-{count}]")
            print(f"suspend of {count} nodes, {label}: {seconds:.2f} s, peak RSS {rss / 1024:.0f} MiB")
            pods_gone(env, timeout=120)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
