"""Capture what the host's real Slurm 22.05 prints for ``scontrol --oneliner show node``, beside
its ``sinfo --json`` of the same moment, as the samples the 22.05 text read is tested on.

    .venv/bin/python -m testenv.capture_text_sample     # writes tests/samples/*-22.05-text.*

slurmctld runs with six CLOUD nodes and hooks that start slurmd on this host
(testenv/slurm/hosthooks.py). Before the capture:

- elastic1 and elastic2 run a job (registered: ``Arch=``, ``OS=``, ``Version=`` appear;
  ALLOCATED), elastic2 with the features ``a100,ib``;
- elastic3 has the feature ``fast CPUTot=64 RealMemory=99999`` (Key= text in a value);
- elastic4 is DOWN with a reason that holds `` Reason=`` and `` Comment=`` text;
- elastic5 is DRAINED with a plain reason;
- elastic6 has a node comment ``hello Gres=gpu:9`` (printed after every other key).

Nothing of the host shows in the files beyond loopback addresses, the names given here, the
kernel release and the time of capture.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from testenv.slurm import NodeGroup, SlurmCluster
from testenv.slurm.hosthooks import write_host_hooks

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "samples"
TEXT = SAMPLES / "scontrol-show-node-22.05-text.txt"
JSON = SAMPLES / "sinfo-22.05-text.json"


def main() -> None:
    with tempfile.TemporaryDirectory() as hooks_dir, SlurmCluster(
            node_groups=(NodeGroup(prefix="elastic", count=6, cpus=1, real_memory=500),),
            hooks=write_host_hooks(Path(hooks_dir))) as cluster:
        def scontrol(*args: str) -> str:
            return cluster.run("scontrol", *args).stdout

        scontrol("update", "NodeName=elastic2", "AvailableFeatures=a100,ib", "ActiveFeatures=a100,ib")
        scontrol("update", "NodeName=elastic3", "AvailableFeatures=fast CPUTot=64 RealMemory=99999",
                 "ActiveFeatures=fast CPUTot=64 RealMemory=99999")
        scontrol("update", "NodeName=elastic4", "State=DOWN",
                 "Reason=slurm-k8s-bridge: pod failed: Reason=x Comment=y [a@b]")
        scontrol("update", "NodeName=elastic5", "State=DRAIN", "Reason=maintenance")
        scontrol("update", "NodeName=elastic6", "Comment=hello Gres=gpu:9")
        job = cluster.run("sbatch", "--parsable", "-N2", "-w", "elastic[1-2]", "--wrap", "sleep 300").stdout.strip()
        deadline = time.monotonic() + 60
        while "RUNNING" not in cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout:
            if time.monotonic() > deadline:
                raise SystemExit("capture_text_sample: the job did not start in 60 s")
            time.sleep(0.5)
        text = scontrol("--oneliner", "show", "node", "elastic[1-6]")
        data = json.loads(cluster.run("sinfo", "--json").stdout)
        cluster.run("scancel", job)
    TEXT.write_text(text)
    JSON.write_text(json.dumps({"nodes": data["nodes"], "meta": data["meta"]}, indent=1) + "\n")
    print(f"wrote {TEXT} and {JSON}")


if __name__ == "__main__":
    main()
