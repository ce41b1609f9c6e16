"""Per-kind behaviour hooks, in the spirit of the apiserver's RESTStrategy.

The REST layer (`rest.py`) does what is common to every kind: metadata,
resourceVersion, optimistic concurrency, finalizers. A `Strategy` adds
what differs: decoding, defaults, validation, which fields an update may
touch, how long a graceful deletion lasts, which fields can be selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from . import errors as e
from . import names
from .decoding import conform
from .jsonobj import JsonObject
from .selector import FieldGetter
from .validation import validate_object_meta, validate_object_meta_update

if TYPE_CHECKING:
    from .resources import ResourceType


def meta_field(name: str) -> FieldGetter:
    return lambda obj: str(obj.get("metadata", {}).get(name, ""))


def path_field(*path: str) -> FieldGetter:
    """A getter for a nested field; absent reads as "" and booleans as "true"/"false"."""

    def get(obj: JsonObject) -> str:
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return get


COMMON_FIELDS: Mapping[str, FieldGetter] = {
    "metadata.name": meta_field("name"),
    "metadata.namespace": meta_field("namespace"),
}


class Strategy:
    """Defaults are those of a plain object with no spec rules (ConfigMap-like)."""

    model: ClassVar[type | None] = None
    tracks_generation: ClassVar[bool] = False
    allow_unconditional_update: ClassVar[bool] = True
    allow_create_on_update: ClassVar[bool] = False
    """A PUT of an object that is not there creates it (``AllowCreateOnUpdate``: Leases)."""
    return_deleted_object: ClassVar[bool] = False
    keeps_status_on_create: ClassVar[bool] = False
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {}

    def check_name(self, name: str) -> list[str]:
        """Problems with an object name (most kinds: a DNS-1123 subdomain)."""
        return names.is_dns1123_subdomain(name)

    def field_getters(self, rt: ResourceType) -> Mapping[str, FieldGetter]:
        return {**COMMON_FIELDS, **self.extra_fields}

    def decode(self, body: JsonObject, rt: ResourceType) -> JsonObject:
        """Shape a request body like the Go decoder would; raises ApiError 400."""
        if self.model is None:
            return body
        return conform(body, self.model, rt.kind, rt.version)

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        """Scheme defaults, applied to every decoded body (create and update)."""

    def prepare_for_create(self, obj: JsonObject, rt: ResourceType) -> None:
        if rt.has_status and not self.keeps_status_on_create:
            obj.pop("status", None)

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return validate_object_meta(obj["metadata"], namespaced=rt.namespaced, name_check=self.check_name)

    def prepare_for_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> None:
        """The main resource ignores status when a status subresource exists."""
        if rt.has_status:
            copy_key(old, new, "status")

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return validate_object_meta_update(new["metadata"], old["metadata"])

    def prepare_for_status_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> JsonObject:
        """Only status changes through the status subresource; returns the object to store."""
        merged = {k: v for k, v in old.items() if k != "status"}
        if "status" in new:
            merged["status"] = new["status"]
        return merged

    def validate_status_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return []

    graceful_deletion: ClassVar[bool] = False
    """The kind has a graceful-deletion strategy: even a deletion with grace 0 writes
    deletionTimestamp before removing the object."""

    def grace_period(self, obj: JsonObject, requested: int | None) -> int:
        """Seconds a deletion waits; 0 removes at once (kinds without graceful deletion)."""
        return 0

    def to_storage(self, obj: JsonObject) -> JsonObject:
        """The stored shape of an object written through this API (events differ by group)."""
        return obj

    def from_storage(self, obj: JsonObject) -> JsonObject:
        """The shape this API serves a stored object in."""
        return obj


def copy_key(source: JsonObject, target: JsonObject, key: str) -> None:
    """Make `target[key]` what it is in `source`, including absent."""
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)
