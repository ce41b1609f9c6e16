"""A pod's resource requests and limits, from the Slurm node's own shape.

Slurm schedules jobs onto a node by its CPUs, RealMemory and Gres; the pod must ask Kubernetes
for the same, or a job sized for the node lands on a pod that cannot hold it. Requests equal
limits so the pod is in the Guaranteed QoS class (whole CPUs: eligible for pinned cores).
"""

from __future__ import annotations

from bridge.config import Nodeset
from bridge.slurm import NodeFacts


def pod_resources(facts: NodeFacts, nodeset: Nodeset) -> dict[str, dict[str, str]]:
    """``{"requests": {...}, "limits": {...}}`` for the slurmd container."""
    amounts: dict[str, str] = {}
    if facts.cpus > 0:
        amounts["cpu"] = str(facts.cpus)
    # Slurm's default RealMemory is 1 (MB): treat it as "not configured", not as 1 MiB.
    if facts.real_memory_mb > 1:
        amounts["memory"] = f"{facts.real_memory_mb + nodeset.memory_overhead_mb}Mi"
    return {"requests": dict(amounts), "limits": dict(amounts)}
