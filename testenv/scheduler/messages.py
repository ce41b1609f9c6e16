"""The text of a scheduling failure, worded and ordered like kube-scheduler's FitError.

    0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector,
    2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available:
    1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.

Reasons are counted over nodes and sorted as strings ("<count> <reason>"), as upstream does.
This scheduler never preempts; the second sentence says what upstream's would conclude when
no lower-priority pod can be evicted. Other PostFilter plugins (coscheduling) add their own
message after it, joined with ", " as the framework merges their statuses; a PreFilter failure
(coscheduling's missing siblings) replaces the per-node histogram.

Volcano words its own per-task fit error differently: "0/2 nodes are unavailable: 2 Insufficient
nvidia.com/gpu." (no preemption sentence).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from lightkube.resources.core_v1 import Pod

from .filters import Rejection

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))


def fit_error(pod: Pod, node_count: int, rejections: Mapping[str, Rejection], *, post_filter: str = "") -> str:
    """The message for a pod that fits none of `node_count` nodes (rejections by node name);
    `post_filter`: what a PostFilter plugin after DefaultPreemption said."""
    if node_count == 0:
        return NO_NODES
    reasons: Counter[str] = Counter()
    for rejection in rejections.values():
        reasons.update(rejection.reasons)
    message = f"0/{node_count} nodes are available: {_histogram(reasons)}."
    return f"{message} {_post_filter(pod, node_count, rejections, post_filter)}"


def pre_filter_error(pod: Pod, node_count: int, reason: str, *, post_filter: str = "") -> str:
    """The message for a pod a PreFilter plugin turned away before any node was looked at."""
    if node_count == 0:
        return NO_NODES
    everywhere = {str(i): Rejection((reason,), unresolvable=True) for i in range(node_count)}
    message = f"0/{node_count} nodes are available: {reason}."
    return f"{message} {_post_filter(pod, node_count, everywhere, post_filter)}"


def volcano_fit_error(node_count: int, rejections: Mapping[str, Rejection]) -> str:
    """Volcano's FitErrors text for one task (pkg/scheduler/api/unschedule_info.go)."""
    reasons: Counter[str] = Counter()
    for rejection in rejections.values():
        reasons.update(rejection.reasons)
    message = f"0/{node_count} nodes are unavailable"
    return f"{message}: {_histogram(reasons)}." if reasons else message


def _post_filter(pod: Pod, node_count: int, rejections: Mapping[str, Rejection], more: str) -> str:
    preemption = _preemption(pod, node_count, rejections)
    return f"{preemption}, {more}" if more else preemption


def _preemption(pod: Pod, node_count: int, rejections: Mapping[str, Rejection]) -> str:
    if pod.spec.preemptionPolicy == "Never":
        return "preemption: not eligible due to preemptionPolicy=Never."
    outcome = Counter(NOT_HELPFUL if r.unresolvable else NO_VICTIMS for r in rejections.values())
    return f"preemption: 0/{node_count} nodes are available: {_histogram(outcome)}."
