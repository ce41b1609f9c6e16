"""What each node has left: allocatable minus the requests of the pods bound (or assumed) to it.

A snapshot is built once per scheduling cycle from the informers' copies of nodes and pods plus
the bindings this scheduler made that the pod watch has not shown yet ("assumed" pods, as in
kube-scheduler's cache), so two pods scheduled back to back never both take the last GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lightkube.resources.core_v1 import Node, Pod

from .resources import (
    CPU,
    MEMORY,
    PODS,
    Resources,
    add,
    amounts,
    pod_nonzero_requests,
    pod_requests,
)

TERMINAL_PHASES = ("Succeeded", "Failed")


def is_terminal(pod: Pod) -> bool:
    return pod.status is not None and pod.status.phase in TERMINAL_PHASES


@dataclass
class NodeInfo:
    node: Node
    allocatable: Resources
    requested: Resources = field(default_factory=dict)
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pods: list[Pod] = field(default_factory=list)  # bound or assumed here, not terminal

    @property
    def name(self) -> str:
        return self.node.metadata.name

    @property
    def labels(self) -> dict[str, str]:
        return self.node.metadata.labels or {}

    @property
    def pod_count(self) -> int:
        return len(self.pods)

    def free(self) -> Resources:
        free = {name: value - self.requested.get(name, 0) for name, value in self.allocatable.items()}
        free[PODS] = self.allocatable.get(PODS, 0) - self.pod_count
        return free

    def assume(self, pod: Pod) -> None:
        """Count the pod's requests against this node."""
        add(self.requested, pod_requests(pod.spec))
        cpu, memory = pod_nonzero_requests(pod.spec)
        self.nonzero_cpu += cpu
        self.nonzero_memory += memory
        self.pods.append(pod)

    def forget(self, pod: Pod) -> None:
        """Undo assume()."""
        for name, value in pod_requests(pod.spec).items():
            self.requested[name] -= value
        cpu, memory = pod_nonzero_requests(pod.spec)
        self.nonzero_cpu -= cpu
        self.nonzero_memory -= memory
        self.pods.remove(pod)


def node_allocatable(node: Node) -> Resources:
    status = node.status
    if status is None:
        return {}
    return amounts(status.allocatable or status.capacity)


def build(nodes: Iterable[Node], pods: Iterable[Pod], assumed: Mapping[str, str]) -> dict[str, NodeInfo]:
    """NodeInfos by node name; `assumed` maps pod uid to the node this scheduler bound it to."""
    infos = {node.metadata.name: NodeInfo(node, node_allocatable(node)) for node in nodes}
    for pod in pods:
        node_name = (pod.spec.nodeName if pod.spec else None) or assumed.get(pod.metadata.uid)
        info = infos.get(node_name) if node_name else None
        if info is not None and not is_terminal(pod):
            info.assume(pod)
    return infos


def least_allocated_score(info: NodeInfo, pod: Pod) -> float:
    """kube-scheduler's default score: the mean free share of cpu and memory after placing the pod."""
    cpu, memory = pod_nonzero_requests(pod.spec)
    scores = []
    for capacity, used in (
        (info.allocatable.get(CPU, 0), info.nonzero_cpu + cpu),
        (info.allocatable.get(MEMORY, 0), info.nonzero_memory + memory),
    ):
        scores.append(0.0 if capacity <= 0 or used > capacity else (capacity - used) * 100 / capacity)
    return sum(scores) / len(scores)
