"""Gang scheduling as Volcano and scheduler-plugins' coscheduling do it: a PodGroup's minMember
pods are placed together or not at all.

A pod names its group in the pod's namespace: Volcano by the annotation
``scheduling.k8s.io/group-name`` (PodGroup ``scheduling.volcano.sh/v1beta1``), coscheduling by
the label ``scheduling.x-k8s.io/pod-group`` (PodGroup ``scheduling.x-k8s.io/v1alpha1``). This
module says what each scheduler writes when a group cannot be placed, in its own words, and
what it keeps in the PodGroup's status:

* Volcano waits quietly while fewer than minMember pods exist. When the group does not fit,
  the pods that would fit get ``PodScheduled=False`` with reason ``Schedulable`` ("can possibly
  be assigned ... once minAvailable is satisfied"), the pod that does not fit its own fit error
  ("0/2 nodes are unavailable: 2 Insufficient nvidia.com/gpu."), the pods after it the job's
  ("pod group is not ready, 3 Pending, 3 minAvailable; Pending: ..."), all with reason
  ``Unschedulable`` but the first ones. Its scheduler writes the PodGroup's phase (Pending,
  Inqueue, Running, Completed) and conditions on the object itself: the CRD has no status
  subresource.
* Coscheduling is a kube-scheduler plugin: a pod whose siblings do not all exist yet fails its
  PreFilter ("cannot find enough sibling pods"), a pod that fits nowhere gets kube-scheduler's
  message plus the plugin's PostFilter verdict on the whole group, and the pods waiting at
  Permit are rejected ("optimistic rejection in PostFilter"). Its PodGroup controller writes
  the phase (Pending, Scheduling, Running, Finished, Failed) through ``/status``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from . import messages
from .filters import (
    Filter,
    Rejection,
    first_rejection,
    node_affinity,
    node_ports,
    node_unschedulable,
    taint_toleration,
)
from .placement import inter_pod_affinity, topology_spread
from .resources import CPU, MEMORY, PODS, insufficient, pod_requests
from .snapshot import NodeInfo

VOLCANO, COSCHEDULING = "volcano", "coscheduling"
#: The schedulerName each flavour answers to by default (the bridge's defaults too).
DEFAULT_NAMES = {VOLCANO: "volcano", COSCHEDULING: "scheduler-plugins-scheduler"}
UNSCHEDULABLE, SCHEDULABLE = "Unschedulable", "Schedulable"
#: coscheduling rejects a whole group only when more than this share of minMember is missing.
COSCHEDULING_REJECT_SHARE = 0.10


@dataclass(frozen=True)
class Flavour:
    kind: str
    resource: Any  # the lightkube class of its PodGroup
    status_subresource: bool
    marker: str  # the annotation (Volcano) or label (coscheduling) naming the group

    def group_of(self, pod: Pod) -> str | None:
        meta = pod.metadata
        marks = (meta.annotations if self.kind == VOLCANO else meta.labels) or {}
        return marks.get(self.marker) or None


FLAVOURS = {
    VOLCANO: Flavour(
        VOLCANO,
        create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups"),
        status_subresource=False,
        marker="scheduling.k8s.io/group-name",
    ),
    COSCHEDULING: Flavour(
        COSCHEDULING,
        create_namespaced_resource("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups"),
        status_subresource=True,
        marker="scheduling.x-k8s.io/pod-group",
    ),
}


@dataclass(frozen=True)
class GroupKey:
    kind: str
    namespace: str
    name: str

    @property
    def flavour(self) -> Flavour:
        return FLAVOURS[self.kind]

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Attempt:
    """One pod of a group tried against the nodes: where it would go, or why it fits nowhere."""

    pod: Pod
    node: str | None
    rejections: Mapping[str, Rejection]


@dataclass(frozen=True)
class Verdict:
    """What the scheduler writes on a pod it did not bind: PodScheduled=False, reason, message."""

    pod: Pod
    reason: str
    message: str


@dataclass(frozen=True)
class GroupState:
    """The group as one scheduling cycle left it, for its PodGroup's status."""

    min_member: int
    members: int  # pods naming the group, not being deleted
    scheduled: int  # bound, or being bound this cycle
    phases: Mapping[str, int]  # members by pod phase
    too_few: bool = False
    unschedulable: str | None = None  # the group's message when it did not fit


# --- which group ---------------------------------------------------------------------------------


def key_of(pod: Pod, kind: str) -> GroupKey | None:
    name = FLAVOURS[kind].group_of(pod)
    return GroupKey(kind, pod.metadata.namespace, name) if name else None


def min_member(pod_group: Any) -> int:
    return int((pod_group.get("spec") or {}).get("minMember") or 1)


# --- what the pods are told ----------------------------------------------------------------------


def too_few_verdicts(key: GroupKey, pending: list[Pod], members: int, minimum: int, bound: int,
                     node_count: int) -> list[Verdict]:
    """Fewer than minMember pods exist: Volcano waits without a word, coscheduling's PreFilter
    turns each pod away."""
    if key.kind == VOLCANO:
        return []
    verdicts = []
    for pod in pending:
        reason = (f"pre-filter pod {pod.metadata.name} cannot find enough sibling pods, "
                  f"current pods number: {members}, minMember of group: {minimum}")
        after = _coscheduling_post_filter(key, pod, bound, minimum)
        message = messages.pre_filter_error(pod, node_count, reason, post_filter=after)
        verdicts.append(Verdict(pod, UNSCHEDULABLE, message))
    return verdicts


def missing_group_verdicts(key: GroupKey, pending: list[Pod]) -> list[Verdict]:
    """No such PodGroup: Volcano ignores the pods, coscheduling's Permit refuses them."""
    if key.kind == VOLCANO:
        return []
    return [Verdict(pod, UNSCHEDULABLE, "PodGroup not found") for pod in pending]


def failure_verdicts(key: GroupKey, attempts: list[Attempt], untried: list[Pod], *, minimum: int,
                     bound: int, members: int, node_count: int) -> tuple[list[Verdict], str]:
    """The pods' verdicts and the group's message when its pods cannot all be placed (a failed
    attempt's rejections are in the flavour's terms: see volcano_rejections)."""
    if key.kind == VOLCANO:
        return _volcano_verdicts(attempts, untried, minimum=minimum, bound=bound, members=members,
                                 node_count=node_count)
    return _coscheduling_verdicts(key, attempts, minimum=minimum, bound=bound, node_count=node_count)


def _volcano_verdicts(attempts: list[Attempt], untried: list[Pod], *, minimum: int, bound: int,
                      members: int, node_count: int) -> tuple[list[Verdict], str]:
    verdicts = []
    for attempt in attempts:
        pod = attempt.pod
        if attempt.node is not None:
            text = (f"Pod {pod.metadata.namespace}/{pod.metadata.name} can possibly be assigned to "
                    f"{attempt.node}, once minAvailable is satisfied")
            verdicts.append(Verdict(pod, SCHEDULABLE, text))
        else:
            verdicts.append(Verdict(pod, UNSCHEDULABLE, messages.volcano_fit_error(node_count, attempt.rejections)))
    job = _volcano_job_error(verdicts, untried, minimum=minimum, bound=bound)
    verdicts += [Verdict(pod, UNSCHEDULABLE, job) for pod in untried]
    placed = sum(1 for a in attempts if a.node is not None)
    return verdicts, f"{minimum - bound - placed}/{members} tasks in gang unschedulable: {job}"


def _volcano_job_error(tried: list[Verdict], untried: list[Pod], *, minimum: int, bound: int) -> str:
    """Volcano's JobInfo.FitError(): task statuses, then why the pending ones wait, then the first
    task's own fit error."""
    statuses: Counter[str] = Counter({"Pending": len(tried) + len(untried), "minAvailable": minimum})
    if bound:
        statuses["Bound"] = bound
    pending: Counter[str] = Counter(v.reason for v in tried)
    pending[UNSCHEDULABLE] += len(untried)
    text = f"pod group is not ready, {_histogram(statuses)}; Pending: {_histogram(pending)}"
    origin = next((v for v in tried if v.reason == UNSCHEDULABLE), None)
    if origin is not None:
        text += f". Origin reason is {origin.pod.metadata.name}: {origin.message}"
    return text


def _coscheduling_verdicts(key: GroupKey, attempts: list[Attempt], *, minimum: int, bound: int,
                           node_count: int) -> tuple[list[Verdict], str]:
    verdicts, waiting, rejected = [], [], False
    assigned = bound
    for attempt in attempts:
        if attempt.node is not None:
            waiting.append(attempt.pod)
            assigned += 1
            continue
        after = _coscheduling_post_filter(key, attempt.pod, assigned, minimum)
        rejected = rejected or bool(after)
        verdicts.append(Verdict(attempt.pod, UNSCHEDULABLE,
                                messages.fit_error(attempt.pod, node_count, attempt.rejections, post_filter=after)))
    if rejected:  # the plugin's PostFilter rejects the group's pods waiting at Permit
        verdicts += [Verdict(pod, UNSCHEDULABLE, "optimistic rejection in PostFilter") for pod in waiting]
    return verdicts, verdicts[0].message if verdicts else ""


def _coscheduling_post_filter(key: GroupKey, pod: Pod, assigned: int, minimum: int) -> str:
    """The Coscheduling PostFilter's message: the group is given up unless nearly complete."""
    if assigned >= minimum or (minimum - assigned) / minimum <= COSCHEDULING_REJECT_SHARE:
        return ""
    name = pod.metadata.name
    return f"PodGroup {key.full_name} gets rejected due to Pod {name} is unschedulable even after PostFilter"


def volcano_rejections(pod: Pod, infos: Mapping[str, NodeInfo]) -> dict[str, Rejection]:
    """Per node, why Volcano's allocate would not take the pod: resources are checked first and
    only the first missing one is named, then its predicates (kube-scheduler's filters)."""
    rejections = {}
    for name, info in infos.items():
        rejection = first_rejection(pod, info, infos, VOLCANO_FILTERS)
        if rejection is not None:
            rejections[name] = rejection
    return rejections


def _volcano_resources(pod: Pod, info: NodeInfo, _: Mapping[str, NodeInfo]) -> Rejection | None:
    free = info.free()
    if free.get(PODS, 0) < 1:
        return Rejection(("node(s) pod number exceeded",), unresolvable=False)
    missing = insufficient(pod_requests(pod.spec), free)
    if not missing:
        return None
    first = next((name for name in (CPU, MEMORY) if name in missing), missing[0])
    return Rejection((f"Insufficient {first}",), unresolvable=False)


VOLCANO_FILTERS: tuple[Filter, ...] = (
    _volcano_resources,
    node_unschedulable,
    taint_toleration,
    node_affinity,
    node_ports,
    topology_spread,
    inter_pod_affinity,
)


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items() if count))


# --- the PodGroup's status -----------------------------------------------------------------------


def desired_status(kind: str, current: Mapping[str, Any], state: GroupState, now: str) -> dict[str, Any]:
    """The status the flavour's scheduler (or controller) would write, from the current one."""
    if kind == VOLCANO:
        return _volcano_status(current, state, now)
    return _coscheduling_status(current, state)


def _volcano_status(current: Mapping[str, Any], state: GroupState, now: str) -> dict[str, Any]:
    status = {**current, "running": state.phases.get("Running", 0),
              "succeeded": state.phases.get("Succeeded", 0), "failed": state.phases.get("Failed", 0)}
    completed = state.phases.get("Succeeded", 0) + state.phases.get("Failed", 0)
    conditions = list(current.get("conditions") or [])
    if state.scheduled >= state.min_member:
        status["phase"] = "Completed" if completed >= state.scheduled else "Running"
        conditions = _set_condition(conditions, "Scheduled", "tasks in gang are ready to be scheduled", "", now)
    elif state.too_few:
        status["phase"] = "Pending" if current.get("phase") != "Inqueue" else "Inqueue"
        message = f"Not enough valid tasks for gang-scheduling, valid: {state.members}, min: {state.min_member}"
        conditions = _set_condition(conditions, "Unschedulable", "NotEnoughTasks", message, now)
    else:  # enqueued (no minResources to wait for), and allocated in part
        status["phase"] = "Inqueue"
        if state.unschedulable:
            conditions = _set_condition(conditions, "Unschedulable", "NotEnoughResources", state.unschedulable, now)
    status["conditions"] = conditions
    return status


def _set_condition(conditions: Iterable[Mapping[str, Any]], kind: str, reason: str, message: str,
                   now: str) -> list[dict[str, Any]]:
    """Replace the condition of that type; its transition time moves only when it changes."""
    wanted = {"type": kind, "status": "True", "reason": reason, "message": message}
    result, old = [], None
    for condition in conditions:
        if condition.get("type") == kind:
            old = condition
        else:
            result.append(dict(condition))
    same = old is not None and all(old.get(k) == v for k, v in wanted.items())
    wanted["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
    return [*result, wanted]


def _coscheduling_status(current: Mapping[str, Any], state: GroupState) -> dict[str, Any]:
    """scheduler-plugins' PodGroup controller (pkg/controllers/podgroup_controller.go)."""
    running, succeeded, failed = (state.phases.get(p, 0) for p in ("Running", "Succeeded", "Failed"))
    if current.get("phase") in ("Finished", "Failed"):
        return dict(current)
    if state.members < state.min_member:
        phase = "Pending"
    elif running + succeeded >= state.min_member:
        phase = "Running"
    else:
        phase = "Scheduling"
    if failed and failed + running + succeeded >= state.min_member:
        phase = "Failed"
    if succeeded >= state.min_member:
        phase = "Finished"
    return {**current, "phase": phase, "running": running, "succeeded": succeeded, "failed": failed}
