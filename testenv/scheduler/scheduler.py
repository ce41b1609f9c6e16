"""A kube-scheduler for the test environment: binds pending pods to nodes through the API.

One cycle takes every pending pod this scheduler serves (highest priority, then oldest first),
checks it against a snapshot of the nodes, binds it to the least allocated node that fits, or
reports why none fits (PodScheduled=False/Unschedulable and a FailedScheduling event). A cycle
runs when a pod or node changes in a way that can matter, and every `retry_interval` while some
pod is unschedulable.

Pods are placed in groups, all or nothing; today every group is one pod. Gang scheduling (a
PodGroup's minMember) only has to change `_groups()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Self

from lightkube.resources.core_v1 import Node, Pod

from testenv.runner.events import NORMAL, WARNING, EventRecorder, Subject
from testenv.runner.informer import ADDED, DELETED, Informer
from testenv.runner.kube import (
    API_ERRORS,
    Api,
    KubeconfigSource,
    status_code,
    timestamp,
)
from testenv.runner.service import ServiceThread

from . import messages
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
    message: str
    recorded_at: float


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
        retry_interval: float = 1.0,
        event_refresh: float = 60.0,
    ) -> None:
        self.name = name
        self._kubeconfig = kubeconfig
        self._retry_interval = retry_interval
        #: A failure with an unchanged message is recorded again at most this often (seconds),
        #: so retrying every second does not write an event every second.
        self._event_refresh = event_refresh
        self._api: Api | None = None
        self._events: EventRecorder | None = None
        self._pods: Informer[Pod] | None = None
        self._nodes: Informer[Node] | None = None
        self._wake = asyncio.Event()
        self._assumed: dict[str, str] = {}  # pod uid -> node, bound but not yet seen bound
        self._failures: dict[str, _Failure] = {}  # pod uid -> last failure reported
        self._node_fingerprints: dict[str, Any] = {}
        self._cycle_failed = False  # the API failed during the last cycle: retry it

    # --- service -----------------------------------------------------------------------------

    async def setup(self) -> None:
        self._api = Api(self._kubeconfig, field_manager=self.name)
        self._events = EventRecorder(self._api, component=self.name)
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
        if kind == DELETED:
            self._assumed.pop(uid, None)
            self._failures.pop(uid, None)
            if self._events is not None:
                self._events.forget(uid)
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
            if self._failures or self._cycle_failed:
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
            and (spec.schedulerName or DEFAULT_NAME) == self.name
            and not spec.schedulingGates
            and pod.metadata.deletionTimestamp is None
            and not is_terminal(pod)
            and pod.metadata.uid not in self._assumed
        )

    def _pending(self) -> list[Pod]:
        assert self._pods is not None
        pending = [pod for pod in self._pods.objects.values() if self._serves(pod)]
        return sorted(pending, key=_queue_order)

    def _groups(self, pending: list[Pod]) -> list[list[Pod]]:
        """Pods that must be placed together, all or nothing."""
        return [[pod] for pod in pending]

    async def schedule_pending(self) -> None:
        pending = self._pending()
        if not pending:
            return
        assert self._pods is not None and self._nodes is not None
        infos = build(self._nodes.objects.values(), self._pods.objects.values(), self._assumed)
        for group in self._groups(pending):
            for placement in place_group(group, infos):
                if placement.node is None:
                    await self._report_unschedulable(placement.pod, placement.message)
                else:
                    await self._bind(placement.pod, placement.node)

    async def _bind(self, pod: Pod, node: str) -> None:
        assert self._api is not None and self._events is not None
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
        await self._events.record(
            Subject.of_pod(pod), NORMAL, "Scheduled", f"Successfully assigned {meta.namespace}/{meta.name} to {node}"
        )

    async def _report_unschedulable(self, pod: Pod, message: str) -> None:
        assert self._events is not None
        uid = pod.metadata.uid
        last = self._failures.get(uid)
        if last is not None and last.message == message and time.monotonic() - last.recorded_at < self._event_refresh:
            return
        await self._set_unschedulable_condition(pod, message)
        self._failures[uid] = _Failure(message, time.monotonic())
        await self._events.record(Subject.of_pod(pod), WARNING, "FailedScheduling", message)

    async def _set_unschedulable_condition(self, pod: Pod, message: str) -> None:
        assert self._api is not None
        conditions = [c.to_dict() for c in (pod.status.conditions or [])] if pod.status else []
        old = next((c for c in conditions if c["type"] == "PodScheduled"), None)
        wanted = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
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
        node, message = _choose_node(pod, infos)
        if node is None:
            for done, info in placed:
                info.forget(done)
            if len(group) > 1:
                message = f"{message} (group of {len(group)} pods not placed)"
            return [Placement(p, None, message) for p in group]
        infos[node].assume(pod)
        placed.append((pod, infos[node]))
    return [Placement(pod, info.name) for pod, info in placed]


def _choose_node(pod: Pod, infos: dict[str, NodeInfo]) -> tuple[str | None, str]:
    rejections: dict[str, Rejection] = {}
    feasible: list[NodeInfo] = []
    for name in sorted(infos):
        rejection = first_rejection(pod, infos[name], infos, FILTERS)
        if rejection is None:
            feasible.append(infos[name])
        else:
            rejections[name] = rejection
    if not feasible:
        return None, messages.fit_error(pod, len(infos), rejections)
    best = max(feasible, key=lambda info: least_allocated_score(info, pod))  # first max: lowest name
    return best.name, ""


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


class Scheduler:
    """The scheduler on a thread of its own: `with Scheduler(kubeconfig=path): ...`."""

    def __init__(
        self,
        *,
        kubeconfig: KubeconfigSource,
        name: str = DEFAULT_NAME,
        retry_interval: float = 1.0,
        event_refresh: float = 60.0,
    ) -> None:
        self.service = SchedulerService(
            kubeconfig, name=name, retry_interval=retry_interval, event_refresh=event_refresh
        )
        self._thread = ServiceThread(self.service, name=f"scheduler-{name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
