"""The hook's Slurm read as the cluster grows: node facts of the nodes of one call, read from
real Slurm 22.05 (sinfo --json, which cannot be filtered, plus one failed scontrol --json to
learn the version) against the old text read (scontrol -o show node NODES), for clusters of
100 / 1,000 / 10,000 CLOUD nodes. Prints median seconds of 5 reads.

    PYTHONPATH=. .venv/bin/python benchmarks/slurm_read_scale.py [SIZES...]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bridge import hostlist
from bridge.slurm import CommandSlurm
from testenv.slurm import NodeGroup, SlurmCluster
from testenv.slurm import cluster as cluster_module

# No slurmd is started here, so only slurmctld's port (the first) must be free: 10,000
# consecutive free ports are rarely found on a machine where other tests run.
_free_ports = cluster_module.free_ports
cluster_module.free_ports = lambda count: _free_ports(1)


def median_seconds(call, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(sizes: list[int]) -> None:
    print(f"{'cluster':>8} {'asked':>6} {'json read (s)':>14} {'text read (s)':>14} {'sinfo --json bytes':>19}")
    for size in sizes:
        with SlurmCluster(node_groups=(NodeGroup(count=size),)) as cluster:
            os.environ["SLURM_CONF"] = str(cluster.conf_path)
            out = subprocess.run(["/usr/bin/sinfo", "--json"], capture_output=True, check=True).stdout
            for asked in sorted({2, min(1000, size)}):
                nodes = [f"elastic{i}" for i in range(1, asked + 1)]
                facts = CommandSlurm().node_facts(nodes)
                assert len(facts) == asked, f"read {len(facts)} of {asked} nodes"
                new = median_seconds(lambda: CommandSlurm().node_facts(nodes))
                old = median_seconds(lambda: subprocess.run(
                    ["/usr/bin/scontrol", "-o", "show", "node", hostlist.fold(nodes)], capture_output=True, check=True))
                print(f"{size:>8} {asked:>6} {new:>14.3f} {old:>14.3f} {len(out):>19}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 10000])
