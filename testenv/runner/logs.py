"""The kubelet's container-log endpoint, which kube-apiserver's ``pods/log`` proxies to.

``GET /containerLogs/{namespace}/{pod}/{container}?tailLines=N`` answers what the container's
current (or, while it waits for a restart, its last) instance wrote, as plain text, from the
files the runtime writes (``<state>/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log``). A
container that never started answers 400 with the kubelet's words
(pkg/kubelet/kubelet_pods.go, validateContainerLogStatus). Each virtual node advertises the
endpoint as its ``status.daemonEndpoints.kubeletEndpoint.Port`` on ``InternalIP``, where the
API server looks for it. Plain HTTP on loopback: a real kubelet serves HTTPS and checks the API
server's client certificate. Only what the bridge reads (current instance, ``tailLines``) is
modelled: no ``follow``, ``previous``, ``timestamps``, ``sinceSeconds`` or ``limitBytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import web

from .nodes import HOST_IP


class LogUnavailable(Exception):
    """The container has no log to show (400, with the kubelet's message)."""


def read_log(log_dir: Path, tail_lines: int | None) -> str:
    """The newest instance's log in ``log_dir`` (one file per attempt), its last ``tail_lines``."""
    attempts = sorted(log_dir.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not attempts:
        return ""
    lines = attempts[-1].read_text(errors="replace").splitlines(keepends=True)
    return "".join(lines if tail_lines is None else lines[len(lines) - min(tail_lines, len(lines)):])


class LogServer:
    """``find(namespace, pod)`` gives the pod's worker (anything with ``container_log``) or None."""

    def __init__(self, find: Callable[[str, str], object | None]) -> None:
        self._find = find
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST_IP, 0).start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        worker = self._find(namespace, pod)
        if worker is None:  # the kubelet's words for a pod it does not run
            return web.Response(status=404, text=f'pod "{pod}/{namespace}" not found', content_type="text/plain")
        tail = request.query.get("tailLines")
        try:
            text = worker.container_log(container, int(tail) if tail and tail.isdigit() else None)  # type: ignore[attr-defined]
        except LogUnavailable as e:
            return web.Response(status=400, text=str(e), content_type="text/plain")
        return web.Response(text=text, content_type="text/plain")


def pods_by_name(workers: Callable[[], Iterable[object]]) -> Callable[[str, str], object | None]:
    def find(namespace: str, name: str) -> object | None:
        for worker in workers():
            meta = worker.pod.metadata  # type: ignore[attr-defined]
            if meta.namespace == namespace and meta.name == name:
                return worker
        return None

    return find
