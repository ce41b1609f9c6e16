"""The API's state, wired together, and the objects every new cluster starts with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .builtin import builtin_registry
from .controllers import Controllers
from .deletion import Deleter
from .garbage import GarbageCollector
from .resources import Registry, ResourceType
from .rest import Rest, WriteOptions
from .store import Store

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}


@dataclass
class Cluster:
    store: Store
    registry: Registry
    rest: Rest
    deleter: Deleter
    controllers: Controllers = field(repr=False)

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        if rt is None:
            raise KeyError(f"{group}/{version}/{plural} is not served")
        return rt


def _loop_defer(delay: float, work: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_later(delay, work)


def new_cluster(
    *,
    history_limit: int = 100,
    history_fresh: float = 75.0,
    namespace_delay: float = 0.05,
    defer: Callable[[float, Callable[[], None]], None] = _loop_defer,
) -> Cluster:
    """A seeded cluster; call on the event loop that will serve it (controllers defer work to it)."""
    store = Store(history_limit, history_fresh)
    registry = builtin_registry()
    rest = Rest(store, registry)
    deleter = Deleter(rest)
    controllers = Controllers(rest, deleter, defer, namespace_delay)
    store.add_hook(controllers.on_change)
    store.add_hook(GarbageCollector(rest, deleter, defer).on_change)
    cluster = Cluster(store, registry, rest, deleter, controllers)
    _seed(cluster)
    return cluster


def _seed(cluster: Cluster) -> None:
    namespaces = cluster.type("", "v1", "namespaces")
    for name in INITIAL_NAMESPACES:
        cluster.rest.create(namespaces, "", {"metadata": {"name": name}}, WriteOptions())
    classes = cluster.type("scheduling.k8s.io", "v1", "priorityclasses")
    for name, value in SYSTEM_PRIORITY_CLASSES.items():
        body = {"metadata": {"name": name}, "value": value, "description": "Used for system critical pods."}
        cluster.rest.create(classes, "", body, WriteOptions())
    services = cluster.type("", "v1", "services")
    kubernetes = {
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
    }
    cluster.rest.create(services, "default", kubernetes, WriteOptions())
