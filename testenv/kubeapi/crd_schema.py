"""Structural OpenAPI v3 schemas of CustomResourceDefinitions: prune, default, validate.

A real server drops fields a CRD's schema does not declare, fills
`default`s, and rejects values of the wrong type or outside the declared
bounds with messages such as `spec.minMember in body must be of type
integer: "string"`. Code that relies on an undeclared field would work
against a permissive fake and silently lose data on a real cluster; this
module makes it lose the data here too.
"""

from __future__ import annotations

import re
from typing import Any

from . import errors as e
from .jsonobj import JsonObject, clone

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"
_EMBEDDED = "x-kubernetes-embedded-resource"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, schema: JsonObject) -> bool:
    if schema.get(_INT_OR_STRING):
        return json_type(value) in ("integer", "string")
    wanted = schema.get("type")
    if not wanted:
        return True
    actual = json_type(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


class SchemaWalker:
    def __init__(self) -> None:
        self.errors: list[e.FieldError] = []

    def walk(self, value: Any, schema: JsonObject, path: str) -> Any:
        """Returns the pruned, defaulted value; records field errors."""
        if value is None and schema.get("nullable"):
            return None
        if not _type_ok(value, schema):
            wanted = schema.get("type", "")
            self.errors.append(
                e.invalid(path, json_type(value), f'{path} in body must be of type {wanted}: "{json_type(value)}"')
            )
            return value
        self._check_enum(value, schema, path)
        if isinstance(value, dict):
            return self._object(value, schema, path)
        if isinstance(value, list):
            return self._array(value, schema, path)
        if isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._number(value, schema, path)
        return value

    def _check_enum(self, value: Any, schema: JsonObject, path: str) -> None:
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            self.errors.append(e.not_supported(path, value, [str(v) for v in enum]))

    def _object(self, value: JsonObject, schema: JsonObject, path: str) -> JsonObject:
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = schema.get(_EMBEDDED)
        result: dict[str, Any] = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                result[key] = self.walk(item, properties[key], child)
            elif isinstance(additional, dict):
                result[key] = self.walk(item, additional, child)
            elif (
                schema.get(_PRESERVE) or additional is True or (embedded and key in ("apiVersion", "kind", "metadata"))
            ):
                result[key] = item
            elif properties is None and additional is None and not schema.get("type"):
                result[key] = item
        for key, prop in (properties or {}).items():
            if key not in result and "default" in prop:
                result[key] = clone(prop["default"])
        for key in schema.get("required") or []:
            if key not in result:
                self.errors.append(e.required(f"{path}.{key}" if path else key, ""))
        self._bounds(len(result), schema, path, "maxProperties", "minProperties", "properties")
        return result

    def _array(self, value: list[Any], schema: JsonObject, path: str) -> list[Any]:
        items = schema.get("items")
        result = (
            [self.walk(v, items, f"{path}[{i}]") for i, v in enumerate(value)] if isinstance(items, dict) else value
        )
        max_items = schema.get("maxItems")
        if max_items is not None and len(value) > max_items:
            self.errors.append(
                e.FieldError("FieldValueTooMany", path, len(value), f"must have at most {max_items} items")
            )
        min_items = schema.get("minItems")
        if min_items is not None and len(value) < min_items:
            self.errors.append(e.invalid(path, len(value), f"{path} in body should have at least {min_items} items"))
        return result

    def _string(self, value: str, schema: JsonObject, path: str) -> None:
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            self.errors.append(e.invalid(path, value, f"{path} in body should match '{pattern}'"))
        max_length = schema.get("maxLength")
        if max_length is not None and len(value) > max_length:
            self.errors.append(e.too_long(path, f"may not be more than {max_length} bytes"))
        min_length = schema.get("minLength")
        if min_length is not None and len(value) < min_length:
            self.errors.append(e.invalid(path, value, f"{path} in body should be at least {min_length} chars long"))

    def _number(self, value: float, schema: JsonObject, path: str) -> None:
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None:
            if schema.get("exclusiveMinimum") and value <= minimum:
                self.errors.append(e.invalid(path, value, f"{path} in body should be greater than {minimum}"))
            elif value < minimum:
                self.errors.append(
                    e.invalid(path, value, f"{path} in body should be greater than or equal to {minimum}")
                )
        if maximum is not None:
            if schema.get("exclusiveMaximum") and value >= maximum:
                self.errors.append(e.invalid(path, value, f"{path} in body should be less than {maximum}"))
            elif value > maximum:
                self.errors.append(e.invalid(path, value, f"{path} in body should be less than or equal to {maximum}"))

    def _bounds(self, count: int, schema: JsonObject, path: str, max_key: str, min_key: str, noun: str) -> None:
        if schema.get(max_key) is not None and count > schema[max_key]:
            self.errors.append(
                e.FieldError("FieldValueTooMany", path, count, f"must have at most {schema[max_key]} {noun}")
            )
        if schema.get(min_key) is not None and count < schema[min_key]:
            self.errors.append(e.invalid(path, count, f"{path} in body should have at least {schema[min_key]} {noun}"))


def apply_schema(obj: JsonObject, schema: JsonObject | None) -> tuple[JsonObject, list[e.FieldError]]:
    """Prune, default and validate everything but apiVersion/kind/metadata."""
    if not schema:
        return obj, []
    walker = SchemaWalker()
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    root = {
        **schema,
        "properties": {
            k: v for k, v in (schema.get("properties") or {}).items() if k not in ("apiVersion", "kind", "metadata")
        },
    }
    if "properties" not in schema:
        root.pop("properties")
    pruned = walker.walk(body, root, "")
    result: JsonObject = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
    result.update(pruned if isinstance(pruned, dict) else {})
    return result, walker.errors
