"""The product's informer: list, watch, and after a 410 Gone list again and tell the handler
what changed meanwhile, as if it had watched all along (synthetic events)."""

from __future__ import annotations

import asyncio
import json

import httpx2
import lightkube
import pytest

from bridge.informer import ADDED, DELETED, MODIFIED, Informer
from bridge.kube import _core_v1


def _pod(name: str, uid: str, version: str, phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "slurm", "uid": uid, "resourceVersion": version},
            "status": {"phase": phase}}


class Server:
    """Lists answer from ``listings`` in turn; each watch streams the next of ``watches``."""

    def __init__(self, listings: list[list[dict]], watches: list[list[dict]]) -> None:
        self.listings, self.watches = listings, watches
        self.paths: list[str] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(f"{request.url.path}?{request.url.query.decode()}")
        if request.url.params.get("watch") in ("true", "1"):
            events = self.watches.pop(0) if self.watches else [_gone()]
            lines = (e if isinstance(e, str) else json.dumps(e) for e in events)  # a str: sent as it is
            return httpx2.Response(200, content="".join(line + "\n" for line in lines).encode())
        items = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        version = max((int(p["metadata"]["resourceVersion"]) for p in items), default=1)
        return httpx2.Response(200, json={"apiVersion": "v1", "kind": "PodList",
                                          "metadata": {"resourceVersion": str(version)}, "items": items})


def _client(server: Server) -> lightkube.AsyncClient:
    config = lightkube.KubeConfig.from_dict({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://kube.test"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]})
    return lightkube.AsyncClient(config=config, transport=httpx2.MockTransport(server.handle))


def _gone() -> dict:
    return {"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410,
                                        "reason": "Expired", "message": "too old resource version"}}


def test_relist_after_410_gone_turns_the_difference_into_events():
    a, b, c = _pod("a", "ua", "1"), _pod("b", "ub", "2"), _pod("c", "uc", "5")
    server = Server(listings=[[a, b], [_pod("a", "ua", "6", "Failed"), c]],
                    watches=[[{"type": "MODIFIED", "object": _pod("b", "ub", "3", "Succeeded")}, _gone()]])
    seen: list[tuple[str, str, str]] = []
    errors: list[str] = []

    async def scenario() -> None:
        client = _client(server)
        informer = Informer(client, _core_v1("Pod", "pods"),
                            lambda kind, pod: seen.append((kind, pod.metadata.name, pod.to_dict()["status"]["phase"])),
                            namespace="slurm", labels={"app": "x"}, retry_interval=0.01,
                            on_error=lambda stage, e: errors.append(stage))
        await informer.sync()
        task = asyncio.create_task(informer.run())
        for _ in range(200):
            if ("ADDED", "c", "Running") in seen:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        assert sorted(p.metadata.name for p in informer.snapshot()) == ["a", "c"]

    asyncio.run(scenario())
    assert seen[:3] == [(ADDED, "a", "Running"), (ADDED, "b", "Running"), (MODIFIED, "b", "Succeeded")]
    # After the 410: b went while nobody watched, a changed, c appeared.
    assert set(seen[3:6]) == {(DELETED, "b", "Succeeded"), (MODIFIED, "a", "Failed"), (ADDED, "c", "Running")}
    assert errors and errors[0] == "watch"
    # Namespaced to the bridge's namespace (its Role's scope), with the label selector.
    assert all(p.startswith("/api/v1/namespaces/slurm/pods?") and "labelSelector=app%3Dx" in p for p in server.paths)
    # The watch resumed from the listing's version.
    assert any("watch=true" in p and "resourceVersion=2" in p for p in server.paths)


def test_a_watch_line_that_does_not_decode_ends_the_watch_not_the_informer():
    # A proxy cut the stream mid-line. The informer lists again and goes on: a dead one would
    # keep an old snapshot for ever, and the daemon would release nodes whose pods it misses.
    a, b = _pod("a", "ua", "1"), _pod("b", "ub", "4")
    server = Server(listings=[[a], [a, b]], watches=[['{"type": "ADDED", "object": {"apiVersion": "v1", "ki']])
    errors: list[str] = []

    async def scenario() -> list[str]:
        informer = Informer(_client(server), _core_v1("Pod", "pods"), lambda kind, pod: None, namespace="slurm",
                            retry_interval=0.01, on_error=lambda stage, e: errors.append(stage))
        await informer.sync()
        task = asyncio.create_task(informer.run())
        for _ in range(200):
            if len(informer.snapshot()) == 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        return sorted(p.metadata.name for p in informer.snapshot())

    assert asyncio.run(scenario()) == ["a", "b"]
    assert errors[0] == "watch"


def test_a_pod_replaced_under_the_same_name_is_deleted_then_added():
    server = Server(listings=[[_pod("a", "old", "1")], [_pod("a", "new", "4")]], watches=[[_gone()]])
    seen: list[tuple[str, str]] = []

    async def scenario() -> None:
        client = _client(server)
        informer = Informer(client, _core_v1("Pod", "pods"), lambda k, p: seen.append((k, p.metadata.uid)),
                            namespace="slurm", retry_interval=0.01)
        await informer.sync()
        task = asyncio.create_task(informer.run())
        for _ in range(200):
            if (ADDED, "new") in seen:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert seen[:3] == [(ADDED, "old"), (DELETED, "old"), (ADDED, "new")]


@pytest.mark.parametrize("module", ["testenv.runner.informer"])
def test_the_test_environment_uses_the_products_informer(module):
    import importlib

    assert importlib.import_module(module).Informer is Informer
