"""A local copy of the API objects of one kind, kept current by list + watch (client-go's reflector).

The watch resumes from the last resourceVersion; when it cannot (410 Gone, the connection dropped,
the server restarted) the informer lists again and turns the difference into synthetic events, so
the handler sees every object appear, change and go exactly as if it had watched all along.

The bridge's daemon owns one per kind it follows (its pods, the Kubernetes nodes); the test
environment's pod runner and scheduler use the same class. It runs on an asyncio loop the caller
owns; :meth:`Informer.snapshot` may be read from any thread. Hooks never import this module:
lightkube's async client and a long-lived watch have no place on their start-up path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import NotReadyError
from lightkube.core.resource import NamespacedResource

log = logging.getLogger(__name__)

R = TypeVar("R")
Key = tuple[str | None, str]
Handler = Callable[[str, Any], None]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
API_ERRORS = (httpx2.HTTPError, httpx2.StreamError)
"""What a list or a watch raises when the server answers an error (lightkube's ApiError, 410
Gone included) or the connection fails: the informer lists again."""
ALL_NAMESPACES = "*"


def key_of(obj: Any) -> Key:
    return (obj.metadata.namespace, obj.metadata.name)


class Informer(Generic[R]):
    """Objects of kind `resource` matching the selectors, in `objects`; every change goes to `handler`.

    ``namespace`` limits a namespaced kind to one namespace (a Role's scope); by default all.
    ``on_error`` hears every failed list or ended watch (for a metric), after it was logged."""

    def __init__(
        self,
        client: AsyncClient,
        resource: type[R],
        handler: Handler,
        *,
        fields: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        namespace: str = ALL_NAMESPACES,
        retry_interval: float = 1.0,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._client = client
        self._resource = resource
        self._handler = handler
        self._fields = fields
        self._labels = labels
        self._retry_interval = retry_interval
        self._namespace = namespace if issubclass(resource, NamespacedResource) else None  # type: ignore[arg-type]
        self._on_error = on_error
        self._version: str | None = None
        self._lock = threading.Lock()
        self.objects: dict[Key, R] = {}
        self.synced = threading.Event()
        """Set once the first list succeeded: until then :meth:`snapshot` knows nothing."""

    @property
    def kind(self) -> str:
        return self._resource.__name__  # type: ignore[attr-defined]

    def snapshot(self) -> list[R]:
        """The objects now, safe to read from another thread than the loop's."""
        with self._lock:
            return list(self.objects.values())

    async def sync(self) -> None:
        """List once; raises the API error if the list fails (the first sync is the caller's)."""
        listing = self._client.list(self._resource, **self._scope())
        fresh = {key_of(obj): obj async for obj in listing}
        try:
            self._version = listing.resourceVersion
        except NotReadyError:  # the server sent no version: watch from now
            self._version = None
        self._replace(fresh)
        self.synced.set()

    async def run(self) -> None:
        """Watch forever, listing again whenever the watch cannot continue."""
        while True:
            try:
                await self._watch()
            except API_ERRORS as e:
                log.info("watch of %s ended (%s); listing again", self._resource.__name__, e)
                self._report("watch", e)
            except Exception as e:  # a line that does not decode, a proxy's garbage: never a dead watch
                log.warning("watch of %s failed (%s: %s); listing again", self._resource.__name__,
                            type(e).__name__, e)
                self._report("watch", e)
            await self._relist()

    async def _relist(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval)
            try:
                await self.sync()
                return
            except Exception as e:  # API errors and anything else: try again, never stop
                log.warning("listing %s failed: %s", self._resource.__name__, e)
                self._report("list", e)

    async def _watch(self) -> None:
        async for kind, obj in self._client.watch(self._resource, resource_version=self._version, **self._scope()):
            self._version = obj.metadata.resourceVersion
            key = key_of(obj)
            with self._lock:
                if kind == DELETED:
                    self.objects.pop(key, None)
                elif kind in (ADDED, MODIFIED):
                    self.objects[key] = obj
                else:
                    continue
            self._handler(kind, obj)

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {"fields": self._fields, "labels": self._labels}
        if self._namespace is not None:
            scope["namespace"] = self._namespace
        return scope

    def _report(self, stage: str, error: Exception) -> None:
        if self._on_error is not None:
            self._on_error(stage, error)

    def _replace(self, fresh: dict[Key, R]) -> None:
        with self._lock:
            old = self.objects
            self.objects = fresh
        for key, obj in old.items():
            new = fresh.get(key)
            if new is None or new.metadata.uid != obj.metadata.uid:  # type: ignore[attr-defined]
                self._handler(DELETED, obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None or before.metadata.uid != obj.metadata.uid:  # type: ignore[attr-defined]
                self._handler(ADDED, obj)
            elif before.metadata.resourceVersion != obj.metadata.resourceVersion:  # type: ignore[attr-defined]
                self._handler(MODIFIED, obj)
