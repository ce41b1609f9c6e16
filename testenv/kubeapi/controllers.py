"""The control-plane controllers whose effects clients see through the API.

- CRDs: establish the new resource types; on deletion remove every custom
  resource, then the CRD (the customresourcecleanup finalizer).
- ServiceAccount: every namespace gets a `default` service account, which
  pods need to be admitted.
- Namespace: a terminating namespace is emptied (pods gracefully) and
  removed once nothing is left.

They react to store changes through a hook; work that a real controller
does a moment later is deferred to the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from . import crds
from . import errors as e
from .deletion import DeleteOptions, Deleter
from .resources import Registry, ResourceType
from .rest import Rest, WriteOptions
from .store import Change

Defer = Callable[[float, Callable[[], None]], None]
CRD_STORAGE = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACE_STORAGE = "/namespaces"


class Controllers:
    def __init__(self, rest: Rest, deleter: Deleter, defer: Defer, namespace_delay: float = 0.05) -> None:
        self.rest = rest
        self.deleter = deleter
        self.registry: Registry = rest.registry
        self.defer = defer
        self.namespace_delay = namespace_delay

    def on_change(self, change: Change) -> None:
        if change.storage == CRD_STORAGE:
            self._crd_changed(change)
        elif change.storage == NAMESPACE_STORAGE:
            self._namespace_changed(change)
        namespace = change.obj["metadata"].get("namespace")
        if change.type == "DELETED" and namespace:
            self._maybe_finish_namespace(namespace)

    # --- CRDs ---------------------------------------------------------------------------------

    def _crd_changed(self, change: Change) -> None:
        crd = change.obj
        if change.type == "DELETED":
            self.registry.remove_group_resource(crd["spec"]["group"], crd["spec"]["names"]["plural"])
            return
        for rt in crds.resource_types(crd):
            self.registry.add(rt, preferred=rt.version == crds.stored_version_name(crd))
        if crd["metadata"].get("deletionTimestamp") and not (change.old or {}).get("metadata", {}).get(
            "deletionTimestamp"
        ):
            self.defer(0, lambda: self._cleanup_crd(crd["metadata"]["name"]))

    def _cleanup_crd(self, name: str) -> None:
        crd_rt = self._type("apiextensions.k8s.io", "customresourcedefinitions")
        crd = self.rest.store.get(CRD_STORAGE, "", name)
        if crd is None:
            return
        self.rest.store.drop_storage(crds.storage_key(crd))
        remaining = [f for f in crd["metadata"].get("finalizers", []) if f != crds.CLEANUP_FINALIZER]
        body = {**crd, "metadata": {**crd["metadata"], "finalizers": remaining}}
        self.rest.update(crd_rt, "", name, body, WriteOptions())

    # --- namespaces ---------------------------------------------------------------------------

    def _namespace_changed(self, change: Change) -> None:
        name = change.obj["metadata"]["name"]
        if change.type == "ADDED":
            self._ensure_default_service_account(name)
        terminating = change.obj["metadata"].get("deletionTimestamp")
        was_terminating = (change.old or {}).get("metadata", {}).get("deletionTimestamp")
        if change.type == "MODIFIED" and terminating and not was_terminating:
            self.defer(self.namespace_delay, lambda: self._empty_namespace(name))

    def _ensure_default_service_account(self, namespace: str) -> None:
        accounts = self._type("", "serviceaccounts")
        if self.rest.store.get(accounts.storage_key, namespace, "default") is None:
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
            self.rest.create(accounts, namespace, body, WriteOptions())

    def _empty_namespace(self, namespace: str) -> None:
        for rt in self.registry.namespaced_storages():
            for stored in self.rest.store.items(rt.storage_key, namespace):
                try:
                    self.deleter.delete(rt, namespace, stored["metadata"]["name"], DeleteOptions())
                except e.ApiError:
                    continue  # gone meanwhile, or refused: retried on the next deletion in it
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns = self.rest.store.get(NAMESPACE_STORAGE, "", namespace)
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.defer(0, lambda: self.deleter.finish_namespace(self._type("", "namespaces"), namespace))

    def _type(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, "v1", plural)
        assert rt is not None, f"{plural} is built in"
        return rt
