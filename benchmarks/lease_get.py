"""What ``daemon.in_cluster: true`` adds to the resume hook: one GET of the daemon's Lease
(bridge.lease.hand_over) through the hook's own client, against the API stand-in over TLS on
loopback; beside it, the heartbeat file's stat it replaces.

    PYTHONPATH=. .venv/bin/python benchmarks/lease_get.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bridge import heartbeat, lease
from bridge.kube import KubernetesSettings, LightkubeApi
from testenv.kubeapi import KubeApiServer


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms (n={len(ordered)})"


def main(count: int) -> None:
    name = lease.lease_name("bench")
    with KubeApiServer() as server, tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "kubeconfig"
        path.write_text(yaml.safe_dump(server.kubeconfig()))
        settings = KubernetesSettings(kubeconfig=str(path), namespace="default")
        with LightkubeApi(settings) as daemon_side, LightkubeApi(settings) as hook_side:
            lease.Elector(daemon_side, name=name, namespace="default", identity="bench", duration=15,
                          follows=True).step()
            first = time.perf_counter()
            assert lease.hand_over(hook_side, name)
            cold = time.perf_counter() - first  # the hook's first call on its client (TLS set-up)
            gets = []
            for _ in range(count):
                start = time.perf_counter()
                assert lease.hand_over(hook_side, name)
                gets.append(time.perf_counter() - start)
        heartbeat.beat(scratch, follows=True)
        stats = []
        for _ in range(count):
            start = time.perf_counter()
            heartbeat.hand_over(scratch, 30.0)
            stats.append(time.perf_counter() - start)
    print(f"lease GET (hand_over), warm client: {_ms(gets)}; first call on a fresh client {cold * 1e3:.1f} ms")
    print(f"heartbeat file (hand_over): {_ms(stats)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
