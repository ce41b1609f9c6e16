"""The node filters of kube-scheduler's default profile that matter here, in its order.

Each filter returns why the node cannot take the pod (empty: it can). As upstream, a node is
reported with the reasons of the first filter that rejects it, and the reasons' wording is
upstream's, since users read them in `kubectl describe pod` and search for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lightkube.models.core_v1 import NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration
from lightkube.models.meta_v1 import LabelSelector, LabelSelectorRequirement
from lightkube.resources.core_v1 import Node, Pod

from .resources import PODS, insufficient, pod_requests
from .snapshot import NodeInfo

UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
PORTS_TAKEN = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"

# Without a node-lifecycle controller nobody taints a node that is not Ready: these stand in for
# the taints it would add, so the scheduler skips such nodes with upstream's message.
NOT_READY_TAINT = Taint(key="node.kubernetes.io/not-ready", effect="NoSchedule")
UNREACHABLE_TAINT = Taint(key="node.kubernetes.io/unreachable", effect="NoSchedule")
UNSCHEDULABLE_TAINT = Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")


@dataclass(frozen=True)
class Rejection:
    reasons: tuple[str, ...]
    #: True when evicting other pods could not help (everything but resources), as upstream's
    #: UnschedulableAndUnresolvable status; it decides the preemption half of the message.
    unresolvable: bool


Filter = Callable[[Pod, NodeInfo, Mapping[str, NodeInfo]], "Rejection | None"]
"""(pod, the node's info, every node's info) -> why the node cannot take the pod, or None."""


def node_unschedulable(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    if info.node.spec and info.node.spec.unschedulable and not tolerates(pod, UNSCHEDULABLE_TAINT):
        return Rejection((UNSCHEDULABLE,), unresolvable=True)
    return None


def taint_toleration(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    for taint in node_taints(info.node):
        if taint.effect in ("NoSchedule", "NoExecute") and not tolerates(pod, taint):
            return Rejection((f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}",), True)
    return None


def node_affinity(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    if matches_node_selector(pod, info.node):
        return None
    return Rejection((AFFINITY_MISMATCH,), unresolvable=True)


def node_ports(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    wanted = host_ports(pod)
    if wanted and any(_ports_clash(wanted, host_ports(other)) for other in info.pods):
        return Rejection((PORTS_TAKEN,), unresolvable=False)
    return None


def host_ports(pod: Pod) -> set[tuple[str, str, int]]:
    """(host IP, protocol, port) of every hostPort the pod's containers (and sidecars) ask for."""
    containers = [*pod.spec.containers, *(c for c in pod.spec.initContainers or [] if c.restartPolicy == "Always")]
    return {
        (port.hostIP or "0.0.0.0", port.protocol or "TCP", port.hostPort)
        for container in containers
        for port in container.ports or []
        if port.hostPort
    }


def _ports_clash(wanted: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    for ip, protocol, port in wanted:
        for other_ip, other_protocol, other_port in used:
            if (protocol, port) == (other_protocol, other_port) and (ip == other_ip or "0.0.0.0" in (ip, other_ip)):
                return True
    return False


def resources_fit(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    free = info.free()
    reasons = []
    if free.get(PODS, 0) < 1:
        reasons.append(TOO_MANY_PODS)
    reasons += [f"Insufficient {name}" for name in insufficient(pod_requests(pod.spec), free) if name != PODS]
    return Rejection(tuple(reasons), unresolvable=False) if reasons else None


def first_rejection(
    pod: Pod, info: NodeInfo, cluster: Mapping[str, NodeInfo], filters: Sequence[Filter]
) -> Rejection | None:
    for check in filters:
        rejection = check(pod, info, cluster)
        if rejection is not None:
            return rejection
    return None


def node_taints(node: Node) -> list[Taint]:
    taints = list(node.spec.taints or []) if node.spec else []
    ready = _ready_status(node)
    if ready == "False":
        taints.append(NOT_READY_TAINT)
    elif ready != "True":
        taints.append(UNREACHABLE_TAINT)
    return taints


def _ready_status(node: Node) -> str:
    for condition in (node.status.conditions or []) if node.status else []:
        if condition.type == "Ready":
            return condition.status
    return "Unknown"


def tolerates(pod: Pod, taint: Taint) -> bool:
    return any(_tolerates(t, taint) for t in pod.spec.tolerations or [])


def _tolerates(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    if toleration.operator in (None, "", "Equal"):
        return (toleration.value or "") == (taint.value or "")
    return False


def matches_node_selector(pod: Pod, node: Node) -> bool:
    labels = node.metadata.labels or {}
    if any(labels.get(key) != value for key, value in (pod.spec.nodeSelector or {}).items()):
        return False
    affinity = pod.spec.affinity
    required = (
        affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
        if (affinity and affinity.nodeAffinity)
        else None
    )
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.nodeSelectorTerms or [])


def _term_matches(term: NodeSelectorTerm, node: Node) -> bool:
    expressions = term.matchExpressions or []
    fields = term.matchFields or []
    if not expressions and not fields:  # an empty term selects no node
        return False
    labels = node.metadata.labels or {}
    field_values = {"metadata.name": node.metadata.name}
    return all(_requirement_matches(r, labels) for r in expressions) and all(
        _requirement_matches(r, field_values) for r in fields
    )


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: None selects nothing, an empty one everything."""
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.matchLabels or {}).items()):
        return False
    return all(_requirement_matches(r, labels) for r in selector.matchExpressions or [])


def _requirement_matches(
    requirement: NodeSelectorRequirement | LabelSelectorRequirement, values: Mapping[str, str]
) -> bool:
    op, key, wanted = requirement.operator, requirement.key, requirement.values or []
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False
