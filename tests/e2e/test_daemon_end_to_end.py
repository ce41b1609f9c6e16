"""Issue 12, end to end: ``slurm-k8s-bridge daemon`` beside real Slurm and the Kubernetes
stand-in, run as a process the way systemd runs it, with the daemon's own RBAC (rbac/daemon/).

Figures (printed with -s): pod deleted behind Slurm's back → job requeued; orphan pod → deleted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from lightkube.resources.core_v1 import Node, Pod

from tests.e2e.conftest import bridge_pods, job_field, job_output, node_field, sbatch, wait_for
from bridge import hostlist, naming
from testenv.env import BIN, IMAGE, NAMESPACE, Environment
from testenv.slurm.config import Timeouts

# Grace periods short enough for a test, long enough to be seen waiting.
DAEMON = {"daemon": {"tick": 1, "orphan_grace": 3, "stuck_grace": 10, "group_grace": 5,
                     "metrics_address": "127.0.0.1:0"}}
# Each test starts the daemon it means to watch (its settings, its restarts): an environment's
# own daemon (--follow-mode=daemon) would be a second one acting on the same nodes.
pytestmark = pytest.mark.follow_mode("hooks")
SLEEPER = {"sleeper:1": {"entrypoint": ["/bin/sleep", "600"]}}


class Daemon:
    """The daemon process of one environment."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *args: str) -> Daemon:
        self.proc = subprocess.Popen([str(BIN / "slurm-k8s-bridge"), "--config", str(self.env.bridge_config_path),
                                      "daemon", *args], env={"SLURM_CONF": str(self.env.slurm.conf_path)},
                                     cwd=self.env.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = len(self.records("daemon started"))
        wait_for(lambda: len(self.records("daemon started")) > started or self.proc.poll() is not None,
                 timeout=20, what="daemon started")
        assert self.proc.poll() is None, self.proc.stderr.read()
        return self

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def records(self, event: str | None = None) -> list[dict]:
        return [r for r in self.env.bridge_log_records()
                if r.get("hook") == "daemon" and (event is None or r.get("event") == event)]

    def looks(self) -> int:
        """Looks this daemon process has completed: the reconcile histogram's count on its /metrics."""
        import urllib.request

        assert self.proc is not None
        address = [r for r in self.records("metrics served") if r.get("pid") == self.proc.pid][-1]["address"]
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()  # loopback only
        found = re.search(r"^slurm_k8s_bridge_reconcile_seconds_count (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else 0

    def wait_looks(self, count: int) -> None:
        """Until the daemon has looked ``count`` more times (at its 1 s tick)."""
        start = self.looks()
        wait_for(lambda: self.looks() >= start + count, timeout=30, what=f"{count} more looks of the daemon")

    def actions(self, action: str, node: str | None = None) -> list[dict]:
        """What the daemon did (not what a dry run said it would do)."""
        return [r for r in self.records("reconcile")
                if r["action"] == action and node in (None, r.get("node")) and not r["dry_run"]]


@pytest.fixture
def daemon_env(make_env) -> Iterator[tuple[Environment, Daemon]]:
    env = make_env(bridge=DAEMON, images=SLEEPER)
    daemon = Daemon(env).start()
    yield env, daemon
    assert daemon.stop() == 0, daemon.proc.stderr.read() if daemon.proc else ""


def _running_job(env: Environment, nodes: int = 1) -> str:
    job = sbatch(env, f"-N{nodes}", "--wrap", "sleep 300")
    wait_for(lambda: env.slurm.job_state(job) == "RUNNING", timeout=60, what="job running")
    return job


def _planted_pod(env: Environment, name: str, node: str, *, annotated: bool) -> None:
    """A pod with the bridge's labels for ``node``, as if left behind; without the annotation it
    is a look-alike the bridge did not make."""
    meta = {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "slurm-k8s-bridge", "slurm-k8s-bridge/cluster": "testenv",
                       "slurm-k8s-bridge/node": node}}
    if annotated:
        meta["annotations"] = {"slurm-k8s-bridge/node-name": node}
    env.kube().create(Pod.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "containers": [{"name": "c", "image": "sleeper:1"}], "terminationGracePeriodSeconds": 1}}))
    wait_for(lambda: env.kube().get(Pod, name).status.phase == "Running", timeout=30, what=f"{name} running")


def test_pod_deleted_behind_slurms_back_requeues_the_job_in_seconds(daemon_env):
    env, daemon = daemon_env
    job = _running_job(env)
    node = next(iter(bridge_pods(env)))
    deleted = time.monotonic()
    env.kube().delete(Pod, f"testenv-{node}", grace_period=0)
    wait_for(lambda: env.slurm.job_state(job) == "PENDING", timeout=30, what="job requeued")
    requeued = time.monotonic() - deleted
    print(f"\npod deleted → job requeued: {requeued:.1f} s (SlurmdTimeout would be 300 s)")  # benchmarks/daemon.py
    assert int(job_field(env, job, "Restarts")) == 1
    released = daemon.actions("release_node", node)
    assert len(released) == 1 and released[0]["rule"] in ("vanished", "deleting")
    # The node is given back, not DOWN: powered down, then in service again for the requeued job.
    wait_for(lambda: "POWERED_DOWN" in node_field(env, node, "State") or env.slurm.job_state(job) == "RUNNING",
             timeout=30, what="node powered down, back in service")
    assert not node_field(env, node, "State").startswith("DOWN")


def test_orphan_pod_is_deleted_after_the_grace_period_and_a_look_alike_never(daemon_env):
    env, daemon = daemon_env
    _planted_pod(env, "lookalike-elastic4", "elastic4", annotated=False)
    planted = time.monotonic()
    _planted_pod(env, "testenv-elastic3", "elastic3", annotated=True)
    wait_for(lambda: "testenv-elastic3" not in {p.metadata.name for p in env.kube().list(Pod, namespace=NAMESPACE)},
             timeout=30, what="orphan pod deleted")
    took = time.monotonic() - planted
    print(f"\norphan pod → deleted: {took:.1f} s (grace {DAEMON['daemon']['orphan_grace']} s)")
    assert took >= DAEMON["daemon"]["orphan_grace"]
    assert [r["rule"] for r in daemon.actions("delete_pod", "elastic3")] == ["orphan"]
    daemon.wait_looks(3)  # looks past the grace (it was planted first): a look-alike is still there
    assert env.kube().get(Pod, "lookalike-elastic4").metadata.deletionTimestamp is None
    assert daemon.actions("delete_pod", "elastic4") == []
    env.kube().delete(Pod, "lookalike-elastic4", grace_period=0)


def test_cordoned_kubernetes_node_drains_its_slurm_nodes_and_uncordon_undrains(daemon_env):
    env, daemon = daemon_env
    _running_job(env, nodes=2)
    pods = bridge_pods(env)
    host = next(iter(pods.values())).spec.nodeName
    on_host = sorted(n for n, p in pods.items() if p.spec.nodeName == host)
    env.kube().patch(Node, host, {"spec": {"unschedulable": True}})
    for node in on_host:
        wait_for(lambda: "DRAIN" in node_field(env, node, "State"), timeout=15, what=f"{node} drained")
        # Slurm adds who set it and when: "... [root@2027-01-15T08:00:00]"
        assert node_field(env, node, "Reason").startswith(f"slurm-k8s-bridge: Kubernetes node {host} is cordoned")
    others = set(pods) - set(on_host)
    assert all("DRAIN" not in node_field(env, n, "State") for n in others)
    env.kube().patch(Node, host, {"spec": {"unschedulable": False}})
    for node in on_host:
        wait_for(lambda: "DRAIN" not in node_field(env, node, "State"), timeout=15, what=f"{node} undrained")


def test_an_admins_drain_is_never_lifted(daemon_env):
    env, daemon = daemon_env
    _running_job(env)
    node = next(iter(bridge_pods(env)))
    env.slurm.run("scontrol", "update", f"NodeName={node}", "State=DRAIN", "Reason=disk check")
    daemon.wait_looks(3)
    assert "DRAIN" in node_field(env, node, "State") and node_field(env, node, "Reason").startswith("disk check")
    assert daemon.actions("undrain_node") == []


def test_restarted_daemon_loses_nothing_and_releases_once(daemon_env):
    env, daemon = daemon_env
    job = _running_job(env)
    node = next(iter(bridge_pods(env)))
    assert daemon.stop() == 0
    env.kube().delete(Pod, f"testenv-{node}", grace_period=0)  # while no daemon runs
    wait_for(lambda: node not in bridge_pods(env), timeout=10, what="pod gone")
    preview = subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "daemon",
                              "--once", "--dry-run"], env={"SLURM_CONF": str(env.slurm.conf_path)},
                             capture_output=True, text=True, timeout=60)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines() == [f"would release node\t{node}\tits pod is gone"]
    assert env.slurm.job_state(job) == "RUNNING"  # a dry run changes nothing
    daemon.start()
    wait_for(lambda: env.slurm.job_state(job) == "PENDING", timeout=30, what="job requeued by the new daemon")
    daemon.wait_looks(3)  # and no second release at the looks after it
    assert len(daemon.actions("release_node", node)) == 1
    assert int(job_field(env, job, "Restarts")) == 1


def _resume_hooks(env: Environment) -> list[int]:
    """Pids of this environment's running resume hooks (other test runs may have their own)."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"slurm-k8s-resume" in (proc / "cmdline").read_bytes() and \
                    f"SLURM_CONF={env.slurm.conf_path}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_resume_hook_killed_before_its_pods_exist_leaves_nothing_stuck(make_env):
    import os

    # Early start off: the prolog would create (and release) the job's pods itself; this is
    # the hook's own call killed mid-way, which only the daemon can clean up after.
    env = make_env(bridge={**DAEMON, "resume": {"early_start": False}}, images=SLEEPER)
    daemon = Daemon(env).start()
    # The API stalls the pod's creation (then refuses it): the hook is still waiting when killed.
    env.add_fault(verb="create", resource="pods", code=503, delay_seconds=30)
    job = sbatch(env, "-N1", "--wrap", "hostname")
    pids = wait_for(lambda: _resume_hooks(env), timeout=20, what="the resume hook running")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    env.clear_faults()
    wait_for(lambda: env.slurm.job_state(job) in ("PENDING", "COMPLETED") and int(job_field(env, job, "Restarts")) >= 1,
             timeout=60, what="job requeued without its hook")
    print(f"\nresume hook SIGKILLed → job requeued: {time.monotonic() - killed:.1f} s "
          f"(stuck_grace {DAEMON['daemon']['stuck_grace']} s; Slurm alone: ResumeTimeout, 120 s here)")
    [released] = daemon.actions("release_node")
    assert released["rule"] == "stuck"
    assert not bridge_pods(env)
    assert daemon.stop() == 0


def test_status_marks_a_planted_disagreement(daemon_env):
    env, daemon = daemon_env
    daemon.stop()  # nobody fixes it while we look
    _planted_pod(env, "testenv-elastic3", "elastic3", annotated=True)
    result = subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "status"],
                            env={"SLURM_CONF": str(env.slurm.conf_path)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    marked = [line for line in result.stdout.splitlines() if "  !  " in line]
    assert len(marked) == 1 and marked[0].split()[0] == "elastic3" and "orphan pod" in marked[0]
    rows = json.loads(subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path),
                                      "status", "--json"], env={"SLURM_CONF": str(env.slurm.conf_path)},
                                     capture_output=True, text=True, timeout=60).stdout)
    assert [r["node"] for r in rows if r["disagree"]] == ["elastic3"]
    env.kube().delete(Pod, "testenv-elastic3", grace_period=0)


def test_metrics_endpoint_serves_the_counts(daemon_env):
    import urllib.request

    env, daemon = daemon_env
    address = daemon.records("metrics served")[-1]["address"]
    assert address.startswith("127.0.0.1:")

    def scrape() -> str:
        return urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()  # loopback only

    # The heartbeat is set when a look is complete; the node counts a moment earlier in it.
    text = wait_for(lambda: re.search(r"^slurm_k8s_bridge_heartbeat_timestamp_seconds [1-9]", page := scrape(), re.M)
                    and page, timeout=10, what="the first look's metrics")
    assert 'slurm_k8s_bridge_nodes{nodeset="elastic",state="powered_down"} 4.0' in text
    stamp = float(re.search(r"^slurm_k8s_bridge_heartbeat_timestamp_seconds (\S+)$", text, re.M).group(1))
    assert abs(stamp - time.time()) < 10


# ---- the daemon follows resumed jobs (daemon.follow): while its heartbeat is fresh the resume
# hook hands over and starts no follower --------------------------------------------------------

FOLLOWING = {**DAEMON, "daemon": {**DAEMON["daemon"], "follow": True}}


def _handed_over(env) -> bool:
    return any(r.get("event") == "following left to the daemon" for r in env.bridge_log_records())


def _start_following(env) -> Daemon:
    """The daemon, once its heartbeat says it follows jobs (what the resume hook reads)."""
    import yaml

    from bridge import heartbeat

    daemon = Daemon(env).start()
    state_dir = yaml.safe_load(env.bridge_config_path.read_text())["resume"]["state_dir"]
    wait_for(lambda: heartbeat.hand_over(state_dir, 30.0), timeout=20, what="the daemon's heartbeat")
    return daemon


def test_following_daemon_releases_a_job_whose_image_does_not_exist(make_env):
    env = make_env(bridge=FOLLOWING, nodesets=[{"name": "elastic", "nodes": "elastic[1-4]",
                                                "image": "registry.invalid/nope:1"}])
    daemon = _start_following(env)
    try:
        start = time.monotonic()
        job = sbatch(env, "-N2", "--wrap", "hostname")
        wait_for(lambda: env.slurm.job_state(job) == "PENDING" and int(job_field(env, job, "Restarts")) >= 1,
                 timeout=30, what="job requeued by the daemon")
        print(f"\nimage missing → job requeued by the daemon: {time.monotonic() - start:.1f} s")
        wait_for(lambda: not bridge_pods(env), timeout=30, what="no pod left")
        released = daemon.actions("release_job")
        assert released and released[0]["jobs"] == [int(job)] and "ImagePull" in released[0]["cause"]
        assert _handed_over(env)
        assert not [r for r in env.bridge_log_records() if r.get("hook") == "follow"]  # no follower process
    finally:
        assert daemon.stop() == 0


def test_following_daemon_lets_a_good_job_run(make_env):
    env = make_env(bridge=FOLLOWING)
    daemon = _start_following(env)
    try:
        job = sbatch(env, "-N2", "--wrap", "hostname")
        wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job completed")
        assert job_output(job) == f"{job_field(env, job, 'BatchHost')}\n"  # alice's output, in her directory
        assert daemon.actions("release_job") == [] and daemon.actions("release_node") == []
        assert _handed_over(env)
    finally:
        assert daemon.stop() == 0


# ---- the capacity circuit breaker ----------------------------------------------------------------

def test_capacity_breaker_opens_jobs_wait_without_looping_and_it_closes_after_a_good_probe(make_env):
    from testenv.env import IMAGE

    cooldown = 20  # well over a failed node's power-down (~10 s here), when a drain may not stick yet
    env = make_env(bridge={"daemon": {**DAEMON["daemon"], "breaker_failures": 2, "breaker_cooldown": cooldown},
                           "resume": {"cooldown": 1, "max_attempts": 20}},
                   nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": IMAGE,
                              "node_selector": {"pool": "big"}}])  # no Kubernetes node has it yet
    daemon = Daemon(env).start()
    try:
        job = sbatch(env, "-N1", "--wrap", "hostname")
        opened = wait_for(lambda: daemon.actions("open_breaker"), timeout=60, what="breaker open")[0]
        assert opened["cause"].startswith("slurm-k8s-bridge: capacity breaker open until ")
        # A resume Slurm had already started when it opened may still fail: its node is drained after.
        wait_for(lambda: all("DRAIN" in node_field(env, f"elastic{i}", "State") for i in range(1, 5)),
                 timeout=cooldown, what="every node of the nodeset drained")
        attempts = int(job_field(env, job, "Restarts"))
        print(f"\nbreaker open after {attempts} failed resumes")
        # Open: the job waits in the queue instead of looping through failed resumes.
        time.sleep(cooldown / 3)
        assert env.slurm.job_state(job) == "PENDING"
        assert int(job_field(env, job, "Restarts")) == attempts and not bridge_pods(env)
        # Capacity comes back; after the cool-down the probe (the job itself) succeeds.
        env.kube().patch(Node, "worker-1", {"metadata": {"labels": {"pool": "big"}}})
        wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job completed after the probe")
        assert job_output(job) == f"{job_field(env, job, 'BatchHost')}\n"  # alice's output, in her directory
        assert daemon.actions("close_breaker")
        assert int(job_field(env, job, "Restarts")) == attempts
        assert not any("capacity breaker" in node_field(env, f"elastic{i}", "Reason") for i in range(1, 5))
    finally:
        assert daemon.stop() == 0


def test_warm_pool_keeps_two_nodes_up_a_job_lands_on_them_without_a_resume_and_the_pool_refills(make_env):
    # SuspendTime longer than the test: the pool, not Slurm's power saving, decides who stays up.
    env = make_env(bridge=DAEMON, timeouts=Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2),
                   nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": IMAGE,
                              "warm": {"min": 2, "max": 2}}])
    daemon = Daemon(env).start()
    try:
        def warm() -> list[str]:
            states = {n: node_field(env, n, "State") for n in ("elastic1", "elastic2", "elastic3", "elastic4")}
            return sorted(n for n, s in states.items() if s == "IDLE+CLOUD" and n in bridge_pods(env))

        wait_for(lambda: len(warm()) == 2, timeout=60, what="two warm nodes: pods running, slurmd registered")
        pool = warm()
        # Two power-ups, not four: a node on its way up (NOT_RESPONDING until slurmd registers)
        # is counted, not replaced.
        ups = [n for r in daemon.records("warm pool") if r["action"] == "power_up" for n in hostlist.expand(r["nodes"])]
        assert sorted(ups) == pool
        job = sbatch(env, "-N2", "--wrap", "sleep 300")
        wait_for(lambda: env.slurm.job_state(job) == "RUNNING", timeout=30, what="job running")
        assert sorted(hostlist.expand(job_field(env, job, "NodeList"))) == pool
        wait_for(lambda: len(warm()) == 2, timeout=60, what="the pool refilled")
        assert set(warm()).isdisjoint(pool)
        # Slurm never resumed anything for the job: only the pool's own power-ups, with no job.
        resumes = [r for r in env.bridge_log_records() if r.get("hook") == "resume"]
        assert resumes and not [r for r in resumes if str(job) in map(str, r.get("jobs") or [])]
        # Each node powered up once: the first two for the pool, the other two to refill it (a
        # refill may take more than one look, when the job's nodes are seen allocated one by one).
        ups = [r for r in daemon.records("warm pool") if r["action"] == "power_up"]
        powered = [n for r in ups for n in hostlist.expand(r["nodes"])]
        assert all(r["nodeset"] == "elastic" for r in ups)
        assert sorted(powered) == ["elastic1", "elastic2", "elastic3", "elastic4"]
        assert set(powered[:2]) == set(pool)
        # What an admin asks of the pool now: full, nothing to power up, the job on the first two.
        result = subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "status",
                                 "--pools", "--json"], env={"SLURM_CONF": str(env.slurm.conf_path)},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        [row] = json.loads(result.stdout)
        assert (row["pool"], row["target"], row["idle"], row["busy"], row["powered_down"]) == ("elastic", 2, 2, 2, 0)
        assert row["would_power_up"] == "" and row["learned"].endswith("s ago")
    finally:
        assert daemon.stop() == 0


def test_a_shared_warm_pool_stays_on_spot_falls_back_to_on_demand_and_returns(make_env):
    """Two nodesets share pool "cpu": on-demand elastic[1-2] (first in the config) and spot
    elastic[3-4], each pinned to its Kubernetes node by capacity label. The pool's one node is
    spot; while the spot nodes are drained it is on-demand; once they are back, the on-demand node
    is powered down after its linger and the spot node is the pool again."""
    from testenv.env import KubeNode

    label = "karpenter.sh/capacity-type"
    size = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    warm = {"min": 1, "max": 1, "linger": 5, "pool": "cpu"}
    env = make_env(bridge=DAEMON, timeouts=Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2),
                   kube_nodes=(KubeNode("spot-1", size, {label: "spot"}), KubeNode("ondemand-1", size, {label: "on-demand"})),
                   nodesets=[{"name": "od", "nodes": "elastic[1-2]", "image": IMAGE, "capacity": {"type": "on-demand"},
                              "warm": warm},
                             {"name": "spot", "nodes": "elastic[3-4]", "image": IMAGE, "capacity": {"type": "spot"},
                              "warm": warm}])

    def warm_nodes() -> dict[str, str]:
        """Idle registered nodes with a running pod: node -> the Kubernetes node its pod runs on."""
        pods = {p.metadata.annotations.get(naming.NODE_ANNOTATION): p.spec.nodeName
                for p in env.kube().list(Pod, namespace=NAMESPACE) if p.status and p.status.phase == "Running"}
        return {n: pods[n] for n in ("elastic1", "elastic2", "elastic3", "elastic4")
                if n in pods and node_field(env, n, "State") == "IDLE+CLOUD"}

    daemon = Daemon(env).start()
    try:
        assert wait_for(lambda: warm_nodes(), timeout=60, what="the pool's node up") == {"elastic3": "spot-1"}
        env.slurm.run("scontrol", "update", "NodeName=elastic[3-4]", "State=DRAIN", "Reason=spot maintenance")
        wait_for(lambda: warm_nodes() == {"elastic1": "ondemand-1"}, timeout=60, what="the pool on on-demand")
        env.slurm.run("scontrol", "update", "NodeName=elastic[3-4]", "State=RESUME")
        wait_for(lambda: warm_nodes() == {"elastic3": "spot-1"}
                 and "POWERED_DOWN" in node_field(env, "elastic1", "State"), timeout=60,
                 what="the on-demand node powered down, the spot node the pool again")
        ups = [(r["nodes"], r["nodeset"]) for r in daemon.records("warm pool") if r["action"] == "power_up"]
        downs = [(r["nodes"], r["nodeset"]) for r in daemon.records("warm pool") if r["action"] == "power_down"]
        assert ups == [("elastic3", "cpu"), ("elastic1", "cpu")] and downs == [("elastic1", "cpu")]
    finally:
        assert daemon.stop() == 0


def test_a_job_waiting_for_busy_nodes_finds_the_rest_of_its_nodes_up_when_its_turn_comes(make_env):
    """Alice's 2-node job holds elastic[1-2]; her 4-node job waits for them, and backfill plans it
    on elastic[1-4] at the first job's time limit. One horizon (30 s) before that, the daemon
    powers elastic[3-4] up, so when the first job ends the second starts on nodes that are all
    up: Slurm resumes nothing for it."""
    from testenv import site

    site.ensure()
    env = make_env(bridge=DAEMON, timeouts=Timeouts(suspend_time=300, resume_timeout=120, suspend_timeout=2),
                   nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": IMAGE,
                              "warm": {"min": 0, "max": 4, "horizon": 30}}])

    def alice_sbatch(*args: str) -> str:
        result = site.run_as(site.ALICE, env.slurm, "sbatch", "--parsable", "--output=/dev/null", *args,
                             cwd=site.ALICE.home)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().split(";")[0]

    first = alice_sbatch("-N2", "--time=1", "--wrap", "sleep 40")
    wait_for(lambda: env.slurm.job_state(first) == "RUNNING", timeout=30, what="the first job running")
    # Started after the first job is running: its nodes are no arrival the pool learns from, so
    # the pool's own target stays 0 and only the plan can power nodes up.
    daemon = Daemon(env).start()
    try:
        second = alice_sbatch("-N4", "--time=1", "--wrap", "true")
        planned = wait_for(lambda: job_field(env, second, "SchedNodeList") not in ("", "(null)")
                           and job_field(env, second, "StartTime"), timeout=30, what="backfill placing the job")
        starts = time.mktime(time.strptime(planned, "%Y-%m-%dT%H:%M:%S"))
        assert starts - time.time() > 30 + 5, "the first job's time limit leaves the horizon ahead"
        # Slurm marks the nodes it plans for the job (PLANNED); elastic3 and 4 are still down.
        assert {node_field(env, n, "State") for n in ("elastic3", "elastic4")} == {"IDLE+CLOUD+POWERED_DOWN+PLANNED"}
        ups = wait_for(lambda: [r for r in daemon.records("warm pool") if r["action"] == "power_up"],
                       timeout=60, what="the planned nodes powered up")
        assert [(r["nodes"], r["for_planned_jobs"], r["target"]) for r in ups] == [("elastic[3-4]", 2, 0)]
        assert time.time() >= starts - 30 - 2  # not before the horizon (a 1 s tick, a second's rounding)
        wait_for(lambda: {node_field(env, n, "State") for n in ("elastic3", "elastic4")} == {"IDLE+CLOUD+PLANNED"}
                 and env.slurm.job_state(second) == "PENDING", timeout=30, what="elastic[3-4] up while the job waits")
        wait_for(lambda: env.slurm.job_state(second) == "COMPLETED", timeout=90, what="the second job done")
        assert sorted(hostlist.expand(job_field(env, second, "NodeList"))) == [f"elastic{i}" for i in range(1, 5)]
        resumes = [r for r in env.bridge_log_records() if r.get("hook") == "resume"]
        assert not [r for r in resumes if second in map(str, r.get("jobs") or [])]
    finally:
        assert daemon.stop() == 0


# ---- daemon.in_cluster: the daemon's Lease instead of the heartbeat file -------------------------

IN_CLUSTER = {**FOLLOWING, "daemon": {**FOLLOWING["daemon"], "in_cluster": True, "lease_duration": 6}}


def test_in_cluster_daemons_elect_one_leader_and_the_hook_hands_over_by_its_lease(make_env):
    """Two replicas with the daemon's RBAC (enforced by the stand-in): one holds the Lease and
    acts, the other stands by; the resume hook reads the Lease (no heartbeat file counts) and
    starts no follower; the leader stopping hands the Lease to the standby at once."""
    from lightkube.resources.coordination_v1 import Lease

    from bridge import lease

    env = make_env(bridge=IN_CLUSTER, nodesets=[{"name": "elastic", "nodes": "elastic[1-4]",
                                                 "image": "registry.invalid/nope:1"}])
    first = Daemon(env).start()
    name = lease.lease_name("testenv")
    holder = wait_for(lambda: (env.kube().get(Lease, name).spec.holderIdentity if name in
                               {x.metadata.name for x in env.kube().list(Lease)} else None),
                      timeout=20, what="the Lease held")
    second = Daemon(env).start()
    try:
        wait_for(lambda: any(r["pid"] == second.proc.pid for r in second.records("standing by")),
                 timeout=10, what="the second replica standing by")
        job = sbatch(env, "-N1", "--wrap", "hostname")
        wait_for(lambda: env.slurm.job_state(job) == "PENDING" and int(job_field(env, job, "Restarts")) >= 1,
                 timeout=30, what="job requeued by the leader")
        handed = [r for r in env.bridge_log_records() if r.get("event") == "following left to the daemon"]
        assert handed and handed[0]["by"] == f"lease {NAMESPACE}/{name}"
        assert not [r for r in env.bridge_log_records() if r.get("hook") == "follow"]
        releases = first.actions("release_job")  # both replicas' records: one log file
        assert {r["pid"] for r in releases} == {first.proc.pid}, "only the Lease holder acts"
        assert holder == env.kube().get(Lease, name).spec.holderIdentity
        assert first.stop() == 0
        wait_for(lambda: env.kube().get(Lease, name).spec.holderIdentity not in ("", holder),
                 timeout=5, what="the standby took the released Lease")
    finally:
        first.stop()
        assert second.stop() == 0
