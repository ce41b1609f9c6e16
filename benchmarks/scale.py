"""What the hooks and the daemon cost as the cluster grows (issue 14).

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py [--sizes 100,1000,5000] [--cluster 10000]
        [--daemon-resume 1000] [--limit 600]

One real slurmctld 22.05 with ``--cluster`` CLOUD nodes (no slurmd: they stay powered down) and
the API stand-in with no scheduler and no Kubernetes nodes, so pods stay Pending: this measures
the bridge, Slurm's answers and the API calls, not a scheduler or a kubelet.

Per size N (``--sizes``): the real resume hook, exec'd with Slurm's bare environment and the
hostlist ``elastic[1-N]`` as slurmctld would (Slurm's node states are left as they are: no
daemon runs then to judge the pods), until it exits with every pod accepted; then the suspend
hook on the same hostlist (first a suspend of 2 of those nodes, the N-2 other pods standing, and
the bridge's listing of all its pods, which every suspend made before it listed by node label).
For each: seconds, peak RSS (getrusage through /usr/bin/time, children included), API requests
and 429s (the stand-in's audit log); the resume hook's own peak (VmHWM polled, its sinfo child
left out); the hook's Slurm read of those N nodes alone and the text read (in-process, median
of 3). Then a table of how each grows from one size to the next.

Then the daemon on the whole cluster: RSS and CPU over 20 s idle, and while slurmctld resumes
``--daemon-resume`` nodes (``scontrol update state=power_up``: slurmctld runs the resume hook)
until their pods are accepted and then suspends them again; its tick (one look: the Slurm read
of every elastic node + the plan + actions, from its own metrics), the watches it opened; and a
breakdown of one tick in-process (sinfo, JSON parse, facts, plan; on 22.05 the daemon reads the
JSON only when sinfo's summary changed or once a minute: that read is timed too).

The run stops by itself after ``--limit`` seconds (SIGALRM; the environment is torn down).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

from benchmarks._common import pods_gone
from benchmarks.daemon import rss_mib, start_daemon, stop
from bridge import daemon as daemon_module, slurm as slurm_module
from bridge.slurm import CommandSlurm, node_from_json
from testenv.env import BIN, BRIDGE_USER, NAMESPACE, Environment
from testenv.slurm import cluster as cluster_module
from testenv.slurm.config import NodeGroup, Timeouts

# No slurmd is started, so only slurmctld's port (the first) must be free: 10,000 consecutive
# free ports are rarely found on a machine where other tests run (as slurm_read_scale.py).
_free_ports = cluster_module.free_ports
cluster_module.free_ports = lambda count: _free_ports(1)

IDLE_SECONDS = 20


def run_hook(env: Environment, hook: str, hostlist: str) -> tuple[float, int, int]:
    """Exec → exit of one hook with Slurm's bare environment; (seconds, exit code, peak RSS KiB).

    The hook starts under /usr/bin/time, a small process: a child spawned straight from this
    one starts with this process's memory high-water mark (Linux keeps the larger at exec), and
    this one holds whole audit logs. The peak is the hook's or that of a child it waited for
    (sinfo), whichever is larger, as getrusage says it."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        pid = os.posix_spawn("/usr/bin/time", ["time", "-f", "%M", "-o", report.name, str(BIN / hook), hostlist],
                             {"SLURM_CONF": str(env.slurm.conf_path)})
        own = 0.0
        while not (done := os.waitpid(pid, os.WNOHANG))[0]:
            own = max(own, _own_peak_mib(pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        peak = int(report.read().strip().splitlines()[-1])
    HOOK_OWN_PEAK[hook] = own
    return seconds, os.waitstatus_to_exitcode(done[1]), peak


HOOK_OWN_PEAK: dict[str, float] = {}
"""The last hook's own high-water mark (VmHWM, polled every 20 ms), its children left out."""


def _own_peak_mib(time_pid: int) -> float:
    try:
        with open(f"/proc/{time_pid}/task/{time_pid}/children") as children:
            hook = children.read().split()[0]
        with open(f"/proc/{hook}/status") as status:
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    except (OSError, IndexError):
        return 0.0
    return int(match.group(1)) / 1024 if match else 0.0


def tree_peak_mib(command: list[str]) -> float:
    """Peak RSS of one command, measured the same way."""
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], check=True,
                       stdout=subprocess.DEVNULL)
        return int(report.read().strip().splitlines()[-1]) / 1024


def names(count: int) -> list[str]:
    return [f"elastic{i}" for i in range(1, count + 1)]


def api_calls(env: Environment, since: float) -> tuple[int, int]:
    """(requests, 429s) the bridge made since ``since``, from the stand-in's audit log."""
    entries = [e for e in env.audit(user=BRIDGE_USER) if e["time"] >= since]
    return len(entries), sum(1 for e in entries if e["code"] == 429)


def pod_count(env: Environment) -> int:
    from lightkube.resources.core_v1 import Pod

    return sum(1 for _ in env.kube().list(Pod, namespace=NAMESPACE))


def list_every_pod(env: Environment) -> int:
    """What every suspend paid before it listed by node label: all the bridge's pods."""
    from bridge import config as bridge_config, naming
    from bridge.kube import LightkubeApi

    config = bridge_config.load(str(env.bridge_config_path))
    with LightkubeApi(config.kubernetes) as kube:
        return len(kube.list_pods(naming.owner_labels(config.slurm.cluster_name)))


def median_seconds(call: Any, runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def hooks_at(env: Environment, size: int) -> dict[str, float]:
    expression = f"elastic[1-{size}]"
    wanted = names(size)
    read = median_seconds(lambda: CommandSlurm().node_facts(wanted))
    text = ["/usr/bin/scontrol", "-o", "show", "node", expression]  # 22.05's read of these nodes alone
    text_read = median_seconds(lambda: subprocess.run(text, capture_output=True, check=True))
    mark = time.time()
    seconds, code, rss = run_hook(env, "slurm-k8s-resume", expression)
    requests, throttled = api_calls(env, mark)
    own = HOOK_OWN_PEAK["slurm-k8s-resume"]
    assert code == 0, f"resume of {size} exited {code}"
    pods = pod_count(env)
    assert pods == size, f"{pods} pods after resume of {size}"
    few_seconds, few_code, few_rss = run_hook(env, "slurm-k8s-suspend", "elastic[1-2]")
    assert few_code == 0 and pod_count(env) == size - 2, "suspend of 2 nodes"
    list_all = median_seconds(lambda: list_every_pod(env))
    mark = time.time()
    s_seconds, s_code, s_rss = run_hook(env, "slurm-k8s-suspend", expression)
    s_requests, s_throttled = api_calls(env, mark)
    assert s_code == 0, f"suspend of {size} exited {s_code}"
    pods_gone(env, timeout=120)
    row = {"nodes": size, "resume s": seconds, "resume MiB": rss / 1024, "resume own MiB": own, "resume req": requests,
           "resume 429": throttled, "suspend s": s_seconds, "suspend MiB": s_rss / 1024,
           "suspend req": s_requests, "suspend 429": s_throttled, "read s": read,
           "text read s": text_read, "text read MiB": tree_peak_mib(text),
           "suspend 2 s": few_seconds, "suspend 2 MiB": few_rss / 1024, "list all s": list_all}
    print("  " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()), flush=True)
    return row


def _fmt(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_curve(rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
    for before, after in zip(rows, rows[1:]):
        growth = {k: (after[k] / before[k] if before[k] else float("nan")) for k in keys}
        cells = " | ".join(f"×{growth[k]:.1f}" for k in keys[1:])
        print(f"| growth {before['nodes']}→{after['nodes']} | {cells} |")


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def tick(url: str) -> tuple[float, float]:
    """(sum of tick seconds, number of ticks) so far, from the daemon's metrics."""
    return (metric(url, "slurm_k8s_bridge_reconcile_seconds_sum"),
            metric(url, "slurm_k8s_bridge_reconcile_seconds_count"))


def cpu_seconds(pid: int) -> float:
    """CPU of the process and of its children waited for (the sinfo/scontrol it runs)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    return int(match.group(1)) / 1024 if match else 0.0


def daemon_at(env: Environment, url: str, resume: int) -> None:
    started = time.time()
    proc = start_daemon(env)
    tick0, cpu0 = tick(url), cpu_seconds(proc.pid)
    time.sleep(IDLE_SECONDS)
    tick1, cpu1 = tick(url), cpu_seconds(proc.pid)
    looks = tick1[1] - tick0[1]
    print(f"daemon idle {IDLE_SECONDS} s, {len(env.slurm.node_names)} nodes: RSS {rss_mib(proc.pid):.0f} MiB, "
          f"CPU (with its sinfo) {cpu1 - cpu0:.2f} s ({(cpu1 - cpu0) / IDLE_SECONDS * 100:.0f} %), {looks:.0f} looks, "
          f"tick mean {(tick1[0] - tick0[0]) / max(looks, 1):.2f} s", flush=True)
    mark = time.monotonic()
    env.slurm.run("scontrol", "update", f"nodename=elastic[1-{resume}]", "state=power_up")
    deadline = mark + 180
    while pod_count(env) < resume:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pod_count(env)} of {resume} pods after 180 s")
        time.sleep(0.5)
    accepted = time.monotonic() - mark
    env.slurm.run("scontrol", "update", f"nodename=elastic[1-{resume}]", "state=power_down_force")
    pods_gone(env, timeout=180)
    window = time.monotonic() - mark
    tick2, cpu2 = tick(url), cpu_seconds(proc.pid)
    looks = tick2[1] - tick1[1]
    print(f"daemon while slurmctld resumes {resume} nodes (pods accepted in {accepted:.1f} s) and suspends them "
          f"({window:.1f} s in all): peak RSS {peak_rss_mib(proc.pid):.0f} MiB, "
          f"CPU (with its sinfo) {cpu2 - cpu1:.2f} s "
          f"({(cpu2 - cpu1) / window * 100:.0f} %), {looks:.0f} looks, "
          f"tick mean {(tick2[0] - tick1[0]) / max(looks, 1):.2f} s", flush=True)
    watches = [e for e in env.audit(user=BRIDGE_USER) if e["time"] >= started and e["verb"] == "watch"]
    print(f"daemon watches opened: {len(watches)} ({sorted({e['resource'] for e in watches})})", flush=True)
    stop(proc)


def tick_breakdown(env: Environment) -> None:
    """Where one tick's time goes, in-process, as the daemon does it (22.05: sinfo --json)."""
    from bridge import config as bridge_config
    from bridge.reconcile import Memory, plan

    config = bridge_config.load(str(env.bridge_config_path))
    every = names(len(env.slurm.node_names))
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/sinfo", "--json"], capture_output=True, check=True).stdout
    sinfo = time.perf_counter() - start
    start = time.perf_counter()
    json.loads(out)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    records = slurm_module._node_answer(out.decode())["nodes"]
    parse = time.perf_counter() - start
    start = time.perf_counter()
    facts = {f.name: f for f in map(node_from_json, records)}
    convert = time.perf_counter() - start
    read = median_seconds(lambda: CommandSlurm().node_facts(every))
    summary = median_seconds(lambda: subprocess.run(["/usr/bin/sinfo", *slurm_module.SUMMARY],
                                                    capture_output=True, check=True))
    daemons = CommandSlurm(reread=daemon_module.SLURM_REREAD)
    daemons.node_facts(every)
    unchanged = median_seconds(lambda: daemons.node_facts(every))
    planned = median_seconds(lambda: plan(facts, [], [], time.time(), config, Memory()))
    print(f"one tick in-process, {len(every)} nodes: Slurm read {read:.2f} s (sinfo --json {sinfo:.2f} s for "
          f"{len(out) / 1e6:.1f} MB, its node fields decoded {parse:.2f} s (json.loads of all: {whole:.2f} s), "
          f"NodeFacts {convert:.2f} s); the daemon's read while sinfo's summary is unchanged {unchanged:.2f} s "
          f"(the summary {summary:.2f} s); plan {planned:.3f} s; "
          f"sinfo --json peak RSS {tree_peak_mib(['/usr/bin/sinfo', '--json']):.0f} MiB", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="nodes per hook call, comma-separated")
    parser.add_argument("--cluster", type=int, default=10000, help="CLOUD nodes in slurm.conf")
    parser.add_argument("--daemon-resume", type=int, default=1000, help="nodes resumed under the daemon (0: skip)")
    parser.add_argument("--limit", type=int, default=600, help="stop after this many seconds")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if max(sizes + [args.daemon_resume]) > args.cluster:
        parser.error("a size is larger than --cluster")

    def out_of_time(*_: object) -> None:
        raise TimeoutError(f"benchmark stopped after its limit of {args.limit} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.limit)
    port = free_port()
    daemon = {"tick": 5, "orphan_grace": 60, "metrics_address": f"127.0.0.1:{port}"}
    started = time.monotonic()
    with Environment(node_groups=(NodeGroup(prefix="elastic", count=args.cluster, cpus=1, real_memory=500),),
                     kube_nodes=(), scheduler=False,
                     timeouts=Timeouts(suspend_time=600, resume_timeout=600, suspend_timeout=60),
                     bridge={"resume": {"follow": False}, "daemon": daemon}) as env:
        os.environ["SLURM_CONF"] = str(env.slurm.conf_path)
        print(f"{args.cluster} CLOUD nodes up in {time.monotonic() - started:.1f} s; hooks (defaults of "
              "kubernetes.qps/burst), each size:", flush=True)
        rows = [hooks_at(env, size) for size in sizes]
        if rows:
            print_curve(rows)
        print()
        tick_breakdown(env)
        if args.daemon_resume:
            daemon_at(env, f"http://127.0.0.1:{port}/metrics", args.daemon_resume)
    signal.alarm(0)


if __name__ == "__main__":
    main()
