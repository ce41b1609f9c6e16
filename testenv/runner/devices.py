"""Devices behind extended resources, handed out as the kubelet's device manager and a device
plugin (NVIDIA's, AMD's) would: specific devices per container, never one device to two pods.

A virtual node advertising ``nvidia.com/gpu: 2`` has two GPUs, with stable fake UUIDs and minor
numbers 0 and 1. When a pod is admitted on the node, each container gets the lowest free devices
for its limits (devices an init container had are reused by the containers after it, as the
kubelet does); they go back to the node when the pod's containers have all stopped. A pod that
asks for more than is free is rejected at admission (phase Failed, UnexpectedAdmissionError),
as the kubelet rejects it.

What a container sees, with the process runtime: containers share this host's filesystem and the
host has no GPUs, so a container granted devices gets a private ``/dev`` (a tmpfs over /dev in its
own mount namespace, see nsinit.py) holding what runc puts there (null, zero, full, random,
urandom, tty, pts, shm, the fd links) and a character device node made with mknod for each of its
devices: ``/dev/nvidia<minor>`` (major 195) plus ``/dev/nvidiactl`` for NVIDIA GPUs, what
nvidia-container-runtime injects; ``/dev/dri/renderD<128+i>`` (major 226) plus ``/dev/kfd`` for
AMD. ``NVIDIA_VISIBLE_DEVICES`` lists the devices' IDs, as the NVIDIA plugin's default ``envvar``
strategy sets it. The nodes have no driver behind them, but ``stat`` shows what slurmd reads for
gres.conf's ``File=``. A private /dev rather than a device directory somewhere else: the image sees
what it would see on a GPU node, so the slurmd entrypoint (default ``SLURMD_DEV_DIR=/dev``) and
the documented gres.conf (``File=/dev/slurm-gpu[0-N]``) work unchanged, and the links the
entrypoint makes stay inside the pod. Containers without devices keep the host's /dev.

Supported: ``nvidia.com/gpu`` (whole GPUs), ``nvidia.com/gpu.shared`` (time-slicing: replicas of a
GPU share its device; replicas per GPU from the node label ``nvidia.com/gpu.replicas``),
``nvidia.com/mig-<profile>`` (a slice shows its parent GPU's node and a ``/dev/nvidia-caps`` node),
``amd.com/gpu``. Any other extended resource (an RDMA or SR-IOV pool) is counted and allocated the
same way, with no device node.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from lightkube.models.core_v1 import Container
from lightkube.resources.core_v1 import Pod

from .runtime import Device

NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
NVIDIA_CAPS_MAJOR = 237  # dynamic on a real host; any number does for a fake node
DRI_MAJOR = 226
KFD_MAJOR = 238


class AdmissionError(Exception):
    """The node cannot give the pod what it asks for: the kubelet rejects the pod."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Grant:
    """One container's share: the device nodes to make and the variables the plugin sets."""

    devices: tuple[Device, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


NO_GRANT = Grant()


@dataclass
class PodDevices:
    """The devices of one admitted pod, by container name (resource -> device indices)."""

    by_container: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def indices(self) -> dict[str, set[int]]:
        held: dict[str, set[int]] = {}
        for resources in self.by_container.values():
            for resource, taken in resources.items():
                held.setdefault(resource, set()).update(taken)
        return held


def is_device_resource(name: str) -> bool:
    """Extended resources (a domain outside kubernetes.io), which device plugins serve."""
    domain = name.split("/", 1)[0] if "/" in name else ""
    return bool(domain) and domain != "kubernetes.io" and not domain.endswith(".kubernetes.io")


class NodeDevices:
    """The devices of one virtual node and who holds them."""

    def __init__(self, node: str, allocatable: Mapping[str, str], labels: Mapping[str, str] | None = None) -> None:
        self.node = node
        self._counts = {name: int(value) for name, value in allocatable.items() if is_device_resource(name)}
        self._labels = dict(labels or {})
        self._pods: dict[str, PodDevices] = {}  # by pod uid

    def admit(self, pod: Pod) -> PodDevices:
        """Allocate every container's devices; raises AdmissionError (nothing allocated then)."""
        free = self._free()
        granted = PodDevices()
        reusable: dict[str, list[int]] = {}
        for container in pod.spec.initContainers or []:
            taken = self._take(container, free, reusable, reuse=True)
            granted.by_container[container.name] = taken
            if container.restartPolicy != "Always":  # a sidecar keeps its devices
                for resource, indices in taken.items():
                    reusable[resource] = sorted({*reusable.get(resource, []), *indices})
        for container in pod.spec.containers:
            granted.by_container[container.name] = self._take(container, free, reusable, reuse=False)
        self._pods[pod.metadata.uid] = granted
        return granted

    def release(self, uid: str) -> None:
        self._pods.pop(uid, None)

    def grant(self, devices: PodDevices, container: str) -> Grant:
        """What the container gets from the plugins for its devices."""
        nodes: list[Device] = []
        visible: list[str] = []
        for resource, indices in sorted(devices.by_container.get(container, {}).items()):
            for index in indices:
                nodes += self._device_nodes(resource, index)
                if resource.startswith("nvidia.com/gpu") or resource.startswith("nvidia.com/mig-"):
                    visible.append(self._nvidia_id(resource, index))
        if any(d.container_path.startswith("/dev/nvidia") for d in nodes):
            nodes.append(Device("/dev/nvidiactl", NVIDIA_MAJOR, NVIDIACTL_MINOR))
        if any(d.container_path.startswith("/dev/dri/") for d in nodes):
            nodes.append(Device("/dev/kfd", KFD_MAJOR, 0))
        env = (("NVIDIA_VISIBLE_DEVICES", ",".join(dict.fromkeys(visible))),) if visible else ()
        return Grant(tuple(dict.fromkeys(nodes)), env)

    # --- allocation ------------------------------------------------------------------------------

    def _free(self) -> dict[str, list[int]]:
        held: dict[str, set[int]] = {}
        for pod in self._pods.values():
            for resource, indices in pod.indices().items():
                held.setdefault(resource, set()).update(indices)
        return {name: [i for i in range(count) if i not in held.get(name, set())]
                for name, count in self._counts.items()}

    def _take(self, container: Container, free: dict[str, list[int]], reusable: dict[str, list[int]],
              *, reuse: bool) -> dict[str, list[int]]:
        taken: dict[str, list[int]] = {}
        for resource, wanted in _device_requests(container).items():
            if resource not in self._counts:
                raise AdmissionError(
                    f"OutOf{resource}",
                    f"Node didn't have enough resource: {resource}, requested: {wanted}, used: 0, capacity: 0")
            pool = reusable.get(resource, [])
            chosen = pool[:wanted]
            if not reuse:  # an app container keeps what it takes from an init container
                reusable[resource] = pool[len(chosen):]
            rest = wanted - len(chosen)
            if rest > len(free.get(resource, [])):
                available = len(free.get(resource, [])) + len(chosen)
                raise AdmissionError(
                    "UnexpectedAdmissionError",
                    f"Allocate failed due to requested number of devices unavailable for {resource}. "
                    f"Requested: {wanted}, Available: {available}, which is unexpected")
            chosen += free[resource][:rest]
            free[resource] = free[resource][rest:]
            taken[resource] = sorted(chosen)
        return taken

    # --- what a device looks like -----------------------------------------------------------------

    def _device_nodes(self, resource: str, index: int) -> list[Device]:
        if resource == "nvidia.com/gpu":
            return [Device(f"/dev/nvidia{index}", NVIDIA_MAJOR, index)]
        if resource == "nvidia.com/gpu.shared":
            gpu = index // self._replicas()
            return [Device(f"/dev/nvidia{gpu}", NVIDIA_MAJOR, gpu)]
        if resource.startswith("nvidia.com/mig-"):
            parent = self._mig_parent(resource, index)
            return [Device(f"/dev/nvidia{parent}", NVIDIA_MAJOR, parent),
                    Device(f"/dev/nvidia-caps/nvidia-cap{index + 1}", NVIDIA_CAPS_MAJOR, index + 1)]
        if resource == "amd.com/gpu":
            return [Device(f"/dev/dri/renderD{128 + index}", DRI_MAJOR, 128 + index)]
        return []

    def _nvidia_id(self, resource: str, index: int) -> str:
        """The device plugin's ID: GPU-<uuid> (a time-sliced replica names its GPU), MIG-<uuid>."""
        if resource == "nvidia.com/gpu.shared":
            return self._uuid("GPU", "nvidia.com/gpu", index // self._replicas())
        prefix = "MIG" if resource.startswith("nvidia.com/mig-") else "GPU"
        return self._uuid(prefix, resource, index)

    def _uuid(self, prefix: str, resource: str, index: int) -> str:
        return f"{prefix}-{uuid.uuid5(uuid.NAMESPACE_URL, f'testenv:{self.node}/{resource}/{index}')}"

    def _replicas(self) -> int:
        return max(1, int(self._labels.get("nvidia.com/gpu.replicas", "1")))

    def _mig_parent(self, resource: str, index: int) -> int:
        """Slices spread evenly over the node's GPUs (label nvidia.com/gpu.count, default one)."""
        gpus = max(1, int(self._labels.get("nvidia.com/gpu.count", "1")))
        return index * gpus // max(1, self._counts[resource])


def _device_requests(container: Container) -> dict[str, int]:
    resources = container.resources
    amounts = dict((resources.requests if resources else None) or {})
    amounts.update((resources.limits if resources else None) or {})
    return {name: int(value) for name, value in amounts.items() if is_device_resource(name) and int(value) > 0}
