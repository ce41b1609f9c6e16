"""``slurm-k8s-bridge daemon``: what it costs and how fast it repairs.

    PYTHONPATH=. .venv/bin/python benchmarks/daemon.py [JOBS]

Prints, each against the one-machine environment (real slurmctld, the API stand-in):
* the daemon's RSS and CPU over 30 s of idle, and its API requests / slurmctld RPCs meanwhile;
* pod deleted behind Slurm's back → job requeued (3 samples);
* orphan pod → deleted (grace 5 s);
* JOBS (default 8) single-node jobs submitted 0.5 s apart: API requests and slurmctld RPCs during
  the first 20 s, with the hooks' follower processes vs the daemon following them
  (``following`` as the second argument runs only this part, ``repairs`` all but this part).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import summary
from testenv.env import BIN, BRIDGE_USER, NAMESPACE, Environment
from testenv.slurm.config import NodeGroup

DAEMON = {"tick": 5, "orphan_grace": 5, "metrics_address": ""}


def start_daemon(env: Environment) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "daemon"],
                            env={"SLURM_CONF": str(env.slurm.conf_path)}, cwd=env.dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(r.get("event") == "daemon started" for r in env.bridge_log_records()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("daemon did not start")
        time.sleep(0.1)
    time.sleep(2)  # its first listing and look
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks of 10 ms


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def rpcs(env: Environment) -> dict[str, int]:
    out = env.slurm.run("sdiag").stdout.split("Remote Procedure Call statistics by message type")[1]
    out = out.split("Remote Procedure Call statistics by user")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+)\s+\(\s*\d+\) count:(\d+)", out)}


def requests(env: Environment, since: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in env.audit(user=BRIDGE_USER):
        if entry["time"] >= since:
            counts[entry["verb"]] = counts.get(entry["verb"], 0) + 1
    return counts


def idle(env: Environment) -> None:
    proc = start_daemon(env)
    env.slurm.run("sdiag", "-r")
    start, cpu0 = time.time(), cpu_seconds(proc.pid)
    time.sleep(30)
    cpu = cpu_seconds(proc.pid) - cpu0
    print(f"daemon idle 30 s: RSS {rss_mib(proc.pid):.0f} MiB, CPU {cpu:.2f} s ({cpu / 30 * 100:.1f} %), "
          f"API requests {requests(env, start) or 0}, slurmctld RPCs {rpcs(env)} (tick {DAEMON['tick']} s)")
    stop(proc)


def repairs(env: Environment) -> None:
    from lightkube.resources.core_v1 import Pod

    proc = start_daemon(env)
    client = env.kube()
    samples = []
    for _ in range(3):
        job = env.slurm.run("sbatch", "--parsable", "-N1", "--wrap", "sleep 300").stdout.strip()
        _until(lambda: env.slurm.job_state(job) == "RUNNING", 60)
        pod = next(p for p in client.list(Pod, namespace=NAMESPACE) if p.status.phase == "Running")
        deleted = time.monotonic()
        client.delete(Pod, pod.metadata.name, grace_period=0)
        _until(lambda: env.slurm.job_state(job) == "PENDING", 60)
        samples.append(time.monotonic() - deleted)
        env.slurm.run("scancel", job)
        _until(lambda: not list(client.list(Pod, namespace=NAMESPACE)), 60)
    print(f"pod deleted behind Slurm's back → job requeued: {summary(samples)}")
    node = "elastic4"
    _until(lambda: "POWERED_DOWN" in env.slurm.run("scontrol", "-o", "show", "node", node).stdout, 60)
    client.create(Pod.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"testenv-{node}", "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "slurm-k8s-bridge", "slurm-k8s-bridge/cluster": "testenv"},
        "annotations": {"slurm-k8s-bridge/node-name": node}},
        "spec": {"containers": [{"name": "c", "image": "sleeper:1"}], "terminationGracePeriodSeconds": 1}}))
    planted = time.monotonic()
    _until(lambda: not list(client.list(Pod, namespace=NAMESPACE)), 60)
    print(f"orphan pod → deleted: {time.monotonic() - planted:.1f} s (grace {DAEMON['orphan_grace']} s, "
          f"tick {DAEMON['tick']} s)")
    stop(proc)


def following(count: int) -> None:
    modes = [("hooks' followers", {"resume": {"follow": True}}, False),
             ("daemon (daemon.follow)", {"resume": {"follow": False}, "daemon": {**DAEMON, "follow": True}}, True)]
    for label, bridge, daemon in modes:
        with Environment(node_groups=(NodeGroup(prefix="elastic", count=count, cpus=1, real_memory=500),),
                         bridge={**bridge, "daemon": {**DAEMON, **bridge.get("daemon", {})}}) as env:
            env.slurm.wait_for_first_scheduling_pass()
            proc = start_daemon(env) if daemon else None
            env.slurm.run("sdiag", "-r")
            start = time.time()
            for _ in range(count):  # staggered, as jobs arrive: each resume call gets a job or two
                env.slurm.run("sbatch", "-N1", "--wrap", "sleep 5")
                time.sleep(0.5)
            time.sleep(20)
            api = requests(env, start)
            calls = rpcs(env)
            reads = {k: v for k, v in calls.items() if "INFO" in k}
            print(f"{count} jobs submitted 0.5 s apart, first 20 s, {label}: API requests {api} "
                  f"({sum(v for k, v in api.items() if k in ('list', 'get', 'watch')) / 20:.1f} reads/s), "
                  f"slurmctld info RPCs {reads} ({sum(reads.values()) / 20:.1f}/s, sbatch and hooks included)")
            if proc:
                stop(proc)


def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


def main(count: int, only: str | None = None) -> None:
    if only == "following":
        return following(count)
    with Environment(bridge={"daemon": DAEMON}, images={"sleeper:1": {"entrypoint": ["/bin/sleep", "600"]}}) as env:
        env.slurm.wait_for_first_scheduling_pass()
        idle(env)
        repairs(env)
    if only != "repairs":
        following(count)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8, sys.argv[2] if len(sys.argv) > 2 else None)
