"""Core v1 Events as the kubelet and the scheduler write them (client-go's event recorder, in small).

A repeat of the same event (same object, reason, message) bumps `count` and `lastTimestamp` of the
event already written instead of creating a new one, like client-go's correlator. Events are
best-effort: a failure to write one is logged, never raised into the caller's work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from .kube import API_ERRORS, Api, now, status_code, timestamp

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True)
class Subject:
    """The object an event is about (an ObjectReference)."""

    kind: str
    name: str
    uid: str
    namespace: str | None = None
    api_version: str = "v1"
    field_path: str | None = None

    @classmethod
    def of_pod(cls, pod: object, field_path: str | None = None) -> Subject:
        meta = pod.metadata  # type: ignore[attr-defined]
        return cls("Pod", meta.name, meta.uid, meta.namespace, "v1", field_path)

    def reference(self) -> ObjectReference:
        return ObjectReference(
            apiVersion=self.api_version,
            kind=self.kind,
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            fieldPath=self.field_path,
        )


@dataclass
class _Written:
    name: str
    namespace: str
    count: int


class EventRecorder:
    """Writes events for one component (e.g. "kubelet" on host "node-1", or "default-scheduler")."""

    def __init__(self, api: Api, *, component: str, host: str | None = None) -> None:
        self._api = api
        self._component = component
        self._host = host
        self._written: dict[tuple[object, ...], _Written] = {}

    async def record(self, subject: Subject, kind: str, reason: str, message: str) -> None:
        key = (subject, kind, reason, message)
        try:
            written = self._written.get(key)
            if written is not None and await self._bump(written):
                return
            self._written[key] = await self._create(subject, kind, reason, message)
        except API_ERRORS as e:
            log.warning("could not record event %s for %s %s: %s", reason, subject.kind, subject.name, e)

    def forget(self, uid: str) -> None:
        """Drop the memory of events about an object that is gone."""
        for key in [k for k in self._written if k[0].uid == uid]:  # type: ignore[attr-defined]
            del self._written[key]

    async def _create(self, subject: Subject, kind: str, reason: str, message: str) -> _Written:
        namespace = subject.namespace or "default"
        event = Event(
            metadata=ObjectMeta(name=f"{subject.name}.{time.time_ns():x}", namespace=namespace),
            involvedObject=subject.reference(),
            reason=reason,
            message=message,
            type=kind,
            count=1,
            firstTimestamp=now(),
            lastTimestamp=now(),
            source=EventSource(component=self._component, host=self._host),
            reportingComponent=self._component,
            reportingInstance=self._host or self._component,
        )
        created = await self._api.client.create(event, namespace=namespace)
        return _Written(created.metadata.name, namespace, 1)

    async def _bump(self, written: _Written) -> bool:
        """Count one more occurrence; False if the event is gone and must be written anew."""
        patch = {"count": written.count + 1, "lastTimestamp": timestamp()}
        try:
            await self._api.client.patch(
                Event, written.name, patch, namespace=written.namespace, patch_type=PatchType.MERGE
            )
        except API_ERRORS as e:
            if status_code(e) == 404:
                return False
            raise
        written.count += 1
        return True
