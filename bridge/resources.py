"""A pod's resource requests and limits, from the Slurm node's own shape.

Slurm schedules jobs onto a node by its CPUs, RealMemory and Gres; the pod must ask Kubernetes
for the same, or a job sized for the node lands on a pod that cannot hold it. Requests equal
limits so the pod is in the Guaranteed QoS class (whole CPUs: eligible for pinned cores), and
device resources (GPUs, SR-IOV virtual functions, huge pages) cannot be overcommitted anyway.

GPU counts come only from the node's Gres, so Slurm and the device plugin agree by
construction; a Gres this nodeset cannot express is an error naming the node, raised before
any pod exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from bridge.config import GpuSettings, Hugepages, NetworkAttachment, Nodeset
from bridge.errors import ConfigError
from bridge.slurm import NodeFacts, split_gres

MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
_MIG_PROFILE = re.compile(r"(\d+g\.\d+gb)$")  # the Gres type ends with the profile: a100_3g.20gb
_GPU_RESOURCES = {("nvidia", "none"): "nvidia.com/gpu", ("amd", "none"): "amd.com/gpu",
                  ("nvidia", "time-slicing"): "nvidia.com/gpu.shared"}


@dataclass(frozen=True)
class GpuGrant:
    """The GPUs a node's pod asks for, and what the image's entrypoint needs to know."""

    resource: str
    count: int
    gres: str
    """The node's gpu Gres as Slurm states it, e.g. ``gpu:h100:8``."""
    vendor: str
    sharing: str

    def env(self) -> dict[str, str]:
        """For the entrypoint: it links the granted devices as ``/dev/slurm-gpu<i>`` (the
        names gres.conf's ``File=`` uses) and refuses to start slurmd on a count mismatch."""
        return {"SLURMD_GRES": self.gres, "SLURMD_GPU_COUNT": str(self.count),
                "SLURMD_GPU_VENDOR": self.vendor, "SLURMD_GPU_SHARING": self.sharing}


def pod_resources(facts: NodeFacts, nodeset: Nodeset, *, where: str = "nodeset") -> dict[str, dict[str, str]]:
    """``{"requests": {...}, "limits": {...}}`` for the slurmd container.

    Raises:
        ConfigError: the node's Slurm shape and the nodeset disagree (``where`` names the
            nodeset, e.g. ``k8s-bridge.yaml: nodesets[1]``).
    """
    amounts = _cpu_and_memory(facts, nodeset, where)
    grant = gpu_grant(facts, nodeset.gpus, where=f"{where}.gpus")
    if grant is not None:
        amounts[grant.resource] = str(grant.count)
    for resource, count in network_devices(nodeset.networks).items():
        amounts[resource] = str(int(amounts.get(resource, 0)) + count)
    if nodeset.hugepages is not None:
        amounts[f"hugepages-{nodeset.hugepages.size}"] = hugepages_quantity(nodeset.hugepages)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _cpu_and_memory(facts: NodeFacts, nodeset: Nodeset, where: str) -> dict[str, str]:
    amounts: dict[str, str] = {}
    if facts.cpus > 0:
        amounts["cpu"] = str(facts.cpus)
    # Slurm's default RealMemory is 1 (MB): treat it as "not configured", not as 1 MiB.
    if facts.real_memory_mb > 1:
        amounts["memory"] = f"{facts.real_memory_mb + nodeset.memory_overhead_mb}Mi"
    if nodeset.cpu_pinning and ("cpu" not in amounts or "memory" not in amounts):
        missing = " and ".join(k for k, v in (("CPUs", "cpu"), ("RealMemory", "memory")) if v not in amounts)
        raise ConfigError(f"{where}.cpu_pinning: node {facts.name} has no {missing} in Slurm; expected both, "
                          f"for the Guaranteed QoS class that exclusive cores need")
    return amounts


def gpu_grant(facts: NodeFacts, gpus: GpuSettings, *, where: str = "gpus") -> GpuGrant | None:
    """The GPU resource for the node's ``gpu`` Gres; None when Slurm gives it no GPU."""
    entries = [(entry, *split_gres(entry)) for entry in facts.gres]
    gpu_entries = [(entry, kind, count) for entry, name, kind, count in entries if name == "gpu" and count > 0]
    count = sum(c for _, _, c in gpu_entries)
    if count == 0:
        return None
    gres = ",".join(entry for entry, _, _ in gpu_entries)
    if gpus.sharing == "time-slicing" and count != 1:
        raise ConfigError(f"{where}.sharing: node {facts.name} has Gres {gres} but a time-sliced pod gets no "
                          f"guarantee that {count} replicas are {count} GPUs; expected Gres gpu:1")
    resource = gpus.resource or _resource_name(facts.name, gpus, sorted({k or "" for _, k, _ in gpu_entries}),
                                               gres, where)
    return GpuGrant(resource=resource, count=count, gres=gres, vendor=gpus.vendor, sharing=gpus.sharing)


def _resource_name(node: str, gpus: GpuSettings, types: list[str], gres: str, where: str) -> str:
    if gpus.sharing != "mig":
        return _GPU_RESOURCES[(gpus.vendor, gpus.sharing)]
    # The device plugin serves one device type per container: a pod asking for two MIG
    # profiles would see only one of them while Slurm counted both.
    if len(types) != 1:
        raise ConfigError(f"{where}.sharing: node {node} has Gres {gres}; expected one MIG profile per node "
                          f"(the device plugin gives a container one device type)")
    profile = _MIG_PROFILE.search(types[0])
    if profile is None:
        raise ConfigError(f"{where}.sharing: node {node} has Gres {gres}; expected the MIG profile as the Gres "
                          f"type (gpu:1g.10gb:N), or gpus.resource")
    return f"nvidia.com/mig-{profile.group(1)}"


def network_devices(networks: list[NetworkAttachment]) -> dict[str, int]:
    """One device of its resource per attachment: two attachments of one pool ask for two."""
    counts: dict[str, int] = {}
    for network in networks:
        counts[network.resource] = counts.get(network.resource, 0) + 1
    return counts


def network_annotation(networks: list[NetworkAttachment]) -> str:
    """The Multus ``k8s.v1.cni.cncf.io/networks`` value: a JSON list of selections.

    No ``default-route`` key ever: the pod's default route stays on the cluster network
    (eth0), or slurmctld could no longer reach slurmd.
    """
    selections = []
    for network in networks:
        selection = {"name": network.name}
        if network.namespace:
            selection["namespace"] = network.namespace
        if network.interface:
            selection["interface"] = network.interface
        selections.append(selection)
    return json.dumps(selections, separators=(",", ":"))


def hugepages_quantity(hugepages: Hugepages) -> str:
    """``pages`` pages of ``size`` as a Kubernetes quantity: 16 × 1Gi → ``16Gi``."""
    if hugepages.size == "1Gi":
        return f"{hugepages.pages}Gi"
    return f"{hugepages.pages * 2}Mi"
