"""A pod's status as the kubelet reports it, computed from what the runner knows of its containers.

Phase, conditions and container statuses follow the kubelet's rules (pkg/kubelet/kubelet_pods.go
getPhase, pkg/kubelet/status/generate.go), so that `kubectl get pods` would show the same
STATUS column a real cluster shows: Init:0/1, ContainerCreating, ErrImagePull, CrashLoopBackOff,
Running, Completed, Error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lightkube.models.core_v1 import Container
from lightkube.resources.core_v1 import Pod

from .kube import timestamp

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str | None = None


@dataclass(frozen=True)
class Running:
    started_at: dt.datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    finished_at: dt.datetime
    started_at: dt.datetime | None = None
    message: str | None = None
    signal: int | None = None
    container_id: str | None = None


State = Waiting | Running | Terminated


@dataclass
class ContainerRecord:
    """What the runner knows of one container of the pod (all its restarts)."""

    name: str
    image: str
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy Always
    image_id: str = ""
    container_id: str | None = None
    state: State = field(default_factory=lambda: Waiting("ContainerCreating"))
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False  # running and past its startup probe

    @property
    def running(self) -> bool:
        return isinstance(self.state, Running)

    @property
    def last_exit(self) -> Terminated | None:
        return self.state if isinstance(self.state, Terminated) else self.last_state

    def to_api(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready and self.running,
            "started": self.started and self.running,
            "restartCount": self.restart_count,
            "state": _state(self.state),
            "lastState": _state(self.last_state) if self.last_state else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _state(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        waiting = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": timestamp(state.started_at)}}
    terminated: dict[str, Any] = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "finishedAt": timestamp(state.finished_at),
    }
    if state.started_at is not None:
        terminated["startedAt"] = timestamp(state.started_at)
    if state.message:
        terminated["message"] = state.message
    if state.signal:
        terminated["signal"] = state.signal
    if state.container_id:
        terminated["containerID"] = state.container_id
    return {"terminated": terminated}


def phase(pod: Pod, records: dict[str, ContainerRecord], *, terminal: bool) -> str:
    """The kubelet's getPhase; `terminal`: the pod is being stopped for good (deleted)."""
    spec = pod.spec
    pending_init = failed_init = 0
    for init in spec.initContainers or []:
        record = records[init.name]
        if record.sidecar:
            if not record.running and record.last_exit is None:
                pending_init += 1
            continue
        last = record.last_exit
        if record.running or last is None:
            pending_init += 1
        elif last.exit_code != 0:
            failed_init += 1
    running = waiting = stopped = succeeded = 0
    regular_started = False
    for container in spec.containers:
        record = records[container.name]
        if record.running:
            running += 1
            regular_started = True
        elif isinstance(record.state, Terminated) or (isinstance(record.state, Waiting) and record.last_state):
            stopped += 1
            regular_started = True
            if isinstance(record.state, Terminated) and record.state.exit_code == 0:
                succeeded += 1
        else:
            waiting += 1
    running += sum(1 for init in spec.initContainers or [] if records[init.name].sidecar and records[init.name].running)
    if failed_init and spec.restartPolicy == "Never":
        return "Failed"
    if (pending_init and not regular_started) or waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if spec.restartPolicy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if spec.restartPolicy == "Never" else "Running"
    return "Pending"


def conditions(
    pod: Pod, records: dict[str, ContainerRecord], pod_phase: str, *, sandbox_ready: bool
) -> list[dict[str, Any]]:
    """The kubelet-owned conditions, without transition times."""
    result = [_condition("PodReadyToStartContainers", sandbox_ready)]
    result.append(_initialized(pod, records, pod_phase))
    containers_ready = _containers_ready(pod, records, pod_phase)
    result.append({**containers_ready, "type": "Ready"})
    result.append(containers_ready)
    result.append(_condition("PodScheduled", True))
    return result


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _initialized(pod: Pod, records: dict[str, ContainerRecord], pod_phase: str) -> dict[str, Any]:
    if pod_phase == "Succeeded":
        return _condition("Initialized", True, "PodCompleted")
    inits = pod.spec.initContainers or []
    regular_started = any(records[c.name].running or records[c.name].last_exit is not None for c in pod.spec.containers)
    incomplete = [
        c.name
        for c in inits
        if not (records[c.name].running if records[c.name].sidecar else _succeeded(records[c.name]))
    ]
    if not incomplete or regular_started:
        return _condition("Initialized", True)
    names = " ".join(incomplete)
    return _condition("Initialized", False, "ContainersNotInitialized", f"containers with incomplete status: [{names}]")


def _succeeded(record: ContainerRecord) -> bool:
    return isinstance(record.state, Terminated) and record.state.exit_code == 0


def _containers_ready(pod: Pod, records: dict[str, ContainerRecord], pod_phase: str) -> dict[str, Any]:
    if pod_phase == "Succeeded":
        return _condition("ContainersReady", False, "PodCompleted")
    if pod_phase == "Failed":
        return _condition("ContainersReady", False, "PodFailed")
    watched: list[Container] = [c for c in pod.spec.initContainers or [] if records[c.name].sidecar]
    watched += pod.spec.containers
    unready = [c.name for c in watched if not (records[c.name].ready and records[c.name].running)]
    if unready:
        names = " ".join(unready)
        return _condition("ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{names}]")
    return _condition("ContainersReady", True)


def merge_conditions(
    current: list[dict[str, Any]], before: list[dict[str, Any]], owned: list[dict[str, Any]], when: dt.datetime
) -> list[dict[str, Any]]:
    """Others' conditions as they are now; ours keep their transition time (from `before`) unless
    their status changed."""
    old = {c["type"]: c for c in before}
    merged = [c for c in current if c["type"] not in KUBELET_CONDITIONS]
    for condition in owned:
        previous = old.get(condition["type"])
        same = previous is not None and previous.get("status") == condition["status"]
        since = previous.get("lastTransitionTime") if same and previous else timestamp(when)
        merged.append({**condition, "lastProbeTime": None, "lastTransitionTime": since})
    return merged


def qos_class(pod: Pod) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' cpu and memory requests and limits."""
    containers = [*pod.spec.containers, *(pod.spec.initContainers or [])]
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.resources
        requests = dict((resources.requests if resources else None) or {})
        limits = dict((resources.limits if resources else None) or {})
        for name in ("cpu", "memory"):
            request = requests.get(name, limits.get(name))
            any_set = any_set or request is not None or name in limits
            if name not in limits or request != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
