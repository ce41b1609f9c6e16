"""Events, served as core/v1 and as events.k8s.io/v1 from one storage.

On a real cluster an event written through either API is readable through
both, with fields renamed (`involvedObject` is `regarding`, `message` is
`note`, ...). Storage holds the core/v1 shape; the events.k8s.io strategy
converts on the way in and out. events.k8s.io also validates more strictly
(eventTime, reportingController, reportingInstance, action are required).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from lightkube.models import core_v1, events_v1

from . import errors as e
from . import names
from .jsonobj import JsonObject
from .selector import FieldGetter
from .strategy import Strategy, path_field

if TYPE_CHECKING:
    from .resources import ResourceType

REASON_LIMIT = 128
ACTION_LIMIT = 128
REPORTING_INSTANCE_LIMIT = 128
NOTE_LIMIT = 1024

# events.k8s.io/v1 field <-> core/v1 field
_RENAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_SAME = (
    "apiVersion",
    "kind",
    "metadata",
    "eventTime",
    "series",
    "related",
    "action",
    "reason",
    "type",
    "reportingInstance",
)


def _involved(part: str) -> FieldGetter:
    return path_field("involvedObject", part)


CORE_FIELDS: Mapping[str, FieldGetter] = {
    **{
        f"involvedObject.{p}": _involved(p)
        for p in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": path_field("reason"),
    "reportingComponent": path_field("reportingComponent"),
    "source": path_field("source", "component"),
    "type": path_field("type"),
}


def to_core(event: JsonObject) -> JsonObject:
    out = {k: event[k] for k in _SAME if k in event}
    for new, old in _RENAMES.items():
        if new in event:
            out[old] = event[new]
    return out


def from_core(event: JsonObject) -> JsonObject:
    out = {k: event[k] for k in _SAME if k in event}
    for new, old in _RENAMES.items():
        if old in event:
            out[new] = event[old]
    return out


def _legacy_errors(event: JsonObject, controller_field: str) -> list[e.FieldError]:
    """Checks both APIs apply (legacyValidateEvent), on the core/v1 shape."""
    errs: list[e.FieldError] = []
    namespace = event["metadata"].get("namespace", "")
    involved_ns = (event.get("involvedObject") or {}).get("namespace", "")
    if not event.get("eventTime"):
        if (involved_ns and involved_ns != namespace) or (not involved_ns and namespace not in ("", "default")):
            errs.append(e.invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(e.invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        errs += _reporting_errors(event, controller_field)
    errs += [e.invalid("namespace", namespace, m) for m in names.is_dns1123_subdomain(namespace)]
    return errs


def _reporting_errors(event: JsonObject, controller_field: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    controller = event.get("reportingComponent", "")
    if not controller:
        errs.append(e.required(controller_field, ""))
    errs += [e.invalid(controller_field, controller, m) for m in names.is_qualified_name(controller)]
    instance = event.get("reportingInstance", "")
    if not instance:
        errs.append(e.required("reportingInstance", ""))
    elif len(instance) > REPORTING_INSTANCE_LIMIT:
        errs.append(e.invalid("reportingInstance", "", f"can have at most {REPORTING_INSTANCE_LIMIT} characters"))
    action = event.get("action", "")
    if not action:
        errs.append(e.required("action", ""))
    elif len(action) > ACTION_LIMIT:
        errs.append(e.invalid("action", "", f"can have at most {ACTION_LIMIT} characters"))
    return errs


class CoreEventStrategy(Strategy):
    """core/v1 events: loose validation, kept for old clients."""

    model = core_v1.Event
    extra_fields = CORE_FIELDS

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return _legacy_errors(obj, "reportingComponent")

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return self.validate(new, rt)


class EventsV1Strategy(Strategy):
    """events.k8s.io/v1: the same objects, renamed fields, strict validation on create."""

    model = events_v1.Event
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {
        **{f"regarding.{p}": path_field("regarding", p) for p in ("kind", "namespace", "name", "uid", "apiVersion")},
        "reason": path_field("reason"),
        "reportingController": path_field("reportingController"),
        "type": path_field("type"),
    }

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        core = to_core(obj)
        errs = _legacy_errors(core, "reportingController") + super().validate(obj, rt)
        errs += _reporting_errors(core, "reportingController")
        if not obj.get("eventTime"):
            errs.append(e.required("eventTime", ""))
        if obj.get("type") not in ("Normal", "Warning"):
            errs.append(e.invalid("type", "", f"has invalid value: {obj.get('type', '')}"))
        for field in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedSource"):
            if obj.get(field):
                errs.append(e.invalid(field, "", "needs to be unset"))
        if not obj.get("reason"):
            errs.append(e.required("reason", ""))
        elif len(obj["reason"]) > REASON_LIMIT:
            errs.append(e.invalid("reason", "", f"can have at most {REASON_LIMIT} characters"))
        if len(obj.get("note", "")) > NOTE_LIMIT:
            errs.append(e.invalid("note", "", f"can have at most {NOTE_LIMIT} characters"))
        return _dedupe(errs)

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate_update(new, old, rt)

    def to_storage(self, obj: JsonObject) -> JsonObject:
        return to_core(obj)

    def from_storage(self, obj: JsonObject) -> JsonObject:
        return from_core(obj)


def _dedupe(errs: list[e.FieldError]) -> list[e.FieldError]:
    seen: dict[str, e.FieldError] = {}
    for err in errs:
        seen.setdefault(str(err), err)
    return list(seen.values())
