"""What a slurmd pod needs beside its jobs: the RSS of slurmd, munged and each slurmstepd while a
job with two concurrent steps runs (process runtime, the image's own entrypoint), which sizes the
default memory_overhead_mb; and how often munged logs "Unauthorized credential" meanwhile.

    PYTHONPATH=. .venv/bin/python benchmarks/pod_memory.py
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from testenv.env import Environment
from tests import waiting


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _rss_mib(pid: int) -> tuple[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields["Name"].strip(), int(fields.get("VmRSS", "0 kB").split()[0]) / 1024


def main() -> None:
    with Environment() as env:
        env.slurm.wait_for_first_scheduling_pass()
        job = env.slurm.run("sbatch", "--parsable", "-N1", "--wrap",
                            "srun sleep 20 & srun --overlap sleep 20 & wait").stdout.strip()
        waiting.wait_for(lambda: env.slurm.job_state(job) == "RUNNING", timeout=60, what="job running")
        time.sleep(3)  # both steps started
        port = env.slurm.slurmctld_port
        slurmd = next(int(p) for p in subprocess.run(["pgrep", "-f", f"slurmd -D -b -N elastic1 --conf-server 127.0.0.1:{port}"],
                                                     capture_output=True, text=True).stdout.split())
        rows = [_rss_mib(slurmd)] + [_rss_mib(child) for child in _children(slurmd)]
        for name, mib in rows:
            print(f"{name:<12} RSS {mib:5.1f} MiB")
        print(f"total        RSS {sum(m for _, m in rows):5.1f} MiB "
              f"(slurmd, munged and {sum(n == 'slurmstepd' for n, _ in rows)} slurmstepd)")
        waiting.wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job done")
        assert env.dir is not None
        pod_logs = "".join(p.read_text() for p in (env.dir / "runner").glob("**/*.log"))
        print(f"'Unauthorized credential' lines: pod's munged {pod_logs.count('Unauthorized credential')}, "
              f"controller's munged {env.slurm.munged_log.read_text().count('Unauthorized credential')}")


if __name__ == "__main__":
    main()
