"""The pod runner: a kubelet for several virtual nodes on this machine.

It registers the nodes of NODES.yaml, keeps them Ready with heartbeats, watches the pods bound to
them (field selector spec.nodeName=<node>) and gives each pod a PodWorker that runs it through the
container runtime. Stopping the runner kills every container, removes every directory and mount
point it made, and marks its nodes NotReady (or deletes them).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Literal

from lightkube.resources.core_v1 import Pod

from .backoff import BackoffPolicy
from .devices import NodeDevices
from .events import EventRecorder
from .images import ImageTable
from .informer import DELETED, Informer
from .kube import API_ERRORS, Api, KubeconfigSource
from .logs import LogServer, pods_by_name
from .nodes import HOST_IP, NodeSpec, VirtualNode, load_nodes
from .pod import NodeContext, PodWorker
from .process import ProcessRuntime
from .runtime import Runtime
from .service import OnItsThread, ServiceThread

log = logging.getLogger(__name__)

OnStop = Literal["notready", "delete"]
KUBELET_BACKOFF = BackoffPolicy()


class KubeletService:
    """The runner as a service (see service.py); `PodRunner` wraps it for tests."""

    def __init__(
        self,
        kubeconfig: KubeconfigSource,
        *,
        nodes: list[NodeSpec],
        state_dir: Path,
        runtime: Runtime,
        backoff: BackoffPolicy = KUBELET_BACKOFF,
        heartbeat_interval: float = 5.0,
        on_stop: OnStop = "notready",
    ) -> None:
        self._kubeconfig = kubeconfig
        self._specs = nodes
        self._state_dir = state_dir
        self.runtime = runtime
        self._backoff = backoff
        self._heartbeat_interval = heartbeat_interval
        self._on_stop = on_stop
        self._api: Api | None = None
        self._nodes: list[VirtualNode] = []
        self._informers: list[Informer[Pod]] = []
        self._contexts: dict[str, NodeContext] = {}
        self.workers: dict[str, PodWorker] = {}  # by pod uid, while the pod is in the API
        self._running: dict[asyncio.Task, PodWorker] = {}  # until the worker is done, in the API or not
        self._logs = LogServer(pods_by_name(lambda: list(self.workers.values())))

    async def setup(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._api = Api(self._kubeconfig, field_manager="kubelet")
        port = await self._logs.start()
        for spec in self._specs:
            node = VirtualNode(spec, self._api, runtime_version=f"{self.runtime.name}://0.1", kubelet_port=port)
            await node.register()
            self._nodes.append(node)
            self._contexts[spec.name] = NodeContext(
                api=self._api,
                events=EventRecorder(self._api, component="kubelet", host=spec.name),
                runtime=self.runtime,
                node_name=spec.name,
                node_allocatable=spec.allocatable,
                host_ip=HOST_IP,
                state_dir=self._state_dir,
                backoff=self._backoff,
                devices=NodeDevices(spec.name, spec.allocatable, spec.labels),
            )
            informer = Informer(self._api.client, Pod, self._on_pod, fields={"spec.nodeName": spec.name})
            await informer.sync()
            self._informers.append(informer)

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for informer in self._informers:
                tasks.create_task(informer.run())
            tasks.create_task(self._heartbeats())

    async def teardown(self) -> None:
        workers = list(self._running.values())
        await asyncio.gather(*(worker.kill_now() for worker in workers), return_exceptions=True)
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.runtime.close()
        await self._logs.close()
        for worker in workers:
            await worker.kill_now()  # again: a worker cancelled mid-setup may have made a volume since
        if self._api is not None:
            await self._leave_nodes()
            await self._api.close()

    async def _leave_nodes(self) -> None:
        for node in self._nodes:
            try:
                if self._on_stop == "delete":
                    await node.delete()
                else:
                    await node.mark_unreachable()
            except API_ERRORS as e:
                log.warning("node %s not updated at stop: %s", node.name, e)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            for node in self._nodes:
                try:
                    await node.heartbeat()
                except API_ERRORS as e:
                    log.warning("heartbeat of node %s failed: %s", node.name, e)
                except Exception:  # a bug must not stop the heartbeats: log it, try again next time
                    log.exception("heartbeat of node %s failed", node.name)

    def _on_pod(self, kind: str, pod: Pod) -> None:
        uid = pod.metadata.uid
        worker = self.workers.get(uid)
        if kind == DELETED:
            if worker is not None:
                del self.workers[uid]
                worker.vanished(pod)
            return
        if worker is not None:
            worker.update(pod)
            return
        worker = PodWorker(pod, self._contexts[pod.spec.nodeName])
        self.workers[uid] = worker
        worker.update(pod)
        task = asyncio.get_running_loop().create_task(worker.run(), name=f"pod {pod.metadata.name}")
        self._running[task] = worker
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("pod worker %s failed", task.get_name(), exc_info=task.exception())


class PodRunner(OnItsThread):
    """The runner on a thread of its own: `with PodRunner(kubeconfig=..., nodes=..., state_dir=...):`.

    nodes: a NODES.yaml path or NodeSpecs; images: an IMAGES.yaml path (None: built-in images only);
    backoff: crash-loop and image-pull back-off (the kubelet's 10 s / 300 s by default).
    """

    def __init__(
        self,
        *,
        kubeconfig: KubeconfigSource,
        nodes: Path | str | list[NodeSpec],
        state_dir: Path | str,
        images: Path | str | None = None,
        runtime: Runtime | None = None,
        backoff: BackoffPolicy = KUBELET_BACKOFF,
        heartbeat_interval: float = 5.0,
        on_stop: OnStop = "notready",
    ) -> None:
        state = Path(state_dir)
        specs = nodes if isinstance(nodes, list) else load_nodes(Path(nodes))
        if runtime is None:
            runtime = ProcessRuntime(images=ImageTable.load(Path(images) if images else None), state_dir=state)
        self.service = KubeletService(
            kubeconfig,
            nodes=specs,
            state_dir=state,
            runtime=runtime,
            backoff=backoff,
            heartbeat_interval=heartbeat_interval,
            on_stop=on_stop,
        )
        self._thread = ServiceThread(self.service, name="pod-runner")
