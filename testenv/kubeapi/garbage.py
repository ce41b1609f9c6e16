"""The garbage collector: what happens to an object's dependents when it is deleted.

Dependents name their owners in metadata.ownerReferences. When an owner
goes away (propagation Background, the default) the dependents whose
owners are all gone are deleted, and references to the gone owner are
dropped from the others. Orphan (the `orphan` finalizer) strips the
references and keeps the dependents; Foreground (`foregroundDeletion`)
deletes the dependents first and removes the owner after them.
"""

from __future__ import annotations

from collections.abc import Callable

from . import errors as e
from .deletion import FOREGROUND_FINALIZER, ORPHAN_FINALIZER, DeleteOptions, Deleter
from .jsonobj import JsonObject
from .resources import ResourceType
from .rest import Rest, WriteOptions, present
from .store import Change

Defer = Callable[[float, Callable[[], None]], None]


class GarbageCollector:
    def __init__(self, rest: Rest, deleter: Deleter, defer: Defer) -> None:
        self.rest = rest
        self.deleter = deleter
        self.defer = defer
        # owner uid -> (storage, namespace, name) of its dependents, like the real collector's
        # graph: a scan of every object per deletion made deleting 5,000 pods quadratic.
        self._graph: dict[str, set[tuple[str, str, str]]] = {}

    def on_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        self._track(change)
        if change.type == "DELETED":
            uid = meta.get("uid", "")
            self.defer(0, lambda: self._owner_gone(uid))
            owners = [str(ref.get("uid", "")) for ref in meta.get("ownerReferences") or []]
            if owners:
                self.defer(0, lambda: self._finish_foreground_owners(owners))
        elif meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if ORPHAN_FINALIZER in finalizers:
                self.defer(0, lambda: self._orphan(change.storage, meta))
            if FOREGROUND_FINALIZER in finalizers:
                self.defer(0, lambda: self._delete_dependents_first(change.storage, meta))

    def _track(self, change: Change) -> None:
        meta = change.obj["metadata"]
        key = (change.storage, meta.get("namespace", ""), meta["name"])
        before = _owners(change.old) if change.old is not None else set()
        after = set() if change.type == "DELETED" else _owners(change.obj)
        for uid in before - after:
            self._graph.get(uid, set()).discard(key)
        for uid in after - before:
            self._graph.setdefault(uid, set()).add(key)

    def _dependents(self, owner_uid: str) -> list[tuple[ResourceType, JsonObject]]:
        found = []
        types = self.rest.registry.by_storage()
        for storage, namespace, name in sorted(self._graph.get(owner_uid, ())):
            stored = self.rest.store.get(storage, namespace, name)
            if stored is not None and storage in types and owner_uid in _owners(stored):
                found.append((types[storage], present(types[storage], stored)))
        return found

    def _exists(self, uid: str) -> bool:
        return any(
            o["metadata"].get("uid") == uid
            for storage in self.rest.registry.by_storage()
            for o in self.rest.store.items(storage)
        )

    def _owner_gone(self, owner_uid: str) -> None:
        for rt, dependent in self._dependents(owner_uid):
            others = [r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") != owner_uid]
            if any(self._exists(r.get("uid", "")) for r in others):
                self._set_owner_references(rt, dependent, others)
            else:
                self._delete(rt, dependent)

    def _orphan(self, storage: str, owner_meta: JsonObject) -> None:
        uid = owner_meta.get("uid", "")
        for rt, dependent in self._dependents(uid):
            others = [r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") != uid]
            self._set_owner_references(rt, dependent, others)
        self._drop_finalizer(storage, owner_meta, ORPHAN_FINALIZER)

    def _delete_dependents_first(self, storage: str, owner_meta: JsonObject) -> None:
        for rt, dependent in self._dependents(owner_meta.get("uid", "")):
            self._delete(rt, dependent)
        self._maybe_finish_foreground(owner_meta.get("uid", ""))

    def _finish_foreground_owners(self, owner_uids: list[str]) -> None:
        for uid in owner_uids:
            self._maybe_finish_foreground(uid)

    def _maybe_finish_foreground(self, owner_uid: str) -> None:
        if self._dependents(owner_uid):
            return
        for storage in self.rest.registry.by_storage():
            for stored in self.rest.store.items(storage):
                meta = stored["metadata"]
                if meta.get("uid") == owner_uid and FOREGROUND_FINALIZER in (meta.get("finalizers") or []):
                    self._drop_finalizer(storage, meta, FOREGROUND_FINALIZER)

    def _drop_finalizer(self, storage: str, meta: JsonObject, finalizer: str) -> None:
        rt = self.rest.registry.by_storage()[storage]
        stored = self.rest.store.get(storage, meta.get("namespace", ""), meta["name"])
        if stored is None or stored["metadata"].get("uid") != meta.get("uid"):
            return
        current = present(rt, stored)
        current["metadata"]["finalizers"] = [f for f in current["metadata"].get("finalizers", []) if f != finalizer]
        self._update(rt, current)

    def _set_owner_references(self, rt: ResourceType, obj: JsonObject, refs: list[JsonObject]) -> None:
        obj["metadata"]["ownerReferences"] = refs
        if not refs:
            del obj["metadata"]["ownerReferences"]
        self._update(rt, obj)

    def _update(self, rt: ResourceType, obj: JsonObject) -> None:
        meta = obj["metadata"]
        try:
            self.rest.update(rt, meta.get("namespace", ""), meta["name"], obj, WriteOptions())
        except e.ApiError:
            pass  # changed or gone meanwhile: the next change of it brings us back

    def _delete(self, rt: ResourceType, obj: JsonObject) -> None:
        meta = obj["metadata"]
        try:
            self.deleter.delete(rt, meta.get("namespace", ""), meta["name"], DeleteOptions(uid=meta.get("uid")))
        except e.ApiError:
            pass  # already gone, or replaced by a new object of the same name


def _owners(obj: JsonObject) -> set[str]:
    return {str(ref.get("uid", "")) for ref in obj["metadata"].get("ownerReferences") or []}
