"""sbatch -N2 → batch script running, on powered-down CLOUD nodes whose slurmd runs in pods
(process runtime), through real slurmctld, the bridge's hooks and prolog, the API stand-in,
its scheduler and the pod runner. Each run waits until the nodes are powered down again, so
every job pays the whole resume. Target: median ≤ 2.5 s (Slurm alone: ~2 s here).

    PYTHONPATH=. .venv/bin/python benchmarks/sbatch_latency.py [RUNS] [--user alice] [--warm]

--user: the job is typed by that test user (testenv/site.py) from a directory in her home on
the site filesystem, as a researcher would; without it, root submits from the environment's
job directory. Either way the pods mount the site's homes and get the users' ConfigMap.

--warm: the bridge daemon runs with ``warm: {min: 2, max: 2}`` (SuspendTime 300 s, so the pool,
not Slurm's power saving, decides which nodes stay up); each run waits until two nodes are warm
(idle, up) and the job lands on them: no resume on the job's path.

--no-early: ``resume.early_start: false``: the pods are created only when the power-save thread
calls ResumeProgram (what the bridge did before early start). --min-interval N: slurmctld's
power_save_min_interval (0 as the README's slurm.conf and Slurm's default): the power-save thread
scans (and calls ResumeProgram) at most every N s; an allocation otherwise brings the next scan
to the next second.

--prolog none|true: slurm.conf's PrologSlurmctld taken out (none) or set to /bin/true (true)
before the first job, instead of slurm-k8s-prolog: with --warm, what a job on nodes already up
costs with no prolog at all (static speed) and with a prolog that does nothing, against the
bridge's. Without --warm, 22.05 then holds a batch job on resumed nodes until its 30 s pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from benchmarks._common import set_prolog, summary
from testenv import site
from bridge import hostlist
from testenv.env import BIN, IMAGE, Environment
from testenv.slurm.config import Timeouts

WARM_NODESETS = [{"name": "elastic", "nodes": "elastic[1-4]", "image": IMAGE, "warm": {"min": 2, "max": 2}}]
DAEMON = {"daemon": {"tick": 1, "metrics_address": "127.0.0.1:0"}}


def one_job(env: Environment, run: int, user: site.User | None, directory: Path) -> tuple[float, str]:
    marker = directory / f"started-{run}"
    script = directory / f"job-{run}.sh"
    script.write_text(f"#!/bin/sh\ndate +%s.%N > {marker}\n")
    argv = ("sbatch", "--parsable", "-N2", str(script))
    submitted = time.time()
    if user is None:
        job = env.slurm.run(*argv).stdout.strip()
    else:
        shutil.chown(script, user.name, user.name)
        result = site.run_as(user, env.slurm, *argv, cwd=directory)
        assert result.returncode == 0, result.stderr
        job = result.stdout.strip()
    env.slurm.wait_until(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job}")
    nodes = env.slurm.run("squeue", "--noheader", "--states=all", f"--jobs={job}", "--Format=NodeList").stdout
    return float(marker.read_text()) - submitted, nodes.strip()


def powered_down(env: Environment) -> bool:
    return all(state.endswith("~") for state in env.slurm.node_states().values())


def warm(env: Environment) -> set[str]:
    """Nodes up and idle (sinfo's plain ``idle``: no ~, #, % suffix)."""
    return {node for node, state in env.slurm.node_states().items() if state == "idle"}


def start_daemon(env: Environment) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "daemon"],
                            env={"SLURM_CONF": str(env.slurm.conf_path)}, cwd=env.dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(runs: int, user: site.User | None, pool: bool, early: bool = True, min_interval: int = 0,
         prolog: str = "bridge") -> None:
    samples = []
    settings: dict = dict(bridge=DAEMON, nodesets=WARM_NODESETS,
                          timeouts=Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2)) if pool else {}
    settings.setdefault("timeouts", Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2))
    settings["timeouts"] = dataclasses.replace(settings["timeouts"], power_save_min_interval=min_interval)
    if not early:
        settings["bridge"] = {**settings.get("bridge", {}), "resume": {"early_start": False}}
    on_pool = 0
    with Environment(**settings) as env:
        set_prolog(env, prolog)
        daemon = start_daemon(env) if pool else None
        directory = env.slurm.layout.job_dir
        if user is not None:
            directory = user.home / f"bench-{secrets.token_hex(4)}"
            directory.mkdir(mode=0o750)
            shutil.chown(directory, user.name, user.name)
        try:
            env.slurm.wait_for_first_scheduling_pass()
            for run in range(runs):
                if pool:
                    env.slurm.wait_until(lambda: len(warm(env)) >= 2, timeout=60, what="two warm nodes")
                before = warm(env)
                took, nodes = one_job(env, run, user, directory)
                samples.append(took)
                on_pool += set(hostlist.expand(nodes)) <= before
                print(f"run {run + 1}: {took:.2f} s on {nodes}", flush=True)
                if not pool:
                    env.slurm.wait_until(lambda: powered_down(env), timeout=60, what="nodes powered down")
        finally:
            if daemon is not None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=30)
            if user is not None:
                shutil.rmtree(directory, ignore_errors=True)
    who = f"as {user.name}, from her home" if user else "as root"
    where = f"warm pool nodes ({on_pool} of {runs} runs on nodes already up)" if pool else "powered-down nodes"
    how = f"early start {'on' if early else 'off'}, power_save_min_interval={min_interval}, PrologSlurmctld {prolog}"
    print(f"sbatch -N2 -> batch script running ({who}, {where}, {how}): {summary(samples)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int, nargs="?", default=7)
    parser.add_argument("--user", choices=[u.name for u in site.USERS], help="submit as this test user")
    parser.add_argument("--warm", action="store_true", help="with the daemon keeping a warm pool of 2 nodes")
    parser.add_argument("--no-early", dest="early", action="store_false", help="resume.early_start: false")
    parser.add_argument("--min-interval", type=int, default=0, help="slurmctld's power_save_min_interval (default 0)")
    parser.add_argument("--prolog", choices=("bridge", "none", "true"), default="bridge",
                        help="PrologSlurmctld: slurm-k8s-prolog (default), none, or /bin/true")
    args = parser.parse_args()
    main(args.runs, next((u for u in site.USERS if u.name == args.user), None), args.warm, args.early, args.min_interval,
         args.prolog)
