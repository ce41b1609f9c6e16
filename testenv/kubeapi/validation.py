"""ObjectMeta checks every kind shares (apimachinery/pkg/api/validation/objectmeta.go)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors as e
from . import names
from .jsonobj import JsonObject

NameCheck = Callable[[str], list[str]]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def generate_name_check(check: NameCheck) -> NameCheck:
    """generateName is a prefix: a trailing '-' is fine because random characters follow."""

    def prefix_check(value: str) -> list[str]:
        return check(value[:-1] if value.endswith("-") else value)

    return prefix_check


def validate_object_meta(meta: JsonObject, *, namespaced: bool, name_check: NameCheck) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    name = meta.get("name", "")
    generate_name = meta.get("generateName", "")
    if generate_name:
        errs += [
            e.invalid("metadata.generateName", generate_name, m) for m in generate_name_check(name_check)(generate_name)
        ]
    if not name:
        errs.append(e.required("metadata.name", "name or generateName is required"))
    else:
        errs += [e.invalid("metadata.name", name, m) for m in name_check(name)]
    errs += _validate_namespace_field(meta.get("namespace", ""), namespaced)
    errs += validate_labels(meta.get("labels") or {}, "metadata.labels")
    errs += validate_annotations(meta.get("annotations") or {}, "metadata.annotations")
    errs += _validate_finalizers(meta.get("finalizers") or [])
    errs += _validate_owner_references(meta.get("ownerReferences") or [])
    return errs


def _validate_namespace_field(namespace: str, namespaced: bool) -> list[e.FieldError]:
    if namespaced:
        if not namespace:
            return [e.required("metadata.namespace", "")]
        return [e.invalid("metadata.namespace", namespace, m) for m in names.is_dns1123_label(namespace)]
    if namespace:
        return [e.forbidden_field("metadata.namespace", "not allowed on this type")]
    return []


def validate_labels(labels: JsonObject, path: str) -> list[e.FieldError]:
    errs = []
    for key, value in labels.items():
        errs += [e.invalid(path, key, m) for m in names.is_qualified_name(key)]
        errs += [e.invalid(path, value, m) for m in names.is_label_value(value)]
    return errs


def validate_annotations(annotations: JsonObject, path: str) -> list[e.FieldError]:
    errs = []
    total = 0
    for key, value in annotations.items():
        errs += [e.invalid(path, key, m) for m in names.is_qualified_name(key.lower())]
        total += len(key) + len(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(e.too_long(path, f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    return errs


def _validate_finalizers(finalizers: list[Any]) -> list[e.FieldError]:
    errs = []
    for i, finalizer in enumerate(finalizers):
        errs += [e.invalid(f"metadata.finalizers[{i}]", finalizer, m) for m in names.is_qualified_name(finalizer)]
    return errs


def _validate_owner_references(refs: list[Any]) -> list[e.FieldError]:
    errs = []
    for i, ref in enumerate(refs):
        path = f"metadata.ownerReferences[{i}]"
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                detail = "uid must not be empty" if field == "uid" else f"{field} must not be empty"
                errs.append(e.invalid(f"{path}.{field}", ref.get(field, ""), detail))
    return errs


def validate_object_meta_update(new: JsonObject, old: JsonObject) -> list[e.FieldError]:
    """Identity fields cannot change; the caller has already filled omitted ones from `old`."""
    errs = []
    for field in ("name", "namespace", "uid", "creationTimestamp"):
        if new.get(field, "") != old.get(field, ""):
            errs.append(e.invalid(f"metadata.{field}", new.get(field, ""), "field is immutable"))
    errs += validate_labels(new.get("labels") or {}, "metadata.labels")
    errs += validate_annotations(new.get("annotations") or {}, "metadata.annotations")
    errs += _validate_finalizers(new.get("finalizers") or [])
    errs += _validate_owner_references(new.get("ownerReferences") or [])
    return errs
