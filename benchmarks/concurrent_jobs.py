"""N concurrently resumed jobs: what following them costs the API server, slurmctld and memory.

    PYTHONPATH=. .venv/bin/python benchmarks/concurrent_jobs.py [--jobs 100] [--spread 30]
        [--modes followers,daemon,none] [--limit 150] [--kube-cpus N]

Per mode, a fresh environment: real slurmctld 22.05 with ``--jobs`` powered-down CLOUD nodes,
the API stand-in, its scheduler and the pod runner with two workers of ``--kube-cpus`` CPUs
each (default: room for every pod; ``--kube-cpus 8``, the environment's default, leaves most
pods Unschedulable, so their jobs' prologs wait, as when pods are slow to start), the bridge's
hooks and PrologSlurmctld as a site installs them. Then ``--jobs`` one-node batch jobs are
submitted evenly over ``--spread`` seconds, each on a node of its own, and measured from the
first submission until every job runs (or ``--limit`` seconds):

* ``followers``: each resume call starts its follower process (``resume.follow``, no daemon);
* ``daemon``: ``slurm-k8s-bridge daemon`` with ``daemon.follow``; the resume hook sees its fresh
  heartbeat and hands following over (``resume.follow`` stays on, as a site leaves it);
* ``none``: neither follows (the baseline: hooks and prologs alone).

Printed per mode: the bridge's API requests per second (the stand-in's audit log); slurmctld
RPCs per second (``sdiag`` delta; all users, the jobs' own sbatch included), its busiest server
thread count and its CPU; the sbatch calls it refused (too busy: tried again); the total RSS of
the bridge's processes (hooks, followers, prologs, daemon: the peak of a 0.5 s sampling; PSS
beside it, shared pages counted once) and how many of each ran at once; the jobs: submit →
running (median/max) and how many were requeued; for the daemon, its RSS and CPU over 15 s idle
before the jobs and while following them. The load average is printed with each row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from benchmarks.daemon import cpu_seconds, rpcs, rss_mib, start_daemon, stop
from testenv.env import BRIDGE_USER, Environment, KubeNode
from testenv.slurm.cluster import SlurmClusterError
from testenv.slurm.config import NodeGroup

T = TypeVar("T")
DAEMON = {"metrics_address": "", "follow": True}
MODES = {
    "followers": {"resume": {"follow": True}},
    "daemon": {"resume": {"follow": True}, "daemon": DAEMON},
    "none": {"resume": {"follow": False}},
}
IDLE_SECONDS = 15
HOOKS = {"slurm-k8s-resume", "slurm-k8s-suspend", "slurm-k8s-resume-fail"}


def kind_of(argv: list[str]) -> str | None:
    """Which of the bridge's processes a command line is: prolog, follower, daemon, hook."""
    names = {os.path.basename(a) for a in argv[:3]}
    if "slurm-k8s-prolog" in names:
        return "prolog"
    if "bridge.follow" in argv[:3]:
        return "follower"
    if "slurm-k8s-bridge" in names and "daemon" in argv:
        return "daemon"
    return "hook" if names & HOOKS else None


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def bridge_processes(env: Environment) -> dict[str, list[int]]:
    """This environment's bridge processes by kind (other environments may run on the machine):
    the daemon and followers name its config; hooks and prologs descend from its slurmctld."""
    found: dict[str, list[int]] = {}
    ctld = env.slurm.pids["slurmctld"]  # or the wrapper that started it: hooks descend from both
    mark = str(env.slurm.state_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        kind = kind_of(argv)
        if not kind:
            continue
        pid = up = int(entry.name)
        for _ in range(4):
            up = parent(up)
            if up in (ctld, 0, 1):
                break
        if up == ctld or any(mark in a for a in argv):
            found.setdefault(kind, []).append(pid)
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS (shared pages, e.g. the interpreter's, split among the processes mapping them)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    rss, pss = (re.search(rf"^{key}:\s+(\d+) kB", text, re.M) for key in ("Rss", "Pss"))
    return (int(rss.group(1)) if rss else 0), (int(pss.group(1)) if pss else 0)


@dataclass
class Sampler:
    """Samples the bridge's processes every 0.5 s in a thread: peak total RSS, peak counts."""

    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_count: dict[str, int] = field(default_factory=dict)
    daemon_peak_kib: int = 0
    env: Environment | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            found = bridge_processes(self.env)
            sizes = {kind: [memory_kib(p) for p in pids] for kind, pids in found.items()}
            self.peak_rss_kib = max(self.peak_rss_kib, sum(m[0] for v in sizes.values() for m in v))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(m[1] for v in sizes.values() for m in v))
            self.daemon_peak_kib = max(self.daemon_peak_kib, sum(m[0] for m in sizes.get("daemon", [])))
            for kind, pids in found.items():
                self.peak_count[kind] = max(self.peak_count.get(kind, 0), len(pids))


def patiently(read: Callable[[], T], seconds: float = 120) -> T:
    """A Slurm read tried again while slurmctld is too busy to answer (the saturation measured)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return read()
        except SlurmClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def slurmctld_pid(env: Environment) -> int:
    """slurmctld itself (the environment's pid may be a wrapper that started it)."""
    conf = str(env.slurm.conf_path)
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == "slurmctld" and conf in argv:
            return int(entry.name)
    raise RuntimeError("slurmctld not found")


def submit(env: Environment, refused: list[str]) -> str:
    """sbatch as a user would: tried again when slurmctld is too busy to answer (each refusal kept)."""
    for _ in range(10):
        done = env.slurm.run("sbatch", "--parsable", "-N1", "--wrap", "sleep 60", check=False, timeout=60)
        if done.returncode == 0:
            return done.stdout.strip()
        refused.append(done.stderr.strip())
        time.sleep(1)
    raise RuntimeError(f"sbatch refused 10 times: {refused[-1]}")


def server_threads(env: Environment) -> int:
    match = re.search(r"Server thread count:\s*(\d+)", env.slurm.run("sdiag").stdout)
    return int(match.group(1)) if match else 0


def jobs_table(env: Environment) -> dict[str, tuple[str, int]]:
    out = env.slurm.run("squeue", "--noheader", "--states=all", "--Format=JobID:12,State:14,RestartCnt:6").stdout
    return {w[0]: (w[1], int(w[2])) for w in (line.split() for line in out.splitlines()) if len(w) == 3}


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_mode(mode: str, jobs: int, spread: float, limit: float, kube_cpus: int) -> dict[str, str]:
    bridge = MODES[mode]
    workers = tuple(KubeNode(f"worker-{i}", {"cpu": str(kube_cpus), "memory": f"{2 * kube_cpus}Gi", "pods": "110"})
                    for i in (1, 2))
    with Environment(node_groups=(NodeGroup(prefix="elastic", count=jobs, cpus=1, real_memory=500),),
                     kube_nodes=workers, bridge=bridge) as env:
        env.slurm.wait_for_first_scheduling_pass()
        row: dict[str, str] = {"mode": mode}
        daemon = start_daemon(env) if mode == "daemon" else None
        if daemon:
            cpu0 = cpu_seconds(daemon.pid)
            time.sleep(IDLE_SECONDS)
            row["daemon idle"] = (f"{rss_mib(daemon.pid):.0f} MiB, "
                                  f"{(cpu_seconds(daemon.pid) - cpu0) / IDLE_SECONDS * 100:.1f} % CPU")
        patiently(lambda: env.slurm.run("sdiag", "-r"))
        started_at: dict[str, float] = {}
        refused: list[str] = []
        ctld = slurmctld_pid(env)
        ctld_cpu0 = cpu_seconds(ctld)
        submitted: dict[str, float] = {}
        busiest = 0
        start = time.time()
        cpu0 = cpu_seconds(daemon.pid) if daemon else 0.0
        with Sampler(env=env) as sampler:
            next_look = 0.0
            for i in range(jobs):
                while time.time() < start + i * spread / jobs:
                    time.sleep(0.05)
                job = submit(env, refused)
                submitted[job] = time.time()
            submit_span = time.time() - start
            while time.time() < start + limit and len(started_at) < jobs:
                if time.time() >= next_look:
                    now = time.time()
                    with contextlib.suppress(SlurmClusterError):  # slurmctld too busy to answer: next look
                        for job, (state, _) in jobs_table(env).items():
                            if job not in started_at and state in ("RUNNING", "COMPLETED", "COMPLETING"):
                                started_at[job] = now
                        busiest = max(busiest, server_threads(env))
                    next_look = now + 1.0
                time.sleep(0.1)
            elapsed = time.time() - start
        api = [e for e in env.audit(user=BRIDGE_USER) if e["time"] >= start]
        calls = patiently(lambda: rpcs(env))
        requeued = sum(1 for _, restarts in patiently(lambda: jobs_table(env)).values() if restarts > 0)
        waits = [started_at[j] - submitted[j] for j in started_at if j in submitted]
        row.update({
            "window s": f"{elapsed:.0f}",
            "API req/s": f"{len(api) / elapsed:.1f}",
            "slurmctld RPC/s": f"{sum(calls.values()) / elapsed:.1f}",
            "node+job reads/s": f"{sum(v for k, v in calls.items() if k in _READS) / elapsed:.1f}",
            "max srv threads": str(busiest),
            "slurmctld CPU": f"{(cpu_seconds(ctld) - ctld_cpu0) / elapsed * 100:.1f} %",
            "sbatch refused": f"{len(refused)} (all {jobs} in {submit_span:.0f} s)",
            "bridge RSS peak": f"{sampler.peak_rss_kib / 1024:.0f} MiB",
            "bridge PSS peak": f"{sampler.peak_pss_kib / 1024:.0f} MiB",
            "peak procs": " ".join(f"{k}:{v}" for k, v in sorted(sampler.peak_count.items())),
            "running": f"{len(started_at)}/{jobs}",
            "submit→run": (f"med {statistics.median(waits):.1f} s, max {max(waits):.1f} s" if waits else "-"),
            "requeued": str(requeued),
            "load": load(),
        })
        if daemon:
            row["daemon following"] = (f"{sampler.daemon_peak_kib / 1024:.0f} MiB peak, "
                                       f"{(cpu_seconds(daemon.pid) - cpu0) / elapsed * 100:.1f} % CPU")
            stop(daemon)
        return row


_READS = {"REQUEST_NODE_INFO", "REQUEST_NODE_INFO_SINGLE", "REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE",
          "REQUEST_PARTITION_INFO", "REQUEST_JOB_USER_INFO"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--spread", type=float, default=30.0, help="seconds over which the jobs are submitted")
    parser.add_argument("--modes", default="followers,daemon,none")
    parser.add_argument("--limit", type=float, default=150.0, help="seconds measured per mode at most")
    parser.add_argument("--kube-cpus", type=int, help="CPUs of each of the two Kubernetes workers [default: "
                        "--jobs, room for every pod; 8, the environment's default, leaves most pods "
                        "Unschedulable and their jobs' prologs waiting]")
    args = parser.parse_args()
    rows = []
    for mode in args.modes.split(","):
        print(f"{mode}: starting (load {load()})", flush=True)
        rows.append(run_mode(mode, args.jobs, args.spread, args.limit, args.kube_cpus or args.jobs))
        print("  " + ", ".join(f"{k}: {v}" for k, v in rows[-1].items()), flush=True)
    columns = [c for c in rows[0] if c != "mode"] + [c for r in rows for c in r if c not in rows[0]]
    columns = list(dict.fromkeys(columns))
    print(f"\n{args.jobs} one-node jobs on powered-down nodes, submitted over {args.spread:g} s, "
          f"2 Kubernetes workers of {args.kube_cpus or args.jobs} CPUs:")
    width = max(len(c) for c in columns)
    print(f"{'':{width}}  " + "  ".join(f"{r['mode']:>28}" for r in rows))
    for column in columns:
        print(f"{column:{width}}  " + "  ".join(f"{r.get(column, '-'):>28}" for r in rows))


if __name__ == "__main__":
    main()
