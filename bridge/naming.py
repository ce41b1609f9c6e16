"""Pod names and labels for Slurm nodes.

Slurm node names may hold upper case, ``_`` and ``.``, and be long; Kubernetes wants DNS-1123
names and label values of at most 63 characters. A name that had to change gets a short hash of
the original, so two Slurm nodes never share a pod and a node's pod name never changes.
The exact Slurm name always travels in an annotation: that, not the label, is what the bridge
matches on before it deletes anything.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from bridge import NAME

MANAGED_BY = "app.kubernetes.io/managed-by"
CLUSTER_LABEL = f"{NAME}/cluster"
NODE_LABEL = f"{NAME}/node"
NODESET_LABEL = f"{NAME}/nodeset"
JOB_LABEL = f"{NAME}/job-id"
NODE_ANNOTATION = f"{NAME}/node-name"
GROUP_ANNOTATION = f"{NAME}/pod-group"
"""On a gang's pods: ``<apiVersion>/<kind>/<name>`` of the PodGroup the bridge made for them."""

Ref = tuple[str, str, str]
"""(apiVersion, kind, name) of an object."""

_MAX = 63
_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str, *, limit: int = _MAX) -> str:
    """A DNS-1123 label for ``text``: itself if already valid, else a readable form plus a hash.

    The hash is of the original text, so ``Node_1`` and ``node-1`` get different labels.
    """
    clean = _INVALID.sub("-", text.lower()).strip("-")
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = clean[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


def pod_name(cluster: str, node: str) -> str:
    """The pod of Slurm node ``node`` in Slurm cluster ``cluster``: stable and unique."""
    return dns_label(f"{cluster}-{node}")


def hostname(node: str) -> str:
    """The pod's hostname (``spec.hostname``), as close to the Slurm node name as DNS allows."""
    return dns_label(node)


def owner_labels(cluster: str) -> dict[str, str]:
    """The labels that say a pod is the bridge's, for this Slurm cluster: the list selector."""
    return {MANAGED_BY: NAME, CLUSTER_LABEL: dns_label(cluster)}


def nodeset_selector(nodeset: str, cluster: str) -> dict[str, Any]:
    """The label selector of one nodeset's pods: what a topology spread constraint without a
    ``labelSelector`` counts."""
    return {"matchLabels": {NODESET_LABEL: nodeset, **owner_labels(cluster)}}


SELECTOR_NODES = 100
"""Nodes named in one listing's label selector: its URL stays under ~8 KiB (63-character label
values), which proxies in front of an API server accept."""


def node_selectors(cluster: str, nodes: Iterable[str]) -> list[dict[str, str | list[str]]]:
    """Label selectors that list the bridge's pods of ``nodes`` alone, ``SELECTOR_NODES`` a
    selector (``slurm-k8s-bridge/node in (...)``): a hook acting on a few nodes does not read
    every pod of a large cluster. The label is a lookup only: the annotation decides."""
    values = sorted({dns_label(node) for node in nodes})
    return [{**owner_labels(cluster), NODE_LABEL: values[i:i + SELECTOR_NODES]}
            for i in range(0, len(values), SELECTOR_NODES)]


SELECTIVE_LISTS = 3
"""Most listings by node label one call makes; past that, one listing of all the bridge's pods.
A server answers each listing by scanning the namespace's pods (an etcd range read where it
does not serve lists from its cache): 50 listings of 100 nodes among 5,000 pods took 35 s on
the stand-in, one listing of all 1.5 s."""


def pods_of(kube: Any, *, cluster: str, nodes: Iterable[str], metadata_only: bool = False) -> dict[str, dict]:
    """The bridge's pods of ``nodes``, by Slurm node name: listed by their node label, or all
    of them at once where that would take more than ``SELECTIVE_LISTS`` listings; only their
    metadata with ``metadata_only`` (paged: a suspend of thousands of nodes)."""
    wanted = set(nodes)
    selectors = node_selectors(cluster, wanted)
    if len(selectors) > SELECTIVE_LISTS:
        selectors = [owner_labels(cluster)]
    listing = kube.list_pod_metadata if metadata_only else kube.list_pods
    pods = [pod for labels in selectors for pod in listing(labels)]
    return pods_by_node(pods, cluster=cluster, nodes=wanted)


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def is_ours(pod: dict, *, cluster: str, node: str | None = None) -> bool:
    """Whether ``pod`` was created by the bridge for ``cluster`` (and for ``node``, if given).

    Both the labels and the exact node-name annotation must agree: a pod someone else
    made with a look-alike name is never touched.
    """
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in owner_labels(cluster).items()):
        return False
    annotation = (meta.get("annotations") or {}).get(NODE_ANNOTATION)
    if annotation is None:
        return False
    return node is None or annotation == node


def node_of(pod: dict) -> str | None:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(NODE_ANNOTATION)


def group_of(pod: dict) -> Ref | None:
    """The pod group object a pod belongs to, if the bridge made one."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(GROUP_ANNOTATION)
    if not value or value.count("/") < 2:
        return None
    api_version, kind, name = value.rsplit("/", 2)
    return api_version, kind, name


def pods_by_node(pods: list[dict], *, cluster: str, nodes: set[str]) -> dict[str, dict]:
    """The bridge's pods of ``nodes`` among ``pods``, by Slurm node name."""
    return {node: pod for pod in pods if (node := node_of(pod)) in nodes and is_ours(pod, cluster=cluster, node=node)}
