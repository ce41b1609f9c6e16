"""In-memory object storage with one global resourceVersion, like etcd.

Every write takes the next revision of a single counter, so
resourceVersions increase across all kinds, and is recorded in a bounded
window per resource that watches replay from, like the watch cache's
(staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go): at least
the last `history_limit` changes are kept, older ones only while younger than
`history_fresh` seconds (eventFreshDuration), never more than `history_max`. Stored objects are never mutated in
place: writers hand in a fresh dict, so events and readers can share it.

Everything here runs on the server's event loop thread; methods are
synchronous so a request's read-check-write cannot interleave with
another's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .jsonobj import JsonObject

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


@dataclass(frozen=True)
class Change:
    """One write, as watches see it."""

    rv: int
    storage: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: JsonObject
    old: JsonObject | None


class Watcher(Protocol):
    storage: str

    def offer(self, change: Change) -> None: ...

    def close(self) -> None: ...


Hook = Callable[[Change], None]


def object_key(obj: JsonObject) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Store:
    def __init__(self, history_limit: int = 100, history_fresh: float = 75.0, history_max: int = 100 * 1024) -> None:
        self._rv = 0
        self._objects: dict[str, dict[Key, JsonObject]] = {}
        self._history_limit, self._history_fresh, self._history_max = history_limit, history_fresh, history_max
        self._windows: dict[str, deque[tuple[float, Change]]] = {}  # storage -> (monotonic time, change)
        self._trimmed: set[str] = set()  # storages whose window has lost changes
        self._watchers: set[Watcher] = set()
        self._hooks: list[Hook] = []
        self._pending: deque[Change] = deque()
        self._dispatching = False

    @property
    def resource_version(self) -> int:
        return self._rv

    def oldest_replayable(self, storage: str) -> int:
        """A watch of `storage` may start from any resourceVersion >= this one (the cache's
        "oldest - 1"; anything while nothing has left the window)."""
        window = self._windows.get(storage)
        if storage not in self._trimmed or not window:
            return 0
        return window[0][1].rv - 1

    # --- reads ------------------------------------------------------------------------------

    def get(self, storage: str, namespace: str, name: str) -> JsonObject | None:
        return self._objects.get(storage, {}).get((namespace, name))

    def items(self, storage: str, namespace: str | None = None) -> list[JsonObject]:
        """Objects in etcd key order ("namespace/name" as a string)."""
        bucket = self._objects.get(storage, {})
        keys = sorted((k for k in bucket if namespace is None or k[0] == namespace), key=lambda k: f"{k[0]}/{k[1]}")
        return [bucket[k] for k in keys]

    def count_in_namespace(self, namespace: str) -> int:
        return sum(1 for bucket in self._objects.values() for (ns, _) in bucket if ns == namespace)

    def changes_after(self, storage: str, rv: int) -> list[Change]:
        return [c for _, c in self._windows.get(storage, ()) if c.rv > rv]

    # --- writes -----------------------------------------------------------------------------

    def _next_rv(self, obj: JsonObject) -> JsonObject:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return obj

    def create(self, storage: str, obj: JsonObject) -> JsonObject:
        """Store a new object; the caller has checked it does not exist."""
        self._next_rv(obj)
        self._objects.setdefault(storage, {})[object_key(obj)] = obj
        self._record(Change(self._rv, storage, "ADDED", obj, None))
        return obj

    def update(self, storage: str, obj: JsonObject) -> JsonObject:
        key = object_key(obj)
        old = self._objects[storage][key]
        self._next_rv(obj)
        self._objects[storage][key] = obj
        self._record(Change(self._rv, storage, "MODIFIED", obj, old))
        return obj

    def delete(self, storage: str, obj: JsonObject) -> JsonObject:
        """Remove the object, whose last state is `obj` (it may differ from the stored one when an
        update removed the last finalizer); the DELETED event carries a new resourceVersion, like etcd's."""
        key = object_key(obj)
        old = self._objects[storage].pop(key)
        final = {**obj, "metadata": dict(obj["metadata"])}
        self._next_rv(final)
        self._record(Change(self._rv, storage, "DELETED", final, old))
        return final

    def drop_storage(self, storage: str) -> list[JsonObject]:
        """Delete every object of a storage (a CRD went away); returns the removed objects."""
        return [self.delete(storage, obj) for obj in self.items(storage)]

    # --- change fan-out ---------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        """Call `hook` after each write; hooks may write in turn (their changes queue up)."""
        self._hooks.append(hook)

    def add_watcher(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def close_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()
        self._watchers.clear()

    def _record(self, change: Change) -> None:
        self._remember(change)
        for watcher in list(self._watchers):
            if watcher.storage == change.storage:
                watcher.offer(change)
        self._pending.append(change)
        if not self._dispatching:
            self._run_hooks()

    def _remember(self, change: Change) -> None:
        now = time.monotonic()
        window = self._windows.setdefault(change.storage, deque())
        window.append((now, change))
        while len(window) > self._history_max or (
            len(window) > self._history_limit and now - window[0][0] >= self._history_fresh
        ):
            window.popleft()
            self._trimmed.add(change.storage)

    def _run_hooks(self) -> None:
        self._dispatching = True
        try:
            while self._pending:
                change = self._pending.popleft()
                for hook in self._hooks:
                    hook(change)
        finally:
            self._dispatching = False
