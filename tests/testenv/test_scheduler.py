"""The test environment's scheduler against the API stand-in: what a user sees of scheduling.

Nodes are created through the API (no pod runner), so bound pods simply stay bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Event, Node, NodeStatus, Pod, PodStatus
from lightkube.types import PatchType

from testenv.kubeapi import KubeApiServer
from testenv.scheduler import Scheduler
from tests.waiting import wait_for as wait_until

def make_node(
    client: Client,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
    resources: dict[str, str] | None = None,
) -> None:
    """A node with 4 cpu, 8Gi and 110 pods unless `resources` says otherwise."""
    allocatable = {"cpu": "4", "memory": "8Gi", "pods": "110", **(resources or {})}
    node = {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints, "unschedulable": unschedulable},
    }
    client.create(Node.from_dict(node))
    status = {"capacity": allocatable, "allocatable": allocatable, "conditions": [{"type": "Ready", "status": ready}]}
    client.patch(NodeStatus, name, {"status": status}, patch_type=PatchType.MERGE)


def make_pod(client: Client, name: str, *, limits: dict[str, str] | None = None, **spec: Any) -> None:
    container = {"name": "main", "image": "busybox", "resources": {"limits": limits or {}}}
    body = {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}
    client.create(Pod.from_dict(body))


def node_of(client: Client, name: str) -> str | None:
    return client.get(Pod, name).spec.nodeName


def unschedulable_message(client: Client, name: str) -> str | None:
    for condition in client.get(Pod, name).status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return condition.message
    return None


def events_for(client: Client, pod: str, reason: str) -> list[Event]:
    return [e for e in client.list(Event, namespace="default") if e.involvedObject.name == pod and e.reason == reason]


def test_pod_that_fits_is_bound_with_a_scheduled_event(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(kubeapi_client, "node-a")
    make_pod(kubeapi_client, "web", limits={"cpu": "1", "memory": "1Gi"})

    assert wait_until(lambda: node_of(kubeapi_client, "web"), what="binding") == "node-a"
    pod = kubeapi_client.get(Pod, "web")
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    (event,) = wait_until(lambda: events_for(kubeapi_client, "web", "Scheduled"), what="Scheduled event")
    assert event.type == "Normal"
    assert event.message == "Successfully assigned default/web to node-a"
    assert event.source.component == "default-scheduler"


def test_too_few_gpus_everywhere_is_reported_like_kube_scheduler(
    kubeapi_client: Client, scheduler_default: Scheduler
) -> None:
    for name in ("gpu-1", "gpu-2", "gpu-3"):
        make_node(kubeapi_client, name, resources={"nvidia.com/gpu": "1"})
    make_pod(kubeapi_client, "trainer", limits={"nvidia.com/gpu": "2"})

    message = wait_until(lambda: unschedulable_message(kubeapi_client, "trainer"), what="Unschedulable")
    assert message == (
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. "
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    )
    (event,) = wait_until(lambda: events_for(kubeapi_client, "trainer", "FailedScheduling"), what="event")
    assert (event.type, event.message, event.source.component) == ("Warning", message, "default-scheduler")
    assert (
        event.involvedObject.kind == "Pod"
        and event.involvedObject.uid == kubeapi_client.get(Pod, "trainer").metadata.uid
    )
    assert event.count >= 1 and event.firstTimestamp is not None and event.lastTimestamp is not None
    assert node_of(kubeapi_client, "trainer") is None


def test_every_rejection_reason_is_counted_and_sorted(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(kubeapi_client, "small", resources={"cpu": "1", "memory": "1Gi"})
    make_node(kubeapi_client, "cordoned", unschedulable=True)
    make_node(kubeapi_client, "tainted", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    make_node(kubeapi_client, "other-zone", labels={"zone": "b"})
    make_node(kubeapi_client, "broken", ready="False")
    make_node(kubeapi_client, "full", resources={"pods": "0"})
    make_pod(kubeapi_client, "big", limits={"cpu": "2", "memory": "2Gi"}, nodeSelector={"zone": "a"})
    # nodeSelector rejects "small" and "full" too: node affinity is checked before resources.
    message = wait_until(lambda: unschedulable_message(kubeapi_client, "big"), what="Unschedulable")
    assert message.split(" preemption: ")[0] == (
        "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
        "1 node(s) were unschedulable, 3 node(s) didn't match Pod's node affinity/selector."
    )
    assert message.endswith("preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.")

    tolerant = [{"key": "dedicated", "operator": "Exists"}]
    make_pod(kubeapi_client, "anywhere", limits={"cpu": "2", "memory": "2Gi"}, tolerations=tolerant)
    assert wait_until(lambda: node_of(kubeapi_client, "anywhere")) in ("tainted", "other-zone")


def test_resources_counted_per_kind(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(kubeapi_client, "tiny", resources={"cpu": "1", "memory": "1Gi", "pods": "1", "hugepages-2Mi": "0"})
    make_pod(
        kubeapi_client,
        "needs-all",
        limits={"cpu": "2", "memory": "2Gi", "hugepages-2Mi": "4Mi", "intel.com/sriov": "1"},
    )
    message = wait_until(lambda: unschedulable_message(kubeapi_client, "needs-all"), what="Unschedulable")
    assert message.split(" preemption:")[0] == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient hugepages-2Mi, "
        "1 Insufficient intel.com/sriov, 1 Insufficient memory."
    )
    # An init container needs more cpu than the node has: max(init, sum of containers) counts.
    init = [{"name": "prepare", "image": "busybox", "resources": {"requests": {"cpu": "1500m"}}}]
    make_pod(kubeapi_client, "init-heavy", limits={"cpu": "500m"}, initContainers=init)
    message = wait_until(lambda: unschedulable_message(kubeapi_client, "init-heavy"), what="Unschedulable")
    assert message.startswith("0/1 nodes are available: 1 Insufficient cpu.")


def test_node_selector_and_required_affinity_pick_the_node(
    kubeapi_client: Client, scheduler_default: Scheduler
) -> None:
    make_node(kubeapi_client, "a100", labels={"gpu": "a100", "gen": "8"})
    make_node(kubeapi_client, "v100", labels={"gpu": "v100", "gen": "7"})
    make_node(kubeapi_client, "cpu-only")
    make_pod(kubeapi_client, "by-selector", nodeSelector={"gpu": "v100"})
    newer = {"key": "gen", "operator": "Gt", "values": ["7"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}, newer]}]
            }
        }
    }
    make_pod(kubeapi_client, "by-affinity", affinity=affinity)
    no_gpu = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}  # fmt: skip
    make_pod(kubeapi_client, "no-gpu", affinity=no_gpu)

    assert wait_until(lambda: node_of(kubeapi_client, "by-selector")) == "v100"
    assert wait_until(lambda: node_of(kubeapi_client, "by-affinity")) == "a100"
    assert wait_until(lambda: node_of(kubeapi_client, "no-gpu")) == "cpu-only"


def test_taint_needs_a_matching_toleration(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(
        kubeapi_client, "gpu-node", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    )
    make_pod(kubeapi_client, "plain")
    make_pod(
        kubeapi_client,
        "tolerant",
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
    )
    assert wait_until(lambda: node_of(kubeapi_client, "tolerant")) == "gpu-node"
    message = wait_until(lambda: unschedulable_message(kubeapi_client, "plain"))
    assert message.startswith("0/1 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}.")


def test_pending_pod_is_bound_once_resources_free_up(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(kubeapi_client, "one-gpu", resources={"nvidia.com/gpu": "1"})
    make_pod(kubeapi_client, "first", limits={"nvidia.com/gpu": "1"})
    assert wait_until(lambda: node_of(kubeapi_client, "first")) == "one-gpu"
    make_pod(kubeapi_client, "second", limits={"nvidia.com/gpu": "1"})
    assert wait_until(lambda: unschedulable_message(kubeapi_client, "second")).startswith(
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    )
    # The first pod completes: a terminal pod holds no resources.
    kubeapi_client.patch(PodStatus, "first", {"status": {"phase": "Succeeded"}}, patch_type=PatchType.MERGE)
    assert wait_until(lambda: node_of(kubeapi_client, "second"), what="second bound") == "one-gpu"


def test_pending_pod_is_bound_when_a_node_appears(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_pod(kubeapi_client, "early")
    assert wait_until(lambda: unschedulable_message(kubeapi_client, "early")) == "no nodes available to schedule pods"
    make_node(kubeapi_client, "late")
    assert wait_until(lambda: node_of(kubeapi_client, "early")) == "late"


def test_pods_spread_over_the_least_allocated_nodes(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    for name in ("n1", "n2", "n3"):
        make_node(kubeapi_client, name)
    for i in range(6):
        make_pod(kubeapi_client, f"p{i}", limits={"cpu": "500m", "memory": "512Mi"})
    placed = [wait_until(lambda i=i: node_of(kubeapi_client, f"p{i}")) for i in range(6)]
    assert sorted(placed) == ["n1", "n1", "n2", "n2", "n3", "n3"]


def test_scheduling_gates_and_other_schedulers_are_left_alone(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, scheduler_default: Scheduler
) -> None:
    make_node(kubeapi_client, "node-a")
    make_pod(kubeapi_client, "gated", schedulingGates=[{"name": "example.com/wait"}])
    make_pod(kubeapi_client, "volcano-pod", schedulerName="volcano")
    make_pod(kubeapi_client, "canary")
    assert wait_until(lambda: node_of(kubeapi_client, "canary")) == "node-a"
    time.sleep(0.5)  # several retry intervals
    assert node_of(kubeapi_client, "gated") is None and node_of(kubeapi_client, "volcano-pod") is None

    kubeapi_client.patch(Pod, "gated", {"spec": {"schedulingGates": None}}, patch_type=PatchType.MERGE)
    assert wait_until(lambda: node_of(kubeapi_client, "gated")) == "node-a"
    with Scheduler(kubeconfig=KubeConfig.from_dict(kubeapi_server.kubeconfig()), name="volcano"):
        assert wait_until(lambda: node_of(kubeapi_client, "volcano-pod")) == "node-a"


@pytest.mark.timeout(60)
def test_scheduler_cli_binds_and_stops_on_sigterm(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import sys

    kubeconfig = tmp_path / "kubeconfig"
    kubeapi_server.write_kubeconfig(kubeconfig)
    make_node(kubeapi_client, "node-a")
    process = subprocess.Popen(
        [sys.executable, "-m", "testenv.scheduler", "--kubeconfig", str(kubeconfig), "--retry-interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        make_pod(kubeapi_client, "via-cli")
        assert wait_until(lambda: node_of(kubeapi_client, "via-cli"), timeout=20) == "node-a"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output.decode()


def test_host_ports_keep_two_slurmd_pods_off_one_node(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    """With host_network the bridge gives slurmd a hostPort: two on one node would collide."""
    make_node(kubeapi_client, "only")
    ports = [{"containerPort": 6818, "hostPort": 6818}]
    for name in ("slurmd-1", "slurmd-2"):
        pod = {"metadata": {"name": name}, "spec": {"containers": [{"name": "slurmd", "image": "x", "ports": ports}]}}
        kubeapi_client.create(Pod.from_dict(pod))
    assert wait_until(lambda: node_of(kubeapi_client, "slurmd-1")) == "only"
    assert wait_until(lambda: unschedulable_message(kubeapi_client, "slurmd-2")).startswith(
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    )


def test_topology_spread_constraint_spreads_over_zones(kubeapi_client: Client, scheduler_default: Scheduler) -> None:
    make_node(kubeapi_client, "a-1", labels={"zone": "a"})
    make_node(kubeapi_client, "a-2", labels={"zone": "a"})
    make_node(kubeapi_client, "b-1", labels={"zone": "b"})
    make_node(kubeapi_client, "no-zone")
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "slurmd"}},
        }
    ]
    zones = []
    for i in range(4):
        body = {
            "metadata": {"name": f"w{i}", "labels": {"app": "slurmd"}},
            "spec": {"containers": [{"name": "c", "image": "x"}], "topologySpreadConstraints": spread},
        }
        kubeapi_client.create(Pod.from_dict(body))
        node = wait_until(lambda i=i: node_of(kubeapi_client, f"w{i}"))
        zones.append({"a-1": "a", "a-2": "a", "b-1": "b"}.get(node, node))
    assert sorted(zones) == ["a", "a", "b", "b"]  # never "no-zone": it has no zone label


def test_pod_anti_affinity_keeps_pods_apart_and_affinity_together(
    kubeapi_client: Client, scheduler_default: Scheduler
) -> None:
    make_node(kubeapi_client, "host-1", labels={"kubernetes.io/hostname": "host-1"})
    make_node(kubeapi_client, "host-2", labels={"kubernetes.io/hostname": "host-2"})
    apart = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "slurmd"}}}
            ]
        }
    }
    together = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "slurmd"}}}
            ]
        }
    }

    def create(name: str, affinity: dict, app: str) -> None:
        spec = {"containers": [{"name": "c", "image": "x"}], "affinity": affinity}
        kubeapi_client.create(Pod.from_dict({"metadata": {"name": name, "labels": {"app": app}}, "spec": spec}))

    create("s1", apart, "slurmd")
    first = wait_until(lambda: node_of(kubeapi_client, "s1"))
    create("s2", apart, "slurmd")
    assert wait_until(lambda: node_of(kubeapi_client, "s2")) not in (None, first)
    create("s3", apart, "slurmd")
    message = wait_until(lambda: unschedulable_message(kubeapi_client, "s3"))
    assert message.startswith("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
    create("helper", together, "helper")  # must share a host with a slurmd pod: either will do
    assert wait_until(lambda: node_of(kubeapi_client, "helper")) in ("host-1", "host-2")


# --- gangs: Volcano and coscheduling PodGroups ----------------------------------------------------

CRDS = Path(__file__).resolve().parents[2] / "testenv" / "crds"
VOLCANO_PG = create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups")
COSCHEDULING_PG = create_namespaced_resource("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups")


@pytest.fixture
def scheduler_gangs(kubeapi_server: KubeApiServer, kubeapi_client: Client) -> Iterator[Scheduler]:
    """The scheduler answering to volcano and scheduler-plugins-scheduler too, with both PodGroup CRDs."""
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in codecs.load_all_yaml(path.read_text()):
            kubeapi_client.create(crd)
    gangs = {"volcano": "volcano", "scheduler-plugins-scheduler": "coscheduling"}
    config = KubeConfig.from_dict(kubeapi_server.kubeconfig())
    with Scheduler(kubeconfig=config, gangs=gangs, retry_interval=0.2) as running:
        yield running


def make_gang_pod(client: Client, name: str, group: str, kind: str, *, gpus: int = 1) -> None:
    meta: dict[str, Any] = {"name": name}
    if kind == "volcano":
        meta["annotations"] = {"scheduling.k8s.io/group-name": group}
    else:
        meta["labels"] = {"scheduling.x-k8s.io/pod-group": group}
    container = {"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    scheduler = "volcano" if kind == "volcano" else "scheduler-plugins-scheduler"
    client.create(Pod.from_dict({"metadata": meta, "spec": {"containers": [container], "schedulerName": scheduler}}))


def scheduled_condition(client: Client, name: str) -> tuple[str, str] | None:
    for condition in client.get(Pod, name).status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return condition.reason, condition.message
    return None


def group_status(client: Client, resource: Any, name: str) -> dict[str, Any]:
    return client.get(resource, name).to_dict().get("status") or {}


def test_volcano_gang_waits_for_min_member_pods_then_binds_them_together(
    kubeapi_client: Client, scheduler_gangs: Scheduler
) -> None:
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        make_node(kubeapi_client, name, resources={"nvidia.com/gpu": "1"})
    kubeapi_client.create(VOLCANO_PG.from_dict({"metadata": {"name": "job-7"}, "spec": {"minMember": 3}}))
    make_gang_pod(kubeapi_client, "job-7-0", "job-7", "volcano")
    make_gang_pod(kubeapi_client, "job-7-1", "job-7", "volcano")
    status = wait_until(lambda: group_status(kubeapi_client, VOLCANO_PG, "job-7").get("phase"), what="PodGroup phase")
    assert status == "Pending"
    (condition,) = group_status(kubeapi_client, VOLCANO_PG, "job-7")["conditions"]
    assert (condition["type"], condition["reason"]) == ("Unschedulable", "NotEnoughTasks")
    assert condition["message"] == "Not enough valid tasks for gang-scheduling, valid: 2, min: 3"
    time.sleep(0.5)  # several retry intervals: Volcano waits for the third pod without a word
    assert [node_of(kubeapi_client, p) for p in ("job-7-0", "job-7-1")] == [None, None]
    assert scheduled_condition(kubeapi_client, "job-7-0") is None

    make_gang_pod(kubeapi_client, "job-7-2", "job-7", "volcano")
    gang = ("job-7-0", "job-7-1", "job-7-2")
    nodes = [wait_until(lambda p=p: node_of(kubeapi_client, p), what=f"{p} bound") for p in gang]
    assert sorted(nodes) == ["gpu-a", "gpu-b", "gpu-c"]
    assert wait_until(lambda: group_status(kubeapi_client, VOLCANO_PG, "job-7").get("phase") == "Running")
    (event,) = wait_until(lambda: events_for(kubeapi_client, "job-7-2", "Scheduled"))
    assert event.source.component == "volcano"


def test_volcano_gang_that_cannot_fit_holds_nothing_and_says_why(
    kubeapi_client: Client, scheduler_gangs: Scheduler
) -> None:
    make_node(kubeapi_client, "gpu-a", resources={"nvidia.com/gpu": "1"})
    make_node(kubeapi_client, "gpu-b", resources={"nvidia.com/gpu": "1"})
    kubeapi_client.create(VOLCANO_PG.from_dict({"metadata": {"name": "job-8"}, "spec": {"minMember": 3}}))
    for i in range(3):
        make_gang_pod(kubeapi_client, f"job-8-{i}", "job-8", "volcano")

    fit_error = "0/2 nodes are unavailable: 2 Insufficient nvidia.com/gpu."  # Volcano's words, not kube-scheduler's
    assert wait_until(lambda: scheduled_condition(kubeapi_client, "job-8-2")) == ("Unschedulable", fit_error)
    assert scheduled_condition(kubeapi_client, "job-8-0") == (
        "Schedulable", "Pod default/job-8-0 can possibly be assigned to gpu-a, once minAvailable is satisfied")
    assert scheduled_condition(kubeapi_client, "job-8-1")[0] == "Schedulable"
    assert all(node_of(kubeapi_client, f"job-8-{i}") is None for i in range(3))
    status = wait_until(lambda: (s := group_status(kubeapi_client, VOLCANO_PG, "job-8"))["phase"] == "Inqueue" and s)
    (condition,) = status["conditions"]
    assert (condition["type"], condition["reason"]) == ("Unschedulable", "NotEnoughResources")
    assert condition["message"] == (
        "1/3 tasks in gang unschedulable: pod group is not ready, 3 Pending, 3 minAvailable; "
        f"Pending: 1 Unschedulable, 2 Schedulable. Origin reason is job-8-2: {fit_error}")
    # Nothing of the gang is held: an ordinary pod takes a GPU at once.
    make_pod(kubeapi_client, "solo", limits={"nvidia.com/gpu": "1"})
    assert wait_until(lambda: node_of(kubeapi_client, "solo")) == "gpu-a"


def test_volcano_gang_is_bound_once_capacity_appears(kubeapi_client: Client, scheduler_gangs: Scheduler) -> None:
    make_node(kubeapi_client, "gpu-a", resources={"nvidia.com/gpu": "2"})
    kubeapi_client.create(VOLCANO_PG.from_dict({"metadata": {"name": "job-9"}, "spec": {"minMember": 3}}))
    for i in range(3):
        make_gang_pod(kubeapi_client, f"job-9-{i}", "job-9", "volcano")
    wait_until(lambda: scheduled_condition(kubeapi_client, "job-9-2"), what="Unschedulable")
    make_node(kubeapi_client, "gpu-b", resources={"nvidia.com/gpu": "1"})
    placed = [wait_until(lambda i=i: node_of(kubeapi_client, f"job-9-{i}")) for i in range(3)]
    assert sorted(placed) == ["gpu-a", "gpu-a", "gpu-b"]


def test_coscheduling_gang_refuses_pods_until_siblings_exist_and_rejects_a_group_that_cannot_fit(
    kubeapi_client: Client, scheduler_gangs: Scheduler
) -> None:
    make_node(kubeapi_client, "gpu-a", resources={"nvidia.com/gpu": "1"})
    make_node(kubeapi_client, "gpu-b", resources={"nvidia.com/gpu": "1"})
    kubeapi_client.create(COSCHEDULING_PG.from_dict({"metadata": {"name": "job-3"}, "spec": {"minMember": 3}}))
    make_gang_pod(kubeapi_client, "job-3-0", "job-3", "coscheduling")
    reason, message = wait_until(lambda: scheduled_condition(kubeapi_client, "job-3-0"), what="PreFilter")
    assert reason == "Unschedulable"
    assert message == (
        "0/2 nodes are available: pre-filter pod job-3-0 cannot find enough sibling pods, current pods number: 1, "
        "minMember of group: 3. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling., "
        "PodGroup default/job-3 gets rejected due to Pod job-3-0 is unschedulable even after PostFilter")
    assert group_status(kubeapi_client, COSCHEDULING_PG, "job-3")["phase"] == "Pending"

    make_gang_pod(kubeapi_client, "job-3-1", "job-3", "coscheduling")
    make_gang_pod(kubeapi_client, "job-3-2", "job-3", "coscheduling")
    no_fit = wait_until(lambda: (c := scheduled_condition(kubeapi_client, "job-3-2")) and "sibling" not in c[1] and c)
    assert no_fit == (
        "Unschedulable",
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod., "
        "PodGroup default/job-3 gets rejected due to Pod job-3-2 is unschedulable even after PostFilter")
    # Its siblings' rejection reaches job-3-0 after job-3-2's own condition: wait for the change.
    assert wait_until(lambda: (c := scheduled_condition(kubeapi_client, "job-3-0")) and "sibling" not in c[1] and c) == (
        "Unschedulable", "optimistic rejection in PostFilter")
    assert all(node_of(kubeapi_client, f"job-3-{i}") is None for i in range(3))
    assert wait_until(lambda: group_status(kubeapi_client, COSCHEDULING_PG, "job-3")["phase"] == "Scheduling")


def test_coscheduling_group_phase_follows_its_pods(kubeapi_client: Client, scheduler_gangs: Scheduler) -> None:
    make_node(kubeapi_client, "gpu-a", resources={"nvidia.com/gpu": "2"})
    kubeapi_client.create(COSCHEDULING_PG.from_dict({"metadata": {"name": "job-4"}, "spec": {"minMember": 2}}))
    make_gang_pod(kubeapi_client, "job-4-0", "job-4", "coscheduling")
    make_gang_pod(kubeapi_client, "job-4-1", "job-4", "coscheduling")
    assert [wait_until(lambda i=i: node_of(kubeapi_client, f"job-4-{i}")) for i in range(2)] == ["gpu-a", "gpu-a"]
    assert wait_until(lambda: group_status(kubeapi_client, COSCHEDULING_PG, "job-4")["phase"] == "Scheduling")
    for i in range(2):  # what the kubelet would report
        kubeapi_client.patch(PodStatus, f"job-4-{i}", {"status": {"phase": "Running"}}, patch_type=PatchType.MERGE)
    assert wait_until(lambda: group_status(kubeapi_client, COSCHEDULING_PG, "job-4") == {
        "phase": "Running", "running": 2, "succeeded": 0, "failed": 0})


def test_gang_pods_without_their_pod_group(kubeapi_client: Client, scheduler_gangs: Scheduler) -> None:
    """Volcano leaves pods whose PodGroup is missing alone; coscheduling's Permit refuses them."""
    make_node(kubeapi_client, "gpu-a", resources={"nvidia.com/gpu": "2"})
    make_gang_pod(kubeapi_client, "orphan-v", "nowhere", "volcano")
    make_gang_pod(kubeapi_client, "orphan-c", "nowhere", "coscheduling")
    refused = wait_until(lambda: scheduled_condition(kubeapi_client, "orphan-c"))
    assert refused == ("Unschedulable", "PodGroup not found")
    assert node_of(kubeapi_client, "orphan-v") is None and scheduled_condition(kubeapi_client, "orphan-v") is None
    kubeapi_client.create(VOLCANO_PG.from_dict({"metadata": {"name": "nowhere"}, "spec": {"minMember": 1}}))
    assert wait_until(lambda: node_of(kubeapi_client, "orphan-v")) == "gpu-a"
