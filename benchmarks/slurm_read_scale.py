"""The hook's Slurm read as the cluster grows: node facts of the nodes of one call, read from
real Slurm 22.05 as a hook reads them (one failed scontrol --json, then the strict text read of
``scontrol --oneliner show node NODES``) against the JSON read it falls back to (sinfo --json,
which cannot be filtered), for clusters of 100 / 1,000 / 10,000 CLOUD nodes. Prints median
seconds of 5 reads, each with a new CommandSlurm as a hook has.

    PYTHONPATH=. .venv/bin/python benchmarks/slurm_read_scale.py [SIZES...]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

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
    print(f"{'cluster':>8} {'asked':>6} {'hook read (s)':>14} {'json read (s)':>14} {'sinfo --json bytes':>19}")
    for size in sizes:
        with SlurmCluster(node_groups=(NodeGroup(count=size),)) as cluster:
            os.environ["SLURM_CONF"] = str(cluster.conf_path)
            out = subprocess.run(["/usr/bin/sinfo", "--json"], capture_output=True, check=True).stdout
            for asked in sorted({2, min(1000, size)}):
                nodes = [f"elastic{i}" for i in range(1, asked + 1)]
                wanted = set(nodes)
                by_json = {n: f for n, f in CommandSlurm()._json_facts().items() if n in wanted}
                assert CommandSlurm().node_facts(nodes) == by_json, "the text read differs from the JSON"
                hook = median_seconds(lambda: CommandSlurm().node_facts(nodes))
                whole = median_seconds(lambda: {n: f for n, f in CommandSlurm()._json_facts().items() if n in wanted})
                print(f"{size:>8} {asked:>6} {hook:>14.3f} {whole:>14.3f} {len(out):>19}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 10000])
