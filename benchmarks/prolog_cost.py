"""What slurm-k8s-prolog costs a job whose nodes are already up: PrologSlurmctld runs for every
job of the cluster and the job's script waits for it, so on a warm pool's nodes (or a static
node's job) this is all the bridge adds to a start at static speed. Real slurmctld 22.05, 2
elastic nodes powered up through Slurm and registered (the hooks' install, the API stand-in,
the process runtime).

    PYTHONPATH=. .venv/bin/python benchmarks/prolog_cost.py [RUNS]

Prints:
- the Python floor (interpreter start and the prolog's imports);
- the prolog alone, exec → exit as slurmctld runs it (SLURM_JOB_ID, SLURM_JOB_NODELIST), for a
  job on the up elastic nodes and for one on nodes no nodeset names (a static partition's);
- sbatch -N2 on the up nodes, from slurmctld's allocation (its log's ``sched: Allocate`` line,
  ms resolution) to the batch script running, with the bridge's PrologSlurmctld and then with
  none: what the prolog adds to the job. sbatch → allocation is left out: it is slurmctld's
  wait for its next scheduling pass (up to 1 s here, prolog or not).
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks._common import allocated_to_start, allocations, python_floor, set_prolog, summary
from testenv.env import BIN, Environment
from testenv.slurm.config import Timeouts

UP = ("elastic1", "elastic2")


def prolog(env: Environment, nodelist: str) -> float:
    """Exec → exit of one prolog with slurmctld's environment; seconds."""
    environ = {"SLURM_CONF": str(env.slurm.conf_path), "SLURM_JOB_ID": "999999", "SLURM_JOB_NODELIST": nodelist}
    start = time.perf_counter()
    pid = os.posix_spawn(str(BIN / "slurm-k8s-prolog"), ["slurm-k8s-prolog"], environ)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    assert os.waitstatus_to_exitcode(status) == 0, "the prolog failed"
    return seconds


def allocated_to_running(env: Environment, runs: int, tag: str) -> list[float]:
    """sbatch -N2 jobs on the up nodes, one at a time: slurmctld's allocation → script running."""
    directory = env.slurm.layout.job_dir
    started: dict[str, float] = {}
    for run in range(runs):
        marker = directory / f"started-{tag}-{run}"
        job = env.slurm.run("sbatch", "--parsable", "-N2", "--wrap", f"date +%s.%N > {marker}").stdout.strip()
        env.slurm.wait_until(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job}")
        started[job] = float(marker.read_text())
    allocated = allocations(env.slurm.slurmctld_log)
    assert set(started) <= set(allocated), f"no allocation logged for jobs {set(started) - set(allocated)}"
    return [allocated_to_start(allocated[job], started[job]) for job in started]


def main(runs: int) -> None:
    floor = python_floor(runs, "bridge.prolog, bridge.config, bridge.hostlist, bridge.slurm")
    # SuspendTime 300 s: the two nodes stay up between the jobs.
    with Environment(timeouts=Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2)) as env:
        env.slurm.run("scontrol", "update", f"nodename={','.join(UP)}", "state=power_up")
        env.slurm.wait_until(lambda: all(env.slurm.node_states().get(n) == "idle" for n in UP), timeout=60,
                             what="elastic[1-2] powered up and idle")
        up, static = [], []
        for _ in range(runs):
            up.append(prolog(env, "elastic[1-2]"))
            static.append(prolog(env, "login[1-2]"))
        env.slurm.wait_for_first_scheduling_pass()
        with_prolog = allocated_to_running(env, runs, "bridge")
        set_prolog(env, "none")
        without = allocated_to_running(env, runs, "none")
    print(f"python start + the prolog's imports:           {summary(floor)}")
    print(f"prolog, job on 2 elastic nodes already up:     {summary(up)}")
    print(f"prolog, job on 2 nodes of no nodeset:          {summary(static)}")
    print(f"allocation -> script, bridge's PrologSlurmctld: {summary(with_prolog)}")
    print(f"allocation -> script, no PrologSlurmctld:       {summary(without)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
