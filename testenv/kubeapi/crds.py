"""CustomResourceDefinitions and the custom resources they define.

Creating a CRD registers one resource type per served version (all sharing
one storage, as conversion strategy None does), so objects such as
Volcano PodGroups can be created, listed and watched at once. Custom
resources get the treatment a real server gives them: schema pruning and
validation, a status subresource if declared, optimistic concurrency that
requires a resourceVersion on update, no strategic merge patch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lightkube.models import apiextensions_v1, meta_v1

from . import errors as e
from . import names
from .clock import timestamp
from .crd_schema import apply_schema
from .decoding import conform
from .jsonobj import JsonObject
from .resources import STATUS, ResourceType, Subresource
from .selector import FieldGetter
from .strategy import COMMON_FIELDS, Strategy, path_field

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ["Cluster", "Namespaced"]


class CrdStrategy(Strategy):
    model = apiextensions_v1.CustomResourceDefinition
    tracks_generation = True

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        spec = obj.setdefault("spec", {})
        spec_names = spec.setdefault("names", {})
        if spec_names.get("kind"):
            spec_names.setdefault("singular", spec_names["kind"].lower())
            spec_names.setdefault("listKind", spec_names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})

    def prepare_for_create(self, obj: JsonObject, rt: ResourceType) -> None:
        spec = obj["spec"]
        now = timestamp()
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        obj["status"] = {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "lastTransitionTime": now,
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "lastTransitionTime": now,
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ],
            "acceptedNames": dict(spec.get("names") or {}),
            "storedVersions": stored,
        }
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + _validate_crd_spec(obj)

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate_update(new, old, rt) + _validate_crd_spec(new)
        for field in ("group",):
            if new["spec"].get(field) != old["spec"].get(field):
                errs.append(e.invalid(f"spec.{field}", new["spec"].get(field), "field is immutable"))
        return errs


def _validate_crd_spec(crd: JsonObject) -> list[e.FieldError]:
    spec = crd.get("spec") or {}
    spec_names = spec.get("names") or {}
    group, plural = spec.get("group", ""), spec_names.get("plural", "")
    errs: list[e.FieldError] = []
    if crd["metadata"].get("name") != f"{plural}.{group}":
        errs.append(
            e.invalid("metadata.name", crd["metadata"].get("name", ""), 'must be spec.names.plural+"."+spec.group')
        )
    if not group:
        errs.append(e.required("spec.group", ""))
    elif "." not in group:
        errs.append(e.invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        errs.append(e.required("spec.names.plural", ""))
    else:
        errs += [e.invalid("spec.names.plural", plural, m) for m in names.is_dns1035_label(plural)]
    if not spec_names.get("kind"):
        errs.append(e.required("spec.names.kind", ""))
    if spec.get("scope") not in SCOPES:
        errs.append(e.not_supported("spec.scope", spec.get("scope", ""), SCOPES))
    errs += _validate_versions(spec.get("versions") or [])
    return errs


def _validate_versions(versions: list[Any]) -> list[e.FieldError]:
    if not versions:
        return [e.invalid("spec.versions", versions, "must have exactly one version marked as storage version")]
    errs: list[e.FieldError] = []
    if sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(e.invalid("spec.versions", "", "must have exactly one version marked as storage version"))
    for i, version in enumerate(versions):
        if not version.get("name"):
            errs.append(e.required(f"spec.versions[{i}].name", ""))
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            errs.append(e.required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    return errs


# --- custom resources ---------------------------------------------------------------------------


class CustomResourceStrategy(Strategy):
    tracks_generation = True
    allow_unconditional_update = False

    def __init__(
        self, schema: JsonObject | None, selectable: Mapping[str, FieldGetter], printer_columns: list[JsonObject]
    ) -> None:
        self.schema = schema
        self.selectable = selectable
        self.printer_columns = printer_columns

    def field_getters(self, rt: ResourceType) -> Mapping[str, FieldGetter]:
        return {**COMMON_FIELDS, **self.selectable}

    def decode(self, body: JsonObject, rt: ResourceType) -> JsonObject:
        if not body.get("kind"):
            raise e.bad_request(f"Object 'Kind' is missing in '{_short(body)}'")
        obj, _ = apply_schema(body, self.schema)
        obj["metadata"] = conform(body.get("metadata") or {}, meta_v1.ObjectMeta, rt.kind, rt.version)
        return obj

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + apply_schema(obj, self.schema)[1]

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate_update(new, old, rt) + apply_schema(new, self.schema)[1]

    def validate_status_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return apply_schema(new, self.schema)[1]


def _short(body: JsonObject) -> str:
    return json.dumps(body, separators=(",", ":"))[:200]


def resource_types(crd: JsonObject) -> list[ResourceType]:
    """The resource types a CRD defines, one per served version (storage version first)."""
    spec = crd["spec"]
    spec_names = spec["names"]
    versions = sorted(spec.get("versions") or [], key=lambda v: not v.get("storage"))
    types = []
    for version in versions:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        subs: list[Subresource] = []
        if "status" in subresources:
            subs.append(STATUS)
        selectable = {
            f["jsonPath"].lstrip("."): path_field(*f["jsonPath"].lstrip(".").split("."))
            for f in version.get("selectableFields") or []
        }
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=spec_names["plural"],
                kind=spec_names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                strategy=CustomResourceStrategy(schema, selectable, version.get("additionalPrinterColumns") or []),
                singular=spec_names.get("singular", spec_names["kind"].lower()),
                short_names=tuple(spec_names.get("shortNames") or ()),
                categories=tuple(spec_names.get("categories") or ()),
                subresources=tuple(subs),
                builtin=False,
            )
        )
    return types


def storage_key(crd: JsonObject) -> str:
    return f"{crd['spec']['group']}/{crd['spec']['names']['plural']}"


def stored_version_name(crd: JsonObject) -> str:
    for version in crd["spec"].get("versions") or []:
        if version.get("storage"):
            return str(version["name"])
    return ""
