"""One pod's life on a node, from binding to removal (the kubelet's pod worker).

admission (the pod's devices, see devices.py; a pod the node cannot serve is rejected: Failed)
-> volumes -> init containers, in order, each to success -> containers (each restarted according to
the restart policy, with crash-loop back-off) -> terminal phase. When the pod gets a
deletionTimestamp: preStop hooks, SIGTERM, SIGKILL at the end of the grace period, volumes torn
down, final status, then the DELETE (grace 0, uid precondition) that removes it from the API.
A pod deleted from the API at once (force delete) is killed with a one second grace period.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.models.core_v1 import Container
from lightkube.resources.core_v1 import Pod

from .backoff import Backoff, BackoffPolicy
from .devices import NO_GRANT, AdmissionError, NodeDevices, PodDevices
from .env import EnvError, EnvResolver, PodAddresses, expand
from .events import NORMAL, WARNING, EventRecorder, Subject
from .kube import API_ERRORS, Api, now, status_code, timestamp
from .logs import LogUnavailable, read_log
from .probes import run_probe
from .runtime import (
    ContainerConfig,
    ContainerHandle,
    ContainerStartError,
    Image,
    ImagePullError,
    Runtime,
)
from .status import (
    ContainerRecord,
    Running,
    Terminated,
    Waiting,
    conditions,
    merge_conditions,
    phase,
    qos_class,
)
from .volumes import PodVolumes, VolumeError

log = logging.getLogger(__name__)

DEFAULT_GRACE = 30
MIN_GRACE_AFTER_PRESTOP = 2.0
VOLUME_RETRY = BackoffPolicy(initial=1.0, maximum=30.0)
#: Waits between attempts of an API call that failed (status update, final delete).
API_RETRY = BackoffPolicy(initial=0.2, maximum=5.0)
#: How long before a crashed container's restart a 1.36 kubelet shows CrashLoopBackOff.
BACK_OFF_SHOWN = 0.08


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker on one node shares."""

    api: Api
    events: EventRecorder
    runtime: Runtime
    node_name: str
    node_allocatable: dict[str, str]
    host_ip: str
    state_dir: Path
    backoff: BackoffPolicy
    devices: NodeDevices


def go_duration(seconds: float) -> str:
    """Seconds the way Go prints a time.Duration (10s, 1m20s, 5m0s, 200ms)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def default_pull_policy(image: str) -> str:
    tag = image.rsplit("/", 1)[-1]
    return "Always" if "@" not in tag and (":" not in tag or tag.endswith(":latest")) else "IfNotPresent"


class PodWorker:
    def __init__(self, pod: Pod, node: NodeContext) -> None:
        self.pod = pod
        self._node = node
        meta = pod.metadata
        self._label = f"{meta.name}_{meta.namespace}({meta.uid})"
        self._directory = node.state_dir / "pods" / meta.uid
        self._log_dir = node.state_dir / "logs" / f"{meta.namespace}_{meta.name}_{meta.uid}"  # kept after the pod
        self._addresses = PodAddresses(host_ip=node.host_ip, pod_ip=node.host_ip)
        self._volumes = PodVolumes(pod, self._directory, node.api, self._addresses)
        inits = {c.name: ContainerRecord(c.name, c.image, init=True, sidecar=c.restartPolicy == "Always")
                 for c in pod.spec.initContainers or []}  # fmt: skip
        self._records = {**inits, **{c.name: ContainerRecord(c.name, c.image) for c in pod.spec.containers}}
        waiting = Waiting("PodInitializing" if inits else "ContainerCreating")
        for record in self._records.values():
            record.state = waiting
        self._terminating = asyncio.Event()
        self._deadline = float("inf")
        self._deadline_moved = asyncio.Event()  # replaced (after being set) whenever the deadline moves
        self._gone = False  # removed from the API already (force delete): no status, no DELETE
        self._sandbox_ready = False
        self._devices: PodDevices | None = None
        self._rejected: AdmissionError | None = None
        self._start_time = now()
        self._last_sent: dict[str, Any] | None = None
        self._status_lock = asyncio.Lock()
        self._status_retry: asyncio.Task | None = None
        self._supervisors: list[asyncio.Task] = []
        self._state_changed = asyncio.Event()  # replaced (after being set) at every status report

    # --- from the informer -------------------------------------------------------------------

    def update(self, pod: Pod) -> None:
        self.pod = pod
        if pod.metadata.deletionTimestamp is not None:
            self._terminate(self._grace(pod))

    def vanished(self, pod: Pod) -> None:
        """The pod is gone from the API: force-deleted (grace 0, which the kubelet makes 1 s), or
        removed by our own final delete (nothing left to stop)."""
        self._gone = True
        self._terminate(1)

    def _grace(self, pod: Pod) -> int:
        grace = pod.metadata.deletionGracePeriodSeconds
        if grace is None:
            grace = pod.spec.terminationGracePeriodSeconds
        return max(1, DEFAULT_GRACE if grace is None else grace)

    def _terminate(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        if deadline < self._deadline:
            self._deadline = deadline
            moved, self._deadline_moved = self._deadline_moved, asyncio.Event()
            moved.set()
        self._terminating.set()

    def container_log(self, container: str, tail_lines: int | None) -> str:
        """What the container's newest instance wrote (the kubelet's GetContainerLogs); its
        refusals in its own words (pkg/kubelet/kubelet_pods.go validateContainerLogStatus)."""
        record, name = self._records.get(container), self.pod.metadata.name
        if record is None:
            raise LogUnavailable(f"container {container} is not valid for pod {name}")
        if isinstance(record.state, Waiting) and record.last_state is None:
            why = {"ErrImagePull": "image can't be pulled",
                   "ImagePullBackOff": "trying and failing to pull image"}.get(record.state.reason, record.state.reason)
            raise LogUnavailable(f'container "{container}" in pod "{name}" is waiting to start: {why}')
        return read_log(self._log_dir / container, tail_lines)

    # --- the pod's life ----------------------------------------------------------------------

    async def run(self) -> None:
        if self.pod.status is not None and self.pod.status.phase in ("Succeeded", "Failed"):
            await self._terminating.wait()  # nothing runs; only its removal is left
        else:
            await self._live()
        await self._finish()

    async def _live(self) -> None:
        if not await self._admit():
            await self._terminating.wait()
            return
        await self._report()
        if not await self._setup_volumes():
            return
        self._sandbox_ready = True
        if await self._initialize():
            for container in self.pod.spec.containers:
                self._supervise_in_background(container, self.pod.spec.restartPolicy or "Always")
        await asyncio.gather(*self._supervisors)
        self._node.devices.release(self.pod.metadata.uid)  # no container left to use them
        await self._report()
        if not self._terminating.is_set():  # completed or failed by itself: wait for the deletion
            self._volumes.teardown()
            await self._terminating.wait()

    async def _finish(self) -> None:
        self._node.devices.release(self.pod.metadata.uid)
        self._volumes.teardown()
        if self._gone:
            return
        await self._report()
        meta = self.pod.metadata
        retry = Backoff(API_RETRY, immediate_first=False)
        while True:
            try:
                await self._node.api.delete_pod_now(namespace=meta.namespace, name=meta.name, uid=meta.uid)
                return
            except API_ERRORS as e:
                log.warning("could not remove pod %s/%s, retrying: %s", meta.namespace, meta.name, e)
            await asyncio.sleep(retry.delay())

    async def kill_now(self) -> None:
        """The runner stops: end the containers at once, leave the API as it is."""
        self._gone = True
        self._terminate(0)
        tasks = [*self._supervisors, *([self._status_retry] if self._status_retry else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._node.devices.release(self.pod.metadata.uid)
        self._volumes.teardown()

    async def _admit(self) -> bool:
        """The kubelet's admission: allocate the pod's devices, or reject the pod (phase Failed)."""
        try:
            self._devices = self._node.devices.admit(self.pod)
        except AdmissionError as e:
            self._rejected = e
            await self._report()
            await self._event(WARNING, e.reason, e.message)
            return False
        return True

    async def _setup_volumes(self) -> bool:
        retry = Backoff(VOLUME_RETRY, immediate_first=False)
        while not self._terminating.is_set():
            try:
                await self._volumes.setup()
                return True
            except VolumeError as e:
                await self._event(WARNING, "FailedMount", str(e))
            except API_ERRORS as e:
                log.warning("volumes of %s: %s", self._label, e)
            if await self._sleep(retry.delay()):
                break
        return False

    async def _initialize(self) -> bool:
        """Run the init containers in order; False if the pod cannot go on (failed or deleted)."""
        never = self.pod.spec.restartPolicy == "Never"
        for container in self.pod.spec.initContainers or []:
            record = self._records[container.name]
            if record.sidecar:  # runs on beside the others; the next step waits for its start
                self._supervise_in_background(container, "Always")
                await self._until(lambda record=record: record.running and record.started)
                continue
            await self._supervise(container, "Never" if never else "OnFailure")
            last = record.last_exit
            if self._terminating.is_set() or last is None or last.exit_code != 0:
                return False
        return not self._terminating.is_set()

    async def _until(self, holds: Callable[[], bool]) -> None:
        """Wait until `holds()` (checked at each status change) or until the pod stops."""
        while not holds() and not self._terminating.is_set():
            waits = [asyncio.create_task(self._state_changed.wait()), asyncio.create_task(self._terminating.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    def _supervise_in_background(self, container: Container, policy: str) -> None:
        self._supervisors.append(asyncio.create_task(self._supervise(container, policy)))

    async def _supervise(self, container: Container, policy: str) -> None:
        """Run one container, restarting it as `policy` says, until it is done or the pod stops."""
        record = self._records[container.name]
        crashes = Backoff(self._node.backoff)
        config_retry = Backoff(self._node.backoff, immediate_first=False)
        while not self._terminating.is_set():
            image = await self._ensure_image(container, record)
            if image is None:
                return
            started_at = time.monotonic()
            outcome = await self._start(container, record, image)
            if outcome is None:  # not started (config error: retry, no restart; or the pod stops)
                if await self._sleep(config_retry.delay()):
                    return
                continue
            if isinstance(outcome, ContainerHandle):
                await self._run_until_exit(container, record, outcome)
            exit_code = record.state.exit_code if isinstance(record.state, Terminated) else 0
            if self._terminating.is_set() or policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            delay = crashes.delay(time.monotonic() - started_at)
            if delay > 0 and await self._back_off(container, record, delay):
                return

    async def _back_off(self, container: Container, record: ContainerRecord, delay: float) -> bool:
        """Wait before a restart; True if the pod stops meanwhile. A 1.36 kubelet keeps showing
        the exit (state.terminated) for the back-off, and shows ``waiting: CrashLoopBackOff``
        (with its BackOff event) only from the sync that finds the back-off not quite over,
        about BACK_OFF_SHOWN before the restart (measured on 1.36.2)."""
        assert isinstance(record.state, Terminated)
        if await self._sleep(max(delay - BACK_OFF_SHOWN, 0.0)):
            return True
        record.last_state = record.state
        message = f"back-off {go_duration(delay)} restarting failed container={container.name} pod={self._label}"
        record.state = Waiting("CrashLoopBackOff", message)
        await self._report()
        await self._event(
            WARNING, "BackOff", f"Back-off restarting failed container {container.name} in pod {self._label}", container
        )
        return await self._sleep(min(delay, BACK_OFF_SHOWN))

    # --- images ------------------------------------------------------------------------------

    async def _ensure_image(self, container: Container, record: ContainerRecord) -> Image | None:
        """The container's image, pulled as its policy says; None if the pod stops first."""
        policy = container.imagePullPolicy or default_pull_policy(container.image)
        retry = Backoff(self._node.backoff, immediate_first=False)
        while not self._terminating.is_set():
            image = await self._pull(container, record, policy)
            if image is not None:
                record.image, record.image_id = image.reference, image.image_id
                return image
            assert isinstance(record.state, Waiting)
            error = record.state
            delay = retry.delay()
            if error.reason == "ErrImagePull":
                record.state = Waiting(
                    "ImagePullBackOff", f'Back-off pulling image "{container.image}": {error.message}'
                )
                await self._report()
                await self._event(NORMAL, "BackOff", f'Back-off pulling image "{container.image}"', container)
                await self._event(WARNING, "Failed", "Error: ImagePullBackOff", container)
            if await self._sleep(delay):
                break
        return None

    async def _pull(self, container: Container, record: ContainerRecord, policy: str) -> Image | None:
        runtime, name = self._node.runtime, container.image
        if policy != "Always":
            present = await runtime.image_present(name)
            if present is not None:
                await self._event(NORMAL, "Pulled", f'Container image "{name}" already present on machine', container)
                return present
            if policy == "Never":
                message = f'Container image "{name}" is not present with pull policy of Never'
                record.state = Waiting("ErrImageNeverPull", message)
                await self._report()
                await self._event(WARNING, "ErrImageNeverPull", message, container)
                await self._event(WARNING, "Failed", "Error: ErrImageNeverPull", container)
                return None
        await self._event(NORMAL, "Pulling", f'Pulling image "{name}"', container)
        began = time.monotonic()
        try:
            image = await runtime.pull_image(name)
        except ImagePullError as e:
            message = f'Failed to pull image "{name}": {e.message}'
            record.state = Waiting("ErrImagePull", message)
            await self._report()
            await self._event(WARNING, "Failed", message, container)
            await self._event(WARNING, "Failed", "Error: ErrImagePull", container)
            return None
        took = go_duration(time.monotonic() - began)
        await self._event(
            NORMAL, "Pulled", f'Successfully pulled image "{name}" in {took} ({took} including waiting)', container
        )
        return image

    # --- one container instance --------------------------------------------------------------

    async def _start(
        self, container: Container, record: ContainerRecord, image: Image
    ) -> ContainerHandle | Terminated | None:
        """Start an instance: its handle, a Terminated (StartError, or killed because the pod's deletion
        overtook the start), or None (config error: retry; or not started, the pod stopping)."""
        try:
            config = await self._container_config(
                container, image, record.restart_count + (record.last_exit is not None)
            )
        except (EnvError, VolumeError) as e:
            record.state = Waiting("CreateContainerConfigError", str(e))
            await self._report()
            await self._event(WARNING, "Failed", f"Error: {e}", container)
            return None
        if self._terminating.is_set():  # the kubelet starts no container once it has seen the deletion
            return None
        if record.last_exit is not None:  # a restart: the previous instance becomes lastState
            record.last_state = record.last_exit
            record.restart_count += 1
        try:
            handle = await self._node.runtime.start_container(config)
        except ContainerStartError as e:
            when = now()
            record.state = Terminated(128, "StartError", when, started_at=when, message=e.message)
            await self._report()
            await self._event(WARNING, "Failed", f"Error: {e.message}", container)
            return record.state
        record.container_id = handle.container_id
        if self._terminating.is_set():
            return await self._kill_overtaken(record, handle)
        record.state = Running(handle.started_at)
        record.started = container.startupProbe is None
        record.ready = record.started and container.readinessProbe is None
        await self._report()
        await self._event(NORMAL, "Created", f"Created container {container.name}", container)
        await self._event(NORMAL, "Started", f"Started container {container.name}", container)
        return handle

    async def _kill_overtaken(self, record: ContainerRecord, handle: ContainerHandle) -> Terminated:
        """Kill a container whose pod was deleted while it was being started (the kubelet cancels
        the start; the runtime kills what it was starting). SIGKILL, not SIGTERM: the program may
        not handle SIGTERM yet, and a PID 1 without a handler never gets it, which left the pod
        Terminating for its whole grace period."""
        runtime = self._node.runtime
        await runtime.signal_container(handle, signal.SIGKILL)
        status = await runtime.wait_container(handle)
        record.state = Terminated(
            status.exit_code, "Error", status.finished_at, started_at=handle.started_at,
            signal=status.signal, container_id=handle.container_id,
        )  # fmt: skip
        return record.state

    async def _container_config(self, container: Container, image: Image, attempt: int) -> ContainerConfig:
        node = self._node
        env = await EnvResolver(node.api, self.pod, self._addresses, node.node_allocatable).build(container)
        variables = dict(env)
        grant = node.devices.grant(self._devices, container.name) if self._devices else NO_GRANT
        meta, spec = self.pod.metadata, self.pod.spec
        security = container.securityContext
        pod_security = spec.securityContext
        return ContainerConfig(
            pod_namespace=meta.namespace,
            pod_name=meta.name,
            pod_uid=meta.uid,
            name=container.name,
            image=image,
            command=tuple(expand(a, variables) for a in container.command) if container.command else None,
            args=tuple(expand(a, variables) for a in container.args) if container.args else None,
            env=(*env, *grant.env),  # the device plugin's variables come last, and win
            working_dir=container.workingDir,
            hostname=node.node_name if spec.hostNetwork else (spec.hostname or meta.name),
            mounts=tuple(self._volumes.mounts(container, variables)),
            log_path=self._log_dir / container.name / f"{attempt}.log",
            run_as_user=_first(security, pod_security, "runAsUser"),
            run_as_group=_first(security, pod_security, "runAsGroup"),
            limits=tuple(((container.resources.limits if container.resources else None) or {}).items()),
            devices=grant.devices,
            privileged=bool(getattr(security, "privileged", None)),
        )

    async def _run_until_exit(self, container: Container, record: ContainerRecord, handle: ContainerHandle) -> None:
        runtime = self._node.runtime
        exited = asyncio.create_task(runtime.wait_container(handle))
        stopping = asyncio.create_task(self._terminating.wait())
        probes = self._start_probes(container, record, handle, exited)
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._stop_container(container, handle, exited)
            status = await exited
        finally:
            for task in [stopping, *probes]:
                task.cancel()
            if not exited.done():  # cancelled (runner stopping): do not leave the process behind
                await runtime.signal_container(handle, signal.SIGKILL)
                exited.cancel()
        reason = "OOMKilled" if status.oom_killed else ("Completed" if status.exit_code == 0 else "Error")
        record.state = Terminated(
            status.exit_code, reason, status.finished_at, started_at=handle.started_at,
            signal=status.signal, container_id=handle.container_id,
            message=_termination_message(container, handle, status.exit_code),
        )  # fmt: skip
        record.ready = record.started = False
        await self._report()

    async def _stop_container(self, container: Container, handle: ContainerHandle, exited: asyncio.Task) -> None:
        """preStop hook, SIGTERM, and SIGKILL when the grace period is over."""
        runtime = self._node.runtime
        await self._event(NORMAL, "Killing", f"Stopping container {container.name}", container)
        hook = container.lifecycle.preStop if container.lifecycle else None
        extra = 0.0
        if hook is not None and not self._gone:
            await self._pre_stop(container, handle, hook, exited)
            extra = MIN_GRACE_AFTER_PRESTOP
        await runtime.signal_container(handle, signal.SIGTERM)
        if not await self._exits_in_grace(exited, extra):
            await runtime.signal_container(handle, signal.SIGKILL)

    async def _exits_in_grace(self, exited: asyncio.Task, extra: float) -> bool:
        """Wait for the exit until the deadline (at least `extra` s); a force delete shortens it."""
        while True:
            moved = asyncio.create_task(self._deadline_moved.wait())
            remaining = max(self._deadline - time.monotonic(), extra)
            done, _ = await asyncio.wait({exited, moved}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            moved.cancel()
            if exited in done:
                return True
            if moved not in done:
                return False
            extra = 0.0

    async def _pre_stop(self, container: Container, handle: ContainerHandle, hook: Any, exited: asyncio.Task) -> None:
        budget = max(self._deadline - time.monotonic(), 0.1)
        if hook.exec is not None:
            result = await self._node.runtime.exec_in_container(
                handle, list(hook.exec.command or []), env={}, timeout=budget
            )
            if result.exit_code != 0 or result.timed_out:
                command = " ".join(hook.exec.command or [])
                message = (
                    f'PreStopHook Exec lifecycle hook ([{command}]) for Container "{container.name}" in Pod '
                    f"\"{self._label}\" failed - error: command '{command}' exited with {result.exit_code}: "
                    f"{result.output.strip()}"
                )
                await self._event(WARNING, "FailedPreStopHook", message, container)
        elif hook.sleep is not None:
            await asyncio.wait([exited], timeout=min(hook.sleep.seconds, budget))

    def _start_probes(
        self, container: Container, record: ContainerRecord, handle: ContainerHandle, exited: asyncio.Task
    ) -> list[asyncio.Task]:
        runtime = self._node.runtime
        tasks: list[asyncio.Task] = []

        def launch(probe: Any, on_change: Callable) -> None:
            tasks.append(asyncio.create_task(run_probe(probe, container, runtime, handle, on_change)))

        async def readiness(ok: bool, output: str) -> None:
            record.ready = ok
            await self._report()
            if not ok:
                await self._event(WARNING, "Unhealthy", f"Readiness probe failed: {output}", container)

        async def liveness(ok: bool, output: str) -> None:
            if ok or self._terminating.is_set():
                return
            await self._event(WARNING, "Unhealthy", f"Liveness probe failed: {output}", container)
            await self._restart_unhealthy(container, handle, exited)

        async def startup(ok: bool, output: str) -> None:
            if not ok:
                await self._event(WARNING, "Unhealthy", f"Startup probe failed: {output}", container)
                await self._restart_unhealthy(container, handle, exited)
                return
            record.started = True
            record.ready = container.readinessProbe is None
            await self._report()
            after_startup()

        def after_startup() -> None:
            if container.readinessProbe is not None:
                launch(container.readinessProbe, readiness)
            if container.livenessProbe is not None:
                launch(container.livenessProbe, liveness)

        if container.startupProbe is not None:
            launch(container.startupProbe, startup)
        else:
            after_startup()
        return tasks

    async def _restart_unhealthy(self, container: Container, handle: ContainerHandle, exited: asyncio.Task) -> None:
        message = f"Container {container.name} failed liveness probe, will be restarted"
        await self._event(NORMAL, "Killing", message, container)
        runtime = self._node.runtime
        await runtime.signal_container(handle, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self._grace(self.pod))
        except TimeoutError:
            await runtime.signal_container(handle, signal.SIGKILL)

    # --- status and events -------------------------------------------------------------------

    async def _report(self) -> None:
        """Send the pod's status if it changed since the last one sent; retried until it is sent."""
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()
        if self._gone:
            return
        async with self._status_lock:
            if not await self._send_if_changed():
                self._retry_report()

    async def _send_if_changed(self) -> bool:
        """False if the status could not be sent (the API failed): it must be sent again."""
        status = self._status()
        if status == self._last_sent:
            return True
        meta = self.pod.metadata
        try:
            await self._node.api.patch_pod_status(namespace=meta.namespace, name=meta.name, status=status)
        except API_ERRORS as e:
            if status_code(e) == 404:
                self._gone = True
                return True
            log.warning("status of %s not sent: %s", self._label, e)
            return False
        self._last_sent = status
        return True

    def _retry_report(self) -> None:
        if self._status_retry is None or self._status_retry.done():
            self._status_retry = asyncio.create_task(self._report_later())

    async def _report_later(self) -> None:
        retry = Backoff(API_RETRY, immediate_first=False)
        while not self._gone:
            await asyncio.sleep(retry.delay())
            async with self._status_lock:
                if await self._send_if_changed():
                    return

    def _status(self) -> dict[str, Any]:
        pod, records = self.pod, self._records
        if self._rejected is not None:  # as the kubelet's rejectPod writes it; conditions stay
            return {"phase": "Failed", "reason": self._rejected.reason,
                    "message": f"Pod was rejected: {self._rejected.message}", "qosClass": qos_class(pod)}
        pod_phase = phase(pod, records, terminal=self._terminating.is_set())
        current = [c.to_dict() for c in (pod.status.conditions or [])] if pod.status else []
        before = self._last_sent["conditions"] if self._last_sent else current
        owned = conditions(pod, records, pod_phase, sandbox_ready=self._sandbox_ready)
        ip = [{"ip": self._node.host_ip}]
        status: dict[str, Any] = {
            "phase": pod_phase,
            "conditions": merge_conditions(current, before, owned, now()),
            "hostIP": self._node.host_ip,
            "hostIPs": ip,
            "podIP": self._node.host_ip,
            "podIPs": ip,
            "startTime": timestamp(self._start_time),
            "qosClass": qos_class(pod),
            "containerStatuses": [records[c.name].to_api() for c in pod.spec.containers],
        }
        if pod.spec.initContainers:
            status["initContainerStatuses"] = [records[c.name].to_api() for c in pod.spec.initContainers]
        return status

    async def _event(self, kind: str, reason: str, message: str, container: Container | None = None) -> None:
        field_path = None
        if container is not None:
            group = "initContainers" if self._records[container.name].init else "containers"
            field_path = f"spec.{group}{{{container.name}}}"
        await self._node.events.record(Subject.of_pod(self.pod, field_path), kind, reason, message)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early if the pod stops; True if it did."""
        try:
            await asyncio.wait_for(self._terminating.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _first(container_context: Any, pod_context: Any, name: str) -> Any:
    for context in (container_context, pod_context):
        value = getattr(context, name, None) if context is not None else None
        if value is not None:
            return value
    return None


def _termination_message(container: Container, handle: ContainerHandle, exit_code: int) -> str | None:
    """FallbackToLogsOnError: the end of the log when the container failed."""
    if container.terminationMessagePolicy != "FallbackToLogsOnError" or exit_code == 0:
        return None
    try:
        lines = handle.config.log_path.read_text(errors="replace").splitlines()[-80:]
    except OSError:
        return None
    return "\n".join(lines)[-2048:] or None
