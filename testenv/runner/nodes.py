"""The runner's virtual nodes: NODES.yaml, their Node objects, heartbeats, and what happens at stop.

NODES.yaml:

    nodes:
      - name: gpu-1
        capacity: {cpu: 8, memory: 32Gi, pods: 110, nvidia.com/gpu: 8}
        allocatable: {cpu: 7500m}          # optional: per resource, defaults to capacity
        labels: {nvidia.com/gpu.product: A100}
        taints:
          - {key: nvidia.com/gpu, value: present, effect: NoSchedule}

cpu and memory default to this machine's, pods to 110 (the kubelet's default).
"""

from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightkube.models.core_v1 import NodeSpec as ApiNodeSpec
from lightkube.models.core_v1 import Taint
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from .config import ConfigError, expect_mapping, expect_str_map
from .kube import API_ERRORS, Api, status_code, timestamp

HOST_IP = "127.0.0.1"
KUBELET_VERSION = "v1.30.0-testenv"
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    capacity: dict[str, str]
    allocatable: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


def _host_memory() -> str:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{line.split()[1]}Ki"
    return "4Gi"


def _taint(source: str, where: str, value: Any) -> dict[str, str]:
    taint = expect_str_map(source, where, value)
    if "key" not in taint or taint.get("effect") not in TAINT_EFFECTS:
        raise ConfigError(source, where, f"a taint with a key and an effect in {TAINT_EFFECTS}")
    return taint


def node_spec(source: str, where: str, entry: Any) -> NodeSpec:
    entry = expect_mapping(source, where, entry)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(source, f"{where}.name", "a node name")
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": _host_memory(), "pods": "110"}
    capacity.update(expect_str_map(source, f"{where}.capacity", entry.get("capacity", {})))
    allocatable = {**capacity, **expect_str_map(source, f"{where}.allocatable", entry.get("allocatable", {}))}
    taints = entry.get("taints", [])
    if not isinstance(taints, list):
        raise ConfigError(source, f"{where}.taints", "a list of taints")
    return NodeSpec(
        name=name,
        capacity=capacity,
        allocatable=allocatable,
        labels=expect_str_map(source, f"{where}.labels", entry.get("labels", {})),
        taints=tuple(_taint(source, f"{where}.taints[{i}]", t) for i, t in enumerate(taints)),
    )


def load_nodes(path: Path) -> list[NodeSpec]:
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(source, "", f"a readable YAML file ({e})") from e
    entries = expect_mapping(source, "", document).get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(source, "nodes", "a non-empty list of nodes")
    nodes = [node_spec(source, f"nodes[{i}]", entry) for i, entry in enumerate(entries)]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(source, "nodes", "unique node names")
    return nodes


def _labels(spec: NodeSpec) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
        **spec.labels,
    }


def _ready(status: str, reason: str, message: str, since: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": timestamp(),
        "lastTransitionTime": since,
    }


def _pressure(kind: str, reason: str, message: str, since: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": timestamp(),
        "lastTransitionTime": since,
    }


class VirtualNode:
    """One node of NODES.yaml as the API sees it."""

    def __init__(self, spec: NodeSpec, api: Api, *, runtime_version: str, kubelet_port: int = 0) -> None:
        self.spec = spec
        self._api = api
        self._runtime_version = runtime_version
        self._kubelet_port = kubelet_port  # where the API server reads container logs (logs.py)
        self._since = timestamp()

    @property
    def name(self) -> str:
        return self.spec.name

    async def register(self) -> None:
        """Create the Node (or take over an existing one) and post a Ready status."""
        node = Node(
            metadata=ObjectMeta(name=self.name, labels=_labels(self.spec)),
            spec=ApiNodeSpec(taints=[Taint(**t) for t in self.spec.taints] or None),
        )
        try:
            await self._api.client.create(node)
        except API_ERRORS as e:
            if status_code(e) != 409:
                raise
            patch = {"metadata": {"labels": _labels(self.spec)}, "spec": {"taints": list(self.spec.taints) or None}}
            await self._api.client.patch(Node, self.name, patch, patch_type=PatchType.MERGE)
        self._since = timestamp()
        await self._api.patch_node_status(name=self.name, status=self._status())

    async def heartbeat(self) -> None:
        await self._api.patch_node_status(name=self.name, status={"conditions": self._conditions()})

    async def mark_unreachable(self) -> None:
        """What the node-lifecycle controller does when a kubelet stops posting its status."""
        conditions = self._conditions()
        conditions[-1] = _ready("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", timestamp())
        await self._api.patch_node_status(name=self.name, status={"conditions": conditions})
        taints = [*self.spec.taints, UNREACHABLE]
        await self._api.client.patch(Node, self.name, {"spec": {"taints": taints}}, patch_type=PatchType.MERGE)

    async def delete(self) -> None:
        try:
            await self._api.client.delete(Node, self.name)
        except API_ERRORS as e:
            if status_code(e) != 404:
                raise

    def _conditions(self) -> list[dict[str, Any]]:
        since = self._since
        return [
            _pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", since),
            _pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", since),
            _pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available", since),
            _ready("True", "KubeletReady", "kubelet is posting ready status", since),
        ]

    def _status(self) -> dict[str, Any]:
        uname = platform.uname()
        return {
            "capacity": self.spec.capacity,
            "allocatable": self.spec.allocatable,
            "conditions": self._conditions(),
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._kubelet_port}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
                "bootID": _boot_id(),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": self._runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": _labels(self.spec)["kubernetes.io/arch"],
            },
        }


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"
