"""Resume (then suspend) of many nodes in one call → all pods accepted by the API: seconds, the
hook's peak memory, API requests and 429s, for each node count and client setting asked for.

    PYTHONPATH=. .venv/bin/python benchmarks/resume_many.py [NODES ...] [--client qps:burst ...]
        [--seats N] [--queue-length N] [--queue-wait S] [--request-latency S]

NODES default to 1000; ``--client`` defaults to the bridge's defaults and an unthrottled client
(qps 5000, burst 5000). ``--seats`` turns on the stand-in's API Priority and Fairness (none by
default: a healthy server whose only limit is its own speed); ``--request-latency`` makes each
request hold its seat that long, like a real server's storage round trip.

Pods are left unscheduled (no scheduler, no virtual nodes): this measures the bridge and the
API calls, not a scheduler.
"""

from __future__ import annotations

import argparse

from benchmarks._common import pods_gone, run_hook
from bridge.config import KubernetesSettings
from testenv.env import BRIDGE_USER, Environment
from testenv.slurm.config import NodeGroup

_DEFAULTS = KubernetesSettings()
DEFAULT = f"{_DEFAULTS.qps:g}:{_DEFAULTS.burst}"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", nargs="*", type=int, default=[1000])
    parser.add_argument("--client", action="append", metavar="QPS:BURST",
                        help=f"client rate limit(s) to try [default: {DEFAULT} (the bridge's) and 5000:5000]")
    parser.add_argument("--seats", type=int)
    parser.add_argument("--queue-length", type=int, default=50)
    parser.add_argument("--queue-wait", type=float, default=15.0)
    parser.add_argument("--request-latency", type=float, default=0.0)
    return parser.parse_args()


def _server_args(args: argparse.Namespace) -> tuple[str, ...]:
    if not args.seats:
        return ()
    return ("--seats", str(args.seats), "--queue-length", str(args.queue_length),
            "--queue-wait", str(args.queue_wait), "--request-latency", str(args.request_latency))


def _calls(env: Environment) -> tuple[int, int]:
    """Requests the bridge made, and how many were answered 429, since the last look."""
    entries = env.audit(BRIDGE_USER)
    env._testenv_api("DELETE", "/_testenv/audit", None)
    return len(entries), sum(1 for e in entries if e.get("code") == 429)


def measure(count: int, qps: float, burst: int, server: tuple[str, ...]) -> None:
    from lightkube.resources.core_v1 import Pod

    with Environment(node_groups=(NodeGroup(prefix="elastic", count=count, cpus=1, real_memory=500),),
                     kube_nodes=(), scheduler=False, kubeapi_args=server,
                     bridge={"resume": {"follow": False}, "kubernetes": {
                         "qps": qps, "burst": burst,  # and the bridge's own time limits, not the test env's
                         "timeout": _DEFAULTS.timeout, "retry_seconds": _DEFAULTS.retry_seconds}}) as env:
        label = f"{count} nodes, qps {qps:g} burst {burst}"
        _calls(env)
        seconds, code, rss = run_hook(env, "slurm-k8s-resume", f"elastic[1-{count}]")
        pods = len(list(env.kube().list(Pod, namespace="slurm")))
        requests, throttled = _calls(env)
        print(f"resume  {label}: {seconds:6.2f} s, exit {code}, {pods} pods, peak RSS {rss / 1024:.0f} MiB, "
              f"{requests} requests, {throttled} answered 429", flush=True)
        seconds, code, rss = run_hook(env, "slurm-k8s-suspend", f"elastic[1-{count}]")
        requests, throttled = _calls(env)
        print(f"suspend {label}: {seconds:6.2f} s, exit {code}, peak RSS {rss / 1024:.0f} MiB, "
              f"{requests} requests, {throttled} answered 429", flush=True)
        pods_gone(env, timeout=300)


def main() -> None:
    args = _arguments()
    clients = args.client or [DEFAULT, "5000:5000"]
    server = _server_args(args)
    print(f"API stand-in: {'APF ' + ' '.join(server) if server else 'no APF limit'}", flush=True)
    for count in args.nodes:
        for client in clients:
            qps, burst = client.split(":")
            measure(count, float(qps), int(burst), server)


if __name__ == "__main__":
    main()
