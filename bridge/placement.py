"""Where a node's pod may run: the nodeset's scheduling settings, merged into pod-spec fields.

The capacity pool (spot or on-demand) becomes one more nodeSelector entry (and a toleration for
a pool's taint); a topology spread constraint without a selector counts the nodeset's own
pods. Everything else passes through as the admin wrote it, checked when the config loads by the
rules kube-apiserver applies to it (:func:`bridge.config._check_spread`, ``_check_affinity``).
"""

from __future__ import annotations

from typing import Any

from bridge import naming
from bridge.config import Nodeset


def placement(nodeset: Nodeset, *, cluster: str) -> dict[str, Any]:
    """``node_selector``, ``tolerations``, ``affinity``, ``topology_spread`` for the template."""
    node_selector = dict(nodeset.node_selector)
    tolerations = list(nodeset.tolerations)
    if nodeset.capacity is not None:
        node_selector[nodeset.capacity.label] = nodeset.capacity.value or nodeset.capacity.type
        if nodeset.capacity.taint is not None:
            tolerations.append({"key": nodeset.capacity.taint, "operator": "Exists", "effect": "NoSchedule"})
    own_pods = naming.nodeset_selector(nodeset.name, cluster)
    spread = [{**c, "labelSelector": own_pods if c.get("labelSelector") is None else c["labelSelector"]}
              for c in nodeset.topology_spread]
    return {
        "node_selector": node_selector,
        "tolerations": tolerations,
        "affinity": dict(nodeset.affinity),
        "topology_spread": spread,
    }


def dns_config(nodeset: Nodeset, *, namespace: str) -> dict[str, Any]:
    """With a subdomain, short node names resolve between pods: the headless Service's domain
    joins the search path (``elastic2`` → ``elastic2.slurmd.slurm.svc.cluster.local``)."""
    if nodeset.subdomain is None:
        return {}
    return {"searches": [f"{nodeset.subdomain}.{namespace}.svc.{nodeset.cluster_domain}"]}
