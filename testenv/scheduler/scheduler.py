"""A kube-scheduler for the test environment: binds pending pods to nodes through the API.

One cycle takes every pending pod this scheduler serves (highest priority, then oldest first),
checks it against a snapshot of the nodes, binds it to the least allocated node that fits, or
reports why none fits (PodScheduled=False/Unschedulable and a FailedScheduling event). A cycle
runs when a pod or node changes in a way that can matter, and every `retry_interval` while some
pod is unschedulable.

Pods are placed in groups, all or nothing: a pod alone, or the pods of a gang. Besides its own
name the scheduler can answer to gang schedulers' names (``gangs``: schedulerName -> "volcano" or
"coscheduling"); their pods naming a PodGroup wait until minMember of them exist and are bound
only if minMember can be placed, and the PodGroup's status is kept as those schedulers keep it
(see gangs.py for their words and phases).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from testenv.runner.events import NORMAL, WARNING, EventRecorder, Subject
from testenv.runner.informer import ADDED, DELETED, Informer
from testenv.runner.kube import (
    API_ERRORS,
    Api,
    KubeconfigSource,
    status_code,
    timestamp,
)
from testenv.runner.service import OnItsThread, ServiceThread

from . import gangs, messages
from .filters import (
    Filter,
    Rejection,
    first_rejection,
    node_affinity,
    node_ports,
    node_taints,
    node_unschedulable,
    resources_fit,
    taint_toleration,
)
from .gangs import Attempt, GroupKey, GroupState, Verdict
from .placement import inter_pod_affinity, topology_spread
from .snapshot import NodeInfo, build, is_terminal, least_allocated_score

log = logging.getLogger(__name__)

DEFAULT_NAME = "default-scheduler"

#: kube-scheduler's default profile, in its order (a node is reported with its first rejection).
FILTERS: tuple[Filter, ...] = (
    node_unschedulable,
    taint_toleration,
    node_affinity,
    node_ports,
    resources_fit,
    topology_spread,
    inter_pod_affinity,
)


@dataclass
class _Failure:
    reason: str
    message: str
    recorded_at: float


Explain = Callable[[Pod, dict[str, NodeInfo]], dict[str, Rejection]]


@dataclass(frozen=True)
class Placement:
    pod: Pod
    node: str | None  # None: unschedulable, see message
    message: str = ""


class SchedulerService:
    """The scheduler as a service (see testenv.runner.service); `Scheduler` wraps it for tests."""

    def __init__(
        self,
        kubeconfig: KubeconfigSource,
        *,
        name: str = DEFAULT_NAME,
        gangs: Mapping[str, str] | None = None,
        retry_interval: float = 1.0,
        event_refresh: float = 60.0,
    ) -> None:
        """gangs: further schedulerNames to answer to, each with the gang flavour it honours
        ("volcano" or "coscheduling"), e.g. ``{"volcano": "volcano"}``."""
        self.name = name
        self._flavours: dict[str, str | None] = {name: None, **(gangs or {})}
        self._kubeconfig = kubeconfig
        self._retry_interval = retry_interval
        #: A failure with an unchanged message is recorded again at most this often (seconds),
        #: so retrying every second does not write an event every second.
        self._event_refresh = event_refresh
        self._api: Api | None = None
        self._recorders: dict[str, EventRecorder] = {}  # by schedulerName: each writes as itself
        self._pods: Informer[Pod] | None = None
        self._nodes: Informer[Node] | None = None
        self._wake = asyncio.Event()
        self._assumed: dict[str, str] = {}  # pod uid -> node, bound but not yet seen bound
        self._failures: dict[str, _Failure] = {}  # pod uid -> last failure reported
        self._node_fingerprints: dict[str, Any] = {}
        self._cycle_failed = False  # the API failed during the last cycle: retry it
        self._dirty_groups: set[GroupKey] = set()  # a member changed: the PodGroup status may have to
        self._groups_waiting = False  # a gang waits for its pods or its PodGroup: look again later

    # --- service -----------------------------------------------------------------------------

    async def setup(self) -> None:
        self._api = Api(self._kubeconfig, field_manager=self.name)
        self._recorders = {name: EventRecorder(self._api, component=name) for name in self._flavours}
        self._pods = Informer(self._api.client, Pod, self._on_pod)
        self._nodes = Informer(self._api.client, Node, self._on_node)
        await self._nodes.sync()
        await self._pods.sync()
        self._wake.set()

    async def serve(self) -> None:
        assert self._pods is not None and self._nodes is not None
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._pods.run())
            tasks.create_task(self._nodes.run())
            tasks.create_task(self._schedule_forever())
            tasks.create_task(self._retry_forever())

    async def teardown(self) -> None:
        if self._api is not None:
            await self._api.close()

    # --- reacting to changes -----------------------------------------------------------------

    def _on_pod(self, kind: str, pod: Pod) -> None:
        uid = pod.metadata.uid
        key = self._group_key(pod)
        if key is not None:
            self._dirty_groups.add(key)
            self._wake.set()
        if kind == DELETED:
            self._assumed.pop(uid, None)
            self._failures.pop(uid, None)
            for recorder in self._recorders.values():
                recorder.forget(uid)
            self._wake.set()
        elif pod.spec.nodeName:
            self._assumed.pop(uid, None)
            self._failures.pop(uid, None)
            if is_terminal(pod) or pod.metadata.deletionTimestamp is not None:
                self._wake.set()  # resources freed, or about to be
        elif self._serves(pod):
            self._wake.set()

    def _on_node(self, kind: str, node: Node) -> None:
        name = node.metadata.name
        if kind == DELETED:
            self._node_fingerprints.pop(name, None)
            self._wake.set()
            return
        fingerprint = _scheduling_fingerprint(node)
        if kind == ADDED or self._node_fingerprints.get(name) != fingerprint:
            self._wake.set()  # heartbeats alone change nothing that matters here
        self._node_fingerprints[name] = fingerprint

    async def _retry_forever(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval)
            if self._failures or self._cycle_failed or self._groups_waiting:
                self._wake.set()

    async def _schedule_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._cycle_failed = False
            try:
                await self.schedule_pending()
            except API_ERRORS as e:
                log.warning("scheduling cycle failed, retrying: %s", e)
                self._cycle_failed = True
            except Exception:  # a bug must not stop scheduling: log it, the next cycle runs
                log.exception("scheduling cycle failed")

    # --- one cycle ---------------------------------------------------------------------------

    def _serves(self, pod: Pod) -> bool:
        spec = pod.spec
        return (
            not spec.nodeName
            and (spec.schedulerName or DEFAULT_NAME) in self._flavours
            and not spec.schedulingGates
            and pod.metadata.deletionTimestamp is None
            and not is_terminal(pod)
            and pod.metadata.uid not in self._assumed
        )

    def _pending(self) -> list[Pod]:
        assert self._pods is not None
        pending = [pod for pod in self._pods.objects.values() if self._serves(pod)]
        return sorted(pending, key=_queue_order)

    def _group_key(self, pod: Pod) -> GroupKey | None:
        """The gang the pod belongs to, if its scheduler is one of ours that honours gangs."""
        kind = self._flavours.get(pod.spec.schedulerName or DEFAULT_NAME) if pod.spec else None
        return gangs.key_of(pod, kind) if kind else None

    def _groups(self, pending: list[Pod]) -> list[tuple[GroupKey | None, list[Pod]]]:
        """Pods that must be placed together, all or nothing, in queue order: each gang's pending
        pods under its key (at its first pod's turn), every other pod alone."""
        units: dict[Any, tuple[GroupKey | None, list[Pod]]] = {}
        for pod in pending:
            key = self._group_key(pod)
            units.setdefault(key or pod.metadata.uid, (key, []))[1].append(pod)
        return list(units.values())

    async def schedule_pending(self) -> None:
        pending = self._pending()
        dirty, self._dirty_groups = self._dirty_groups, set()
        self._groups_waiting = False
        if not pending and not dirty:
            return
        assert self._pods is not None and self._nodes is not None
        infos = build(self._nodes.objects.values(), self._pods.objects.values(), self._assumed)
        for key, group in self._groups(pending):
            if key is not None:
                await self._schedule_gang(key, infos)
                dirty.discard(key)
                continue
            for placement in place_group(group, infos):
                if placement.node is None:
                    await self._report_unschedulable(placement.pod, placement.message)
                else:
                    await self._bind(placement.pod, placement.node)
        for key in dirty:  # members started, ended or went: the PodGroup's counts and phase follow
            pod_group = await self._get_pod_group(key)
            if pod_group is not None:
                await self._write_group_status(key, pod_group, self._group_state(key, gangs.min_member(pod_group)))

    # --- gangs -------------------------------------------------------------------------------

    async def _schedule_gang(self, key: GroupKey, infos: dict[str, NodeInfo]) -> None:
        pod_group = await self._get_pod_group(key)
        # Members and pending pods as the informer has them now, after the wait for the API.
        members = self._members(key)
        pending = sorted((pod for pod in members if self._serves(pod)), key=_queue_order)
        if not pending:
            return
        if pod_group is None:
            self._groups_waiting = True
            await self._report_verdicts(gangs.missing_group_verdicts(key, pending))
            return
        minimum = gangs.min_member(pod_group)
        bound = sum(1 for pod in members if self._scheduled(pod))
        if len(members) < minimum:
            self._groups_waiting = True
            await self._report_verdicts(gangs.too_few_verdicts(key, pending, len(members), minimum, bound, len(infos)))
            await self._write_group_status(key, pod_group, self._group_state(key, minimum, too_few=True))
            return
        explain = gangs.volcano_rejections if key.kind == gangs.VOLCANO else None
        attempts, untried = attempt_group(pending, infos, stop_at_failure=minimum >= len(members), explain=explain)
        placed = [a for a in attempts if a.node is not None]
        if bound + len(placed) >= minimum:
            for attempt in placed:
                assert attempt.node is not None
                await self._bind(attempt.pod, attempt.node)
            await self._report_verdicts([self._alone(a, len(infos)) for a in attempts if a.node is None])
            await self._write_group_status(key, pod_group, self._group_state(key, minimum))
            return
        for attempt in placed:
            assert attempt.node is not None
            infos[attempt.node].forget(attempt.pod)
        verdicts, message = gangs.failure_verdicts(
            key, attempts, untried, minimum=minimum, bound=bound, members=len(members), node_count=len(infos))
        await self._report_verdicts(verdicts)
        await self._write_group_status(key, pod_group, self._group_state(key, minimum, unschedulable=message))
        await self._record_group_event(key, pod_group, message)

    def _alone(self, attempt: Attempt, node_count: int) -> Verdict:
        """A member left out of a group that is placed without it: an ordinary unschedulable pod."""
        pod, key = attempt.pod, self._group_key(attempt.pod)
        if key is not None and key.kind == gangs.VOLCANO:
            return Verdict(pod, gangs.UNSCHEDULABLE, messages.volcano_fit_error(node_count, attempt.rejections))
        return Verdict(pod, gangs.UNSCHEDULABLE, messages.fit_error(pod, node_count, attempt.rejections))

    def _members(self, key: GroupKey) -> list[Pod]:
        """The pods naming the group that count: not finished, not on their way out."""
        assert self._pods is not None
        return [pod for pod in self._pods.objects.values()
                if self._group_key(pod) == key and not is_terminal(pod) and pod.metadata.deletionTimestamp is None]

    def _scheduled(self, pod: Pod) -> bool:
        return bool(pod.spec.nodeName) or pod.metadata.uid in self._assumed

    def _group_state(self, key: GroupKey, minimum: int, *, too_few: bool = False,
                     unschedulable: str | None = None) -> GroupState:
        assert self._pods is not None
        everyone = [pod for pod in self._pods.objects.values()
                    if self._group_key(pod) == key and pod.metadata.deletionTimestamp is None]
        phases: dict[str, int] = {}
        for pod in everyone:
            phase = (pod.status.phase if pod.status else None) or "Pending"
            phases[phase] = phases.get(phase, 0) + 1
        members = [pod for pod in everyone if not is_terminal(pod)]
        scheduled = sum(1 for pod in everyone if self._scheduled(pod))
        return GroupState(minimum, len(members), scheduled, phases, too_few=too_few, unschedulable=unschedulable)

    async def _get_pod_group(self, key: GroupKey) -> dict[str, Any] | None:
        """The PodGroup as a dict; None if it (or its CRD) does not exist."""
        assert self._api is not None
        try:
            obj = await self._api.client.get(key.flavour.resource, key.name, namespace=key.namespace)
        except API_ERRORS as e:
            if status_code(e) == 404:
                return None
            raise
        return obj.to_dict()

    async def _write_group_status(self, key: GroupKey, pod_group: dict[str, Any], state: GroupState) -> None:
        assert self._api is not None
        current = pod_group.get("status") or {}
        wanted = gangs.desired_status(key.kind, current, state, timestamp())
        if wanted == current:
            return
        resource = key.flavour.resource
        target = resource.Status if key.flavour.status_subresource else resource  # Volcano's CRD has no /status
        try:
            await self._api.client.patch(target, key.name, {"status": wanted}, namespace=key.namespace,
                                         patch_type=PatchType.MERGE)
        except API_ERRORS as e:
            if status_code(e) != 404:
                raise
        pod_group["status"] = wanted

    async def _record_group_event(self, key: GroupKey, pod_group: dict[str, Any], message: str) -> None:
        """Volcano's scheduler also tells the PodGroup why ("Unschedulable" warning)."""
        if key.kind != gangs.VOLCANO:
            return
        meta = pod_group["metadata"]
        subject = Subject("PodGroup", meta["name"], meta["uid"], meta["namespace"], pod_group["apiVersion"])
        recorder = next(r for name, r in self._recorders.items() if self._flavours[name] == gangs.VOLCANO)
        await recorder.record(subject, WARNING, "Unschedulable", message)

    async def _report_verdicts(self, verdicts: list[Verdict]) -> None:
        for verdict in verdicts:
            await self._report_unschedulable(verdict.pod, verdict.message, verdict.reason)

    def _recorder(self, pod: Pod) -> EventRecorder:
        return self._recorders.get(pod.spec.schedulerName or DEFAULT_NAME) or self._recorders[self.name]

    async def _bind(self, pod: Pod, node: str) -> None:
        assert self._api is not None
        meta = pod.metadata
        self._assumed[meta.uid] = node
        try:
            await self._api.bind_pod(namespace=meta.namespace, name=meta.name, uid=meta.uid, node=node)
        except API_ERRORS as e:
            self._assumed.pop(meta.uid, None)
            if status_code(e) in (404, 409):  # deleted, or bound by someone else meanwhile
                log.info("binding %s/%s to %s skipped: %s", meta.namespace, meta.name, node, e)
                return
            raise
        self._failures.pop(meta.uid, None)
        log.info("bound %s/%s to %s", meta.namespace, meta.name, node)
        await self._recorder(pod).record(
            Subject.of_pod(pod), NORMAL, "Scheduled", f"Successfully assigned {meta.namespace}/{meta.name} to {node}"
        )

    async def _report_unschedulable(self, pod: Pod, message: str, reason: str = gangs.UNSCHEDULABLE) -> None:
        """PodScheduled=False (reason Unschedulable, or Volcano's Schedulable) and a FailedScheduling event."""
        uid = pod.metadata.uid
        last = self._failures.get(uid)
        if (last is not None and (last.reason, last.message) == (reason, message)
                and time.monotonic() - last.recorded_at < self._event_refresh):
            return
        await self._set_unschedulable_condition(pod, message, reason)
        self._failures[uid] = _Failure(reason, message, time.monotonic())
        await self._recorder(pod).record(Subject.of_pod(pod), WARNING, "FailedScheduling", message)

    async def _set_unschedulable_condition(self, pod: Pod, message: str, reason: str) -> None:
        assert self._api is not None
        conditions = [c.to_dict() for c in (pod.status.conditions or [])] if pod.status else []
        old = next((c for c in conditions if c["type"] == "PodScheduled"), None)
        wanted = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
        if old is not None and all(old.get(k) == v for k, v in wanted.items()):
            return
        same_status = old is not None and old.get("status") == "False"
        wanted["lastProbeTime"] = None
        wanted["lastTransitionTime"] = old.get("lastTransitionTime") if same_status and old else timestamp()
        others = [c for c in conditions if c["type"] != "PodScheduled"]
        meta = pod.metadata
        try:
            await self._api.patch_pod_status(
                namespace=meta.namespace, name=meta.name, status={"conditions": others + [wanted]}
            )
        except API_ERRORS as e:
            if status_code(e) != 404:
                raise


def place_group(group: list[Pod], infos: dict[str, NodeInfo]) -> list[Placement]:
    """Place every pod of the group, or none of them (infos are left as they were on failure)."""
    placed: list[tuple[Pod, NodeInfo]] = []
    for pod in group:
        node, rejections = _choose_node(pod, infos)
        if node is None:
            message = messages.fit_error(pod, len(infos), rejections)
            for done, info in placed:
                info.forget(done)
            if len(group) > 1:
                message = f"{message} (group of {len(group)} pods not placed)"
            return [Placement(p, None, message) for p in group]
        infos[node].assume(pod)
        placed.append((pod, infos[node]))
    return [Placement(pod, info.name) for pod, info in placed]


def attempt_group(
    pods: list[Pod], infos: dict[str, NodeInfo], *, stop_at_failure: bool, explain: Explain | None = None
) -> tuple[list[Attempt], list[Pod]]:
    """Try the pods in order, counting each one placed against its node (the caller binds them or
    forgets them); with `stop_at_failure` the pods after the first that fits nowhere are not
    tried (returned second), as Volcano stops allocating a job that can no longer be complete.
    `explain` gives a pod's rejections in another scheduler's terms, at the moment it failed."""
    attempts = []
    for index, pod in enumerate(pods):
        node, rejections = _choose_node(pod, infos)
        if node is None and explain is not None:
            rejections = explain(pod, infos)
        attempts.append(Attempt(pod, node, rejections))
        if node is not None:
            infos[node].assume(pod)
        elif stop_at_failure:
            return attempts, pods[index + 1:]
    return attempts, []


def _choose_node(pod: Pod, infos: dict[str, NodeInfo]) -> tuple[str | None, dict[str, Rejection]]:
    """The best node for the pod, or None and why each node refused it."""
    rejections: dict[str, Rejection] = {}
    feasible: list[NodeInfo] = []
    for name in sorted(infos):
        rejection = first_rejection(pod, infos[name], infos, FILTERS)
        if rejection is None:
            feasible.append(infos[name])
        else:
            rejections[name] = rejection
    if not feasible:
        return None, rejections
    best = max(feasible, key=lambda info: least_allocated_score(info, pod))  # first max: lowest name
    return best.name, {}


def _queue_order(pod: Pod) -> tuple[int, str, str, str]:
    created = pod.metadata.creationTimestamp
    return (
        -(pod.spec.priority or 0),
        created.isoformat() if created else "",
        pod.metadata.namespace,
        pod.metadata.name,
    )


def _scheduling_fingerprint(node: Node) -> Any:
    spec, status = node.spec, node.status
    return (
        tuple(sorted((node.metadata.labels or {}).items())),
        tuple((t.key, t.value, t.effect) for t in node_taints(node)),
        bool(spec and spec.unschedulable),
        tuple(sorted((status.allocatable or status.capacity or {}).items())) if status else (),
    )


class Scheduler(OnItsThread):
    """The scheduler on a thread of its own: `with Scheduler(kubeconfig=path): ...`."""

    def __init__(
        self,
        *,
        kubeconfig: KubeconfigSource,
        name: str = DEFAULT_NAME,
        gangs: Mapping[str, str] | None = None,
        retry_interval: float = 1.0,
        event_refresh: float = 60.0,
    ) -> None:
        self.service = SchedulerService(
            kubeconfig, name=name, gangs=gangs, retry_interval=retry_interval, event_refresh=event_refresh
        )
        self._thread = ServiceThread(self.service, name=f"scheduler-{name}")
