"""The daemon's look: plan carried out through the hooks' own paths, each action logged, an
Event and a metric; dry-run changes nothing; the heartbeat tells hooks a daemon is there."""

from __future__ import annotations

import subprocess
import sys

import pytest
import structlog
from structlog.testing import capture_logs

from bridge import heartbeat, naming
from bridge.daemon import Daemon
from bridge.metrics import Metrics
from bridge.reconcile import DRAIN_REASON
from bridge.slurm import NodeFacts, reason
from tests.fakes import FakeSlurm

BUSY, OFF = ("MIXED", "CLOUD"), ("IDLE", "CLOUD", "POWERED_DOWN")


class DrainingSlurm(FakeSlurm):
    def __init__(self, facts):
        super().__init__(facts)
        self.drained: dict[str, str | None] = {}

    def set_drained(self, nodes, reason_text):
        self.calls.append(f"set_drained {len(nodes)}")
        for node in nodes:
            self.drained[node] = reason(reason_text) if reason_text else None


def pod(node: str, host: str = "worker-1") -> dict:
    return {"metadata": {"name": f"linux-{node}", "namespace": "slurm", "uid": f"u-{node}",
                         "labels": {**naming.owner_labels("linux"), naming.NODESET_LABEL: "cpu",
                                    naming.NODE_LABEL: naming.dns_label(node)},
                         "annotations": {naming.NODE_ANNOTATION: node}},
            "spec": {"nodeName": host}, "status": {"phase": "Running"}}


def host(name: str = "worker-1", cordoned: bool = False) -> dict:
    return {"metadata": {"name": name}, "spec": {"unschedulable": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.fixture
def world(config, kube):
    slurm = DrainingSlurm({f"elastic{i}": NodeFacts(f"elastic{i}", 1, 500, state=BUSY) for i in range(1, 4)}
                         | {"elastic4": NodeFacts("elastic4", 1, 500, state=OFF)})
    clock = [1_800_000_000.0]

    def make(dry_run: bool = False) -> Daemon:
        import structlog

        return Daemon(config, slurm=slurm, kube=kube, log=structlog.get_logger(), metrics=Metrics(),
                      dry_run=dry_run, clock=lambda: clock[0])

    for node in ("elastic1", "elastic2", "elastic3"):
        kube.pods[f"linux-{node}"] = pod(node)
    return make, slurm, kube, clock


def test_pod_deleted_behind_slurms_back_releases_its_node_with_an_event_a_log_line_and_a_metric(world):
    make, slurm, kube, clock = world
    daemon = make()
    del kube.pods["linux-elastic2"]
    with capture_logs() as logs:
        actions = daemon.look(list(kube.pods.values()), [host()])
    assert [(a.kind, a.node) for a in actions] == [("release_node", "elastic2")]
    # DOWN first (a dead slurmd never sends its epilog: the job would stay COMPLETING until
    # SlurmdTimeout), then powered down: the node returns to service by itself.
    assert slurm.calls == ["set_down 1", "power_down 1"]
    assert slurm.powered_down == slurm.down == {"elastic2": "slurm-k8s-bridge: its pod is gone"}
    line = [r for r in logs if r["event"] == "reconcile"][0]
    assert line.items() >= {"action": "release_node", "rule": "vanished", "node": "elastic2",
                            "cause": "its pod is gone", "dry_run": False}.items()
    assert daemon._metrics.value("slurm_k8s_bridge_reconcile_actions_total", action="release_node",
                                 rule="vanished", dry_run="false") == 1
    assert daemon._metrics.value("slurm_k8s_bridge_failures_total", nodeset="cpu", cause="vanished") == 1
    # Slurm now says the node is powering down: the next look does nothing twice.
    slurm.facts["elastic2"] = NodeFacts("elastic2", 1, 500, state=("IDLE", "CLOUD", "POWERING_DOWN"))
    clock[0] += 1
    assert daemon.look(list(kube.pods.values()), [host()]) == []


def test_a_pod_made_while_slurm_was_read_keeps_its_registered_node_and_its_job(world):
    """The look's Slurm read outlasts a pod's start (retried while slurmctld restarts): the pods
    it took before show none for elastic4, Slurm already shows the slurmd of the pod made
    meanwhile registered and running the job. The node is not given back and its job is not
    requeued (seen in CI: "its pod is gone", job Restarts=1). A pod that is really gone still is."""
    make, slurm, kube, clock = world
    daemon = make()
    del kube.pods["linux-elastic3"]  # deleted behind Slurm's back
    before = list(kube.pods.values())  # elastic1-2; elastic4 powered down, no pod
    read = slurm.node_facts

    def slow_read(nodes):  # meanwhile: elastic4's pod made, its slurmd registered
        kube.pods["linux-elastic4"] = pod("elastic4")
        slurm.facts["elastic4"] = NodeFacts("elastic4", 1, 500, state=BUSY)
        return read(nodes)

    slurm.node_facts = slow_read
    slurm.add_job(7, ["elastic4"])
    actions = daemon.look(before, [host()], again=lambda: (list(kube.pods.values()), [host()]))
    assert [(a.kind, a.node) for a in actions] == [("release_node", "elastic3")]
    assert "elastic4" not in slurm.down and slurm.jobs[7]["restarts"] == 0
    assert "linux-elastic4" in kube.pods


def _made_during_read(slurm, kube, node, *, state, host_name="worker-1", uid="u-new"):
    """Slurm's read, during which the node's pod is made (and its slurmd registers, if ``state``
    says it is up)."""
    read = slurm.node_facts

    def slow_read(nodes):
        kube.pods[f"linux-{node}"] = {**pod(node, host_name),
                                      "metadata": {**pod(node)["metadata"], "uid": uid}}
        slurm.facts[node] = NodeFacts(node, 1, 500, state=state)
        return read(nodes)

    slurm.node_facts = slow_read


def test_a_pod_made_on_a_kubernetes_node_that_joined_during_the_read_is_not_on_a_gone_host(world):
    """The Kubernetes node joined while Slurm was read and the pod made meanwhile runs there:
    the look judges hosts as they are after the read, not "Kubernetes node worker-2 is gone"."""
    make, slurm, kube, clock = world
    daemon = make()
    before = list(kube.pods.values())
    _made_during_read(slurm, kube, "elastic4", state=BUSY, host_name="worker-2")
    actions = daemon.look(before, [host()], again=lambda: (list(kube.pods.values()), [host(), host("worker-2")]))
    assert actions == [] and not slurm.down


def test_a_pod_replaced_during_the_read_is_not_taken_for_the_one_being_deleted(world):
    """The node's old pod was terminating when the look began; by the end of the Slurm read it
    was gone and the new pod's slurmd had registered: the node keeps its job, and is not given
    back because "pod linux-elastic4 is being deleted"."""
    make, slurm, kube, clock = world
    daemon = make()
    old = {**pod("elastic4"), "metadata": {**pod("elastic4")["metadata"], "deletionTimestamp": "2027-01-15T08:00:00Z"}}
    before = [*kube.pods.values(), old]
    _made_during_read(slurm, kube, "elastic4", state=BUSY)
    actions = daemon.look(before, [host()], again=lambda: (list(kube.pods.values()), [host()]))
    assert actions == [] and not slurm.down


def test_a_pod_made_after_slurm_said_its_node_was_powered_down_is_no_orphan_yet(world, config):
    """Slurm was read before the node started powering up; its pod was made right after. Even
    with no orphan grace, the look that read the older state does not delete the new pod."""
    import msgspec

    make, slurm, kube, clock = world
    config = msgspec.structs.replace(config, daemon=msgspec.structs.replace(config.daemon, orphan_grace=0))
    daemon = Daemon(config, slurm=slurm, kube=kube, log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    before = list(kube.pods.values())
    _made_during_read(slurm, kube, "elastic4", state=OFF)
    actions = daemon.look(before, [host()], again=lambda: (list(kube.pods.values()), [host()]))
    assert actions == [] and "linux-elastic4" in kube.pods


def test_the_daemons_loop_counts_a_pod_made_while_it_read_slurm(world):
    """The same, through the daemon's own loop and its watch: what it takes before and after
    the read."""
    import threading

    from bridge import daemon as daemon_module

    make, slurm, kube, clock = world
    daemon = make()

    class Watch:
        def snapshot(self):
            return list(kube.pods.values()), [host()], []

        def again(self):
            return list(kube.pods.values()), [host()]

    _made_during_read(slurm, kube, "elastic4", state=BUSY)
    actions = daemon_module._loop(daemon, Watch(), None, stop=threading.Event(), wake=threading.Event(),
                                  log=structlog.get_logger(), metrics=Metrics(), once=True, min_gap=0)
    assert actions == [] and not slurm.down


def test_a_look_whose_kubernetes_credentials_fail_is_logged_and_the_next_one_runs(world):
    """A credential plugin's hiccup mid-look (a CredentialsError from the client) does not end the
    daemon: it says so, counts it, and looks again at the next tick."""
    import threading

    from bridge import daemon as daemon_module
    from bridge.errors import CredentialsError

    make, slurm, kube, clock = world
    daemon = make()
    stop, wake, looks = threading.Event(), threading.Event(), []

    def look(*args, **kwargs):
        looks.append(1)
        if len(looks) == 1:
            raise CredentialsError("kubernetes: kubeconfig k: Exec /usr/bin/aws returned 255")
        stop.set()
        return []

    class Watch:
        def snapshot(self):
            return [], [host()], []

        def again(self):
            return [], [host()]

    daemon.look = look
    daemon.next_look = lambda: 0
    metrics = Metrics()
    with capture_logs() as logs:
        daemon_module._loop(daemon, Watch(), None, stop=stop, wake=wake, log=structlog.get_logger(),
                            metrics=metrics, once=False, min_gap=0)
    assert len(looks) == 2
    assert [r["error"] for r in logs if r["event"].startswith("look failed")] == [
        "kubernetes: kubeconfig k: Exec /usr/bin/aws returned 255"]
    assert metrics.api_errors.labels("kubernetes", "credentials")._value.get() == 1


@pytest.mark.parametrize("state, reason_text", [
    (OFF, ""),
    # given back by a release while a racing resume made its pod again
    (("DOWN", "CLOUD", "POWERING_UP"), "slurm-k8s-bridge: node did not register within 300 s"),
], ids=["powered-down", "given-back-down"])
def test_orphan_pod_is_deleted_with_an_event(world, config, state, reason_text):
    make, slurm, kube, clock = world
    slurm.facts["elastic4"] = NodeFacts("elastic4", 1, 500, state=state, reason=reason_text)
    kube.pods["linux-elastic4"] = pod("elastic4")
    daemon = make()
    daemon.look(list(kube.pods.values()), [host()])
    clock[0] += config.daemon.orphan_grace
    daemon.look(list(kube.pods.values()), [host()])
    assert "linux-elastic4" not in kube.pods and "linux-elastic1" in kube.pods
    assert [e["reason"] for e in kube.events] == ["SlurmOrphanPod"]


def test_cordon_drains_in_one_call_and_uncordon_undrains(world):
    make, slurm, kube, clock = world
    daemon = make()
    daemon.look(list(kube.pods.values()), [host(cordoned=True)])
    assert slurm.calls == ["set_drained 3"]
    assert slurm.drained == {n: f"{DRAIN_REASON}worker-1 is cordoned" for n in ("elastic1", "elastic2", "elastic3")}
    for node in slurm.drained:
        slurm.facts[node] = NodeFacts(node, 1, 500, state=BUSY + ("DRAIN",), reason=slurm.drained[node])
    daemon.look(list(kube.pods.values()), [host()])
    assert slurm.drained == {n: None for n in ("elastic1", "elastic2", "elastic3")}


def test_dry_run_changes_nothing_and_says_what_it_would_do(world):
    make, slurm, kube, clock = world
    daemon = make(dry_run=True)
    with capture_logs() as logs:
        actions = daemon.look(list(kube.pods.values()), [host(cordoned=True)])
    assert len(actions) == 3 and slurm.calls == [] and kube.events == []
    assert {r["dry_run"] for r in logs if r["event"] == "reconcile"} == {True}
    assert heartbeat.age(daemon.config.resume.state_dir) is None  # a dry run does not stand in for a daemon


def test_heartbeat_says_a_daemon_is_running_while_fresh(world, config):
    make, slurm, kube, clock = world
    make().look(list(kube.pods.values()), [host()])
    state_dir = config.resume.state_dir
    assert heartbeat.daemon_running(state_dir, config.daemon.heartbeat_fresh, now=clock[0] + 1)
    assert not heartbeat.daemon_running(state_dir, config.daemon.heartbeat_fresh,
                                        now=clock[0] + config.daemon.heartbeat_fresh)
    heartbeat.stop(state_dir)
    assert not heartbeat.daemon_running(state_dir, config.daemon.heartbeat_fresh, now=clock[0])


def test_a_state_dir_it_cannot_write_is_a_warning_and_the_looks_go_on(world, config, kube):
    # A full disk, a read-only mount, or here a file where the directory should be.
    import shutil
    from pathlib import Path

    make, slurm, kube, clock = world
    shutil.rmtree(config.resume.state_dir, ignore_errors=True)
    Path(config.resume.state_dir).write_text("")
    del kube.pods["linux-elastic2"]  # something for the look to do
    with capture_logs() as logs:
        actions = make().look(list(kube.pods.values()), [host()])
    assert [a.node for a in actions if a.kind == "release_node"] == ["elastic2"]
    assert "cannot write the heartbeat" in [e["event"] for e in logs]


def test_metrics_count_nodes_by_state_and_pods_by_phase(world):
    make, slurm, kube, clock = world
    daemon = make()
    daemon.look(list(kube.pods.values()), [host()])
    assert daemon._metrics.value("slurm_k8s_bridge_nodes", nodeset="cpu", state="allocated") == 3
    assert daemon._metrics.value("slurm_k8s_bridge_nodes", nodeset="cpu", state="powered_down") == 1
    assert daemon._metrics.value("slurm_k8s_bridge_pods", nodeset="cpu", phase="Running") == 3


def test_resume_and_its_time_are_seen_from_state_changes(world):
    make, slurm, kube, clock = world
    daemon = make()
    daemon.look(list(kube.pods.values()), [host()])
    slurm.facts["elastic4"] = NodeFacts("elastic4", 1, 500, state=("MIXED", "CLOUD", "POWERING_UP"))
    clock[0] += 1
    daemon.look(list(kube.pods.values()), [host()])
    slurm.facts["elastic4"] = NodeFacts("elastic4", 1, 500, state=BUSY)
    kube.pods["linux-elastic4"] = pod("elastic4")
    clock[0] += 3
    daemon.look(list(kube.pods.values()), [host()])
    assert daemon._metrics.value("slurm_k8s_bridge_resumes_total", nodeset="cpu") == 1
    assert daemon._metrics.value("slurm_k8s_bridge_resume_seconds_sum", nodeset="cpu") == 3


def test_a_hook_never_imports_the_daemons_libraries():
    code = ("import sys, bridge.hooks, bridge.heartbeat; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prometheus_client' "
            "or m in ('bridge.informer', 'bridge.daemon', 'bridge.metrics')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hooks_hand_over_only_to_a_fresh_daemon_that_follows_jobs(tmp_path):
    state = str(tmp_path)
    assert not heartbeat.hand_over(state, 30)
    heartbeat.beat(state, follows=False, now=1000.0)
    assert heartbeat.daemon_running(state, 30, now=1010.0) and not heartbeat.hand_over(state, 30, now=1010.0)
    heartbeat.beat(state, follows=True, now=1000.0)
    assert heartbeat.hand_over(state, 30, now=1010.0)
    assert not heartbeat.hand_over(state, 30, now=1031.0)  # a hung daemon: the hooks follow again


def test_only_a_kubernetes_node_change_the_plan_reads_brings_a_look_forward(config):
    import structlog

    from bridge.daemon import Watch, _resource

    changes = []
    watch = Watch(config, on_change=lambda: changes.append(1), log=structlog.get_logger(), metrics=Metrics())
    node_class = _resource("v1", "Node", "nodes", namespaced=False)

    def node(version: str, **spec) -> object:
        return node_class.from_dict({"apiVersion": "v1", "kind": "Node",
                                     "metadata": {"name": "worker-1", "resourceVersion": version},
                                     "spec": spec, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})

    watch._on_host("ADDED", node("1"))
    watch._on_host("MODIFIED", node("2"))  # a kubelet status heartbeat
    assert len(changes) == 1
    watch._on_host("MODIFIED", node("3", unschedulable=True))
    watch._on_host("DELETED", node("4", unschedulable=True))
    assert len(changes) == 3


def test_a_slurm_answer_without_the_elastic_nodes_deletes_nothing(world, config):
    make, slurm, kube, clock = world
    daemon = make()
    slurm.facts = {}  # e.g. an output the parser no longer understands
    for _ in range(3):
        assert daemon.look(list(kube.pods.values()), [host()]) == []
        clock[0] += config.daemon.orphan_grace
    assert len(kube.pods) == 3 and slurm.calls == []


def test_drain_and_undrain_are_one_scontrol_update_each(tmp_path):
    from bridge.slurm import CommandSlurm

    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n')
    scontrol.chmod(0o755)
    slurm = CommandSlurm(str(tmp_path))
    slurm.set_drained(["elastic1", "elastic2"], "Kubernetes node worker-1 is cordoned")
    slurm.set_drained(["elastic1"], None)
    assert calls.read_text().splitlines() == [
        "update|NodeName=elastic[1-2]|State=DRAIN|Reason=slurm-k8s-bridge: Kubernetes node worker-1 is cordoned|",
        "update|NodeName=elastic1|State=UNDRAIN|"]


def test_a_failed_job_gives_back_its_registered_nodes_too_but_never_another_jobs_pod(world, write_config):
    """Job 9's elastic3 pod failed while elastic1 had registered and waited for it: as the hook's
    follower does, the daemon gives back the whole job, so elastic1's pod goes too (it would
    otherwise idle until SuspendTime and hold the requeued job's next try). elastic2 is allocated
    to job 9 as well, but its pod was made for job 5: not the failed job's, never touched."""
    import structlog

    from bridge import config as config_module
    from tests.conftest import BASIC_CONFIG

    _, slurm, kube, clock = world
    following = config_module.load(str(write_config(BASIC_CONFIG.replace("resume:\n", "daemon: {follow: true}\nresume:\n"))))
    slurm.add_job(9, ["elastic1", "elastic2", "elastic3"])
    slurm.facts["elastic3"] = NodeFacts("elastic3", 1, 500, state=("MIXED", "CLOUD", "POWERING_UP"))
    for node, job in (("elastic1", "9"), ("elastic2", "5"), ("elastic3", "9")):
        kube.pods[f"linux-{node}"]["metadata"]["labels"][naming.JOB_LABEL] = job
    kube.pods["linux-elastic3"]["status"] = {"phase": "Failed", "reason": "Evicted", "message": "node shutdown"}
    daemon = Daemon(following, slurm=slurm, kube=kube, log=structlog.get_logger(), metrics=Metrics(),
                    clock=lambda: clock[0])
    actions = daemon.look(list(kube.pods.values()), [host()])
    assert [(a.kind, a.node) for a in actions] == [("release_job", "elastic3")]
    assert sorted(kube.pods) == ["linux-elastic2"]
    assert slurm.jobs[9]["state"] == "PENDING" and slurm.jobs[9]["restarts"] == 1
    assert "elastic1" in slurm.powered_down and "elastic2" not in slurm.powered_down | slurm.down


def test_a_metrics_port_already_taken_is_one_line_naming_the_setting(write_config):
    import socket

    from bridge import config as config_module, daemon
    from bridge.errors import ConfigError
    from tests.conftest import BASIC_CONFIG

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = config_module.load(str(write_config(BASIC_CONFIG + f"daemon: {{metrics_address: '{address}'}}\n")))
        with pytest.raises(ConfigError) as error:
            daemon.run(config, log=structlog.get_logger())
    assert str(error.value) == f"daemon.metrics_address {address}: cannot listen: Address already in use"

