"""``python -m testenv.demo``: one elastic job, start to finish, with its timeline.

Starts the one-machine environment, submits ``sbatch -N2`` to powered-down CLOUD nodes, and
prints when each step happened: submitted, resume hook called, pods created, nodes registered,
job running, completed, suspend hook called, pods deleted. Stops everything and ends with the
line ``sbatch-to-running: <seconds> s``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from testenv.env import NAMESPACE, Environment
from testenv.slurm import processes

POLL = 0.05


def main() -> int:
    print("starting the environment: munged, slurmctld, Kubernetes API stand-in, scheduler, pod runner ...")
    with Environment() as env:
        env.slurm.wait_for_first_scheduling_pass()
        print(f"  Slurm nodes: {env.slurm.node_states()}")
        timeline = run_job(env)
        dirs = [env.dir, env.slurm.state_dir]
    left = [str(d) for d in dirs if d.exists()] + [str(p) for d in dirs for p in processes.processes_using(d)]
    print()
    for what, seconds in timeline:
        print(f"  {seconds:7.2f} s  {what}")
    running = dict(timeline)["job running (batch script started)"]
    print("environment stopped: " + ("nothing left behind" if not left else f"LEFT BEHIND: {left}"))
    print(f"sbatch-to-running: {running:.2f} s")
    return 0


def run_job(env: Environment) -> list[tuple[str, float]]:
    start_file = env.slurm.layout.job_dir / "demo-started"
    script = f"#!/bin/sh\ndate +%s.%N > {start_file}\nsrun hostname\nsleep 1\n"
    batch = env.slurm.layout.job_dir / "demo.sh"
    batch.write_text(script)
    t0 = time.time()
    job = env.slurm.run("sbatch", "--parsable", "-N2", "--output", str(env.slurm.layout.job_dir / "demo.out"),
                        str(batch)).stdout.strip()
    print(f"submitted batch job {job}: sbatch -N2 (srun hostname; sleep 1)")
    seen: dict[str, float] = {"submitted": 0.0}
    watch = Watch(env, job)
    deadline = time.monotonic() + 120
    while "pods deleted" not in seen and time.monotonic() < deadline:
        watch.look(seen, t0)
        time.sleep(POLL)
    if start_file.exists():
        seen["job running (batch script started)"] = float(start_file.read_text()) - t0
    seen.update(_from_bridge_log(env, t0))
    print((env.slurm.layout.job_dir / "demo.out").read_text().strip().replace("\n", ", ") + " (srun hostname)")
    order = ["submitted", "resume hook called", "pods created", "nodes registered",
             "job running (batch script started)", "job completed", "suspend hook called", "pods deleted"]
    return [(what, seen[what]) for what in order if what in seen]


class Watch:
    def __init__(self, env: Environment, job: str) -> None:
        self.env, self.job, self.client = env, job, env.kube()

    def look(self, seen: dict[str, float], t0: float) -> None:
        from lightkube.resources.core_v1 import Pod

        now = time.time() - t0
        states = self.env.slurm.node_states()
        mine = [states.get(n, "") for n in ("elastic1", "elastic2")]
        if "nodes registered" not in seen and all(s and s[-1] not in "~#%" for s in mine):
            seen["nodes registered"] = now
        if "job completed" not in seen and self.env.slurm.job_state(self.job) == "COMPLETED":
            seen["job completed"] = now
        pods = list(self.client.list(Pod, namespace=NAMESPACE, labels={"slurm-k8s-bridge/job-id": self.job}))
        if pods and "pods seen" not in seen:
            seen["pods seen"] = now
        if "job completed" in seen and "pods seen" in seen and not pods:
            seen["pods deleted"] = now


def _from_bridge_log(env: Environment, t0: float) -> dict[str, float]:
    """The hooks' own log lines say when they ran (JSON, UTC timestamps)."""
    out: dict[str, float] = {}
    for record in env.bridge_log_records():
        stamp = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp() - t0
        if record.get("event") != "hook finished":
            if record.get("event") == "resume done" and "pods created" not in out:
                out["pods created"] = stamp
            continue
        began = stamp - record.get("seconds", 0)
        if record["hook"] == "resume":
            out.setdefault("resume hook called", began)
        elif record["hook"] == "suspend":
            out.setdefault("suspend hook called", began)
    return out


if __name__ == "__main__":
    sys.exit(main())
