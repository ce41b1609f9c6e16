"""Filters that look at the other pods: kube-scheduler's PodTopologySpread and InterPodAffinity.

Only the hard rules: topologySpreadConstraints with whenUnsatisfiable DoNotSchedule, and
required pod affinity / anti-affinity (the incoming pod's, and existing pods' anti-affinity
against it). Domains are the values of a node label (the topologyKey), as upstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from lightkube.models.core_v1 import PodAffinityTerm, TopologySpreadConstraint
from lightkube.resources.core_v1 import Pod

from .filters import Rejection, matches_node_selector, selector_matches
from .snapshot import NodeInfo

SPREAD_MISMATCH = "node(s) didn't match pod topology spread constraints"
SPREAD_MISSING_LABEL = f"{SPREAD_MISMATCH} (missing required label)"
AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"


def _counted(pod: Pod) -> bool:
    """Pods that count for spreading and affinity: not on their way out."""
    return pod.metadata.deletionTimestamp is None


def _pods(cluster: Mapping[str, NodeInfo]) -> Iterator[tuple[NodeInfo, Pod]]:
    for info in cluster.values():
        for pod in info.pods:
            if _counted(pod):
                yield info, pod


# --- PodTopologySpread ---------------------------------------------------------------------------


def topology_spread(pod: Pod, info: NodeInfo, cluster: Mapping[str, NodeInfo]) -> Rejection | None:
    constraints = [c for c in pod.spec.topologySpreadConstraints or [] if c.whenUnsatisfiable == "DoNotSchedule"]
    for constraint in constraints:
        domain = info.labels.get(constraint.topologyKey)
        if domain is None:
            return Rejection((SPREAD_MISSING_LABEL,), unresolvable=True)
        counts = _domain_counts(pod, constraint, cluster, [c.topologyKey for c in constraints])
        minimum = min(counts.values(), default=0)
        if constraint.minDomains and len(counts) < constraint.minDomains:
            minimum = 0
        own = 1 if selector_matches(constraint.labelSelector, pod.metadata.labels or {}) else 0
        if counts.get(domain, 0) + own - minimum > constraint.maxSkew:
            return Rejection((SPREAD_MISMATCH,), unresolvable=False)
    return None


def _domain_counts(
    pod: Pod, constraint: TopologySpreadConstraint, cluster: Mapping[str, NodeInfo], keys: list[str]
) -> Counter[str]:
    """Matching pods per domain, over the nodes the pod could go to (its node selector and
    affinity honoured, every topology key present), each such domain present even if empty."""
    counts: Counter[str] = Counter()
    for info in cluster.values():
        if not all(key in info.labels for key in keys):
            continue
        if (constraint.nodeAffinityPolicy or "Honor") == "Honor" and not matches_node_selector(pod, info.node):
            continue
        domain = info.labels[constraint.topologyKey]
        counts[domain] += sum(
            1
            for other in info.pods
            if _counted(other)
            and other.metadata.namespace == pod.metadata.namespace
            and selector_matches(constraint.labelSelector, other.metadata.labels or {})
        )
    return counts


# --- InterPodAffinity ----------------------------------------------------------------------------


def inter_pod_affinity(pod: Pod, info: NodeInfo, cluster: Mapping[str, NodeInfo]) -> Rejection | None:
    affinity = pod.spec.affinity
    required = _required(affinity.podAffinity if affinity else None)
    anti = _required(affinity.podAntiAffinity if affinity else None)
    if required and not _affinity_satisfied(pod, required, info, cluster):
        return Rejection((AFFINITY_MISMATCH,), unresolvable=True)
    for term in anti:
        domain = info.labels.get(term.topologyKey)
        if domain is not None and any(_term_matches(term, pod, other) for other in _pods_in(term, domain, cluster)):
            return Rejection((ANTI_AFFINITY_MISMATCH,), unresolvable=False)
    if _repelled_by_existing(pod, info, cluster):
        return Rejection((EXISTING_ANTI_AFFINITY,), unresolvable=False)
    return None


def _required(rules: object) -> list[PodAffinityTerm]:
    return list(getattr(rules, "requiredDuringSchedulingIgnoredDuringExecution", None) or [])


def _namespaces(term: PodAffinityTerm, owner: Pod) -> set[str] | None:
    """The namespaces a term looks in (None: all of them)."""
    if (
        term.namespaceSelector is not None
        and not term.namespaceSelector.matchLabels
        and not (term.namespaceSelector.matchExpressions)
    ):
        return None  # an empty namespaceSelector selects every namespace
    return set(term.namespaces or []) or {owner.metadata.namespace}


def _term_matches(term: PodAffinityTerm, owner: Pod, candidate: Pod) -> bool:
    """Does `candidate` match a term written in `owner`'s spec?"""
    namespaces = _namespaces(term, owner)
    if namespaces is not None and candidate.metadata.namespace not in namespaces:
        return False
    return selector_matches(term.labelSelector, candidate.metadata.labels or {})


def _pods_in(term: PodAffinityTerm, domain: str, cluster: Mapping[str, NodeInfo]) -> Iterable[Pod]:
    return (other for info, other in _pods(cluster) if info.labels.get(term.topologyKey) == domain)


def _affinity_satisfied(
    pod: Pod, terms: list[PodAffinityTerm], info: NodeInfo, cluster: Mapping[str, NodeInfo]
) -> bool:
    if not all(term.topologyKey in info.labels for term in terms):
        return False
    if all(
        any(_term_matches(term, pod, other) for other in _pods_in(term, info.labels[term.topologyKey], cluster))
        for term in terms
    ):
        return True
    # The first pod of a group that wants to be together: nothing matches anywhere yet, and it
    # matches its own terms, so it may go anywhere (upstream's rule, or such groups never start).
    nothing_anywhere = not any(_term_matches(term, pod, other) for term in terms for _, other in _pods(cluster))
    return nothing_anywhere and all(_term_matches(term, pod, pod) for term in terms)


def _repelled_by_existing(pod: Pod, info: NodeInfo, cluster: Mapping[str, NodeInfo]) -> bool:
    for other_info, other in _pods(cluster):
        affinity = other.spec.affinity
        for term in _required(affinity.podAntiAffinity if affinity else None):
            domain = other_info.labels.get(term.topologyKey)
            if domain is not None and info.labels.get(term.topologyKey) == domain and _term_matches(term, other, pod):
                return True
    return False
