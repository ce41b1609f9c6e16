"""A local copy of the API objects of one kind, kept current by list + watch (client-go's reflector).

The watch resumes from the last resourceVersion; when it cannot (410 Gone, the connection dropped,
the server restarted) the informer lists again and turns the difference into synthetic events, so
the handler sees every object appear, change and go exactly as if it had watched all along.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from lightkube import AsyncClient
from lightkube.core.exceptions import NotReadyError
from lightkube.core.resource import NamespacedResource

from .kube import API_ERRORS

log = logging.getLogger(__name__)

R = TypeVar("R")
Key = tuple[str | None, str]
Handler = Callable[[str, Any], None]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


def key_of(obj: Any) -> Key:
    return (obj.metadata.namespace, obj.metadata.name)


class Informer(Generic[R]):
    """Objects of kind `resource` matching the selectors, in `objects`; every change goes to `handler`."""

    def __init__(
        self,
        client: AsyncClient,
        resource: type[R],
        handler: Handler,
        *,
        fields: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._resource = resource
        self._handler = handler
        self._fields = fields
        self._labels = labels
        self._retry_interval = retry_interval
        self._namespaced = issubclass(resource, NamespacedResource)  # type: ignore[arg-type]
        self._version: str | None = None
        self.objects: dict[Key, R] = {}

    async def sync(self) -> None:
        """List once; raises the API error if the list fails (the first sync is the caller's)."""
        kwargs: dict[str, Any] = {"fields": self._fields, "labels": self._labels}
        if self._namespaced:
            kwargs["namespace"] = "*"
        listing = self._client.list(self._resource, **kwargs)
        fresh = {key_of(obj): obj async for obj in listing}
        try:
            self._version = listing.resourceVersion
        except NotReadyError:  # the server sent no version: watch from now
            self._version = None
        self._replace(fresh)

    async def run(self) -> None:
        """Watch forever, listing again whenever the watch cannot continue."""
        while True:
            try:
                await self._watch()
            except API_ERRORS as e:
                log.info("watch of %s ended (%s); listing again", self._resource.__name__, e)
            await self._relist()

    async def _relist(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval)
            try:
                await self.sync()
                return
            except API_ERRORS as e:
                log.warning("listing %s failed: %s", self._resource.__name__, e)

    async def _watch(self) -> None:
        kwargs: dict[str, Any] = {
            "fields": self._fields,
            "labels": self._labels,
            "resource_version": self._version,
        }
        if self._namespaced:
            kwargs["namespace"] = "*"
        async for kind, obj in self._client.watch(self._resource, **kwargs):
            self._version = obj.metadata.resourceVersion
            key = key_of(obj)
            if kind == DELETED:
                self.objects.pop(key, None)
            elif kind in (ADDED, MODIFIED):
                self.objects[key] = obj
            else:
                continue
            self._handler(kind, obj)

    def _replace(self, fresh: dict[Key, R]) -> None:
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
