"""Decode request bodies into built-in kinds the way the Go server does.

The real server unmarshals JSON into typed structs: unknown fields vanish,
a string where an integer belongs is a 400, JSON null on a pointer is
"unset". lightkube's generated models describe the same structs, so their
type information is our schema; we walk it instead of writing one.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
from msgspec import inspect as mi

from .errors import ApiError, bad_request


class DecodeError(ValueError):
    """A value does not fit the Go type; the message follows encoding/json."""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# The integer fields of the kinds decoded here that are int64 in Go; the rest are int32.
INT64_FIELDS = frozenset({
    "activeDeadlineSeconds", "terminationGracePeriodSeconds", "deletionGracePeriodSeconds", "generation",
    "observedGeneration", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups", "expirationSeconds",
    "seconds",  # a lifecycle handler's sleep
    "tolerationSeconds", "sizeBytes", "capacity",  # a node's images, its swap
    "uid", "gid",  # a container status's user
    "maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties",  # a CRD's schema
})
_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


def _int_type(path: list[str]) -> str:
    return "int64" if path and path[-1] in INT64_FIELDS else "int32"


def _go_type(t: mi.Type, path: list[str] | None = None) -> str:
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.IntType):
        return _int_type(path or [])
    if isinstance(t, mi.FloatType):
        return "float64"
    if isinstance(t, mi.ListType):
        return "[]" + _go_type(t.item_type, path)
    if isinstance(t, mi.DictType):
        return "map[string]string"
    if isinstance(t, mi.StructType):
        return t.cls.__name__
    return "interface {}"


class _Walker:
    def __init__(self, struct_name: str) -> None:
        self.struct_name = struct_name

    def fail(self, value: Any, t: mi.Type, path: list[str]) -> DecodeError:
        where = ".".join(path)
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            f"{self.struct_name}.{where} of type {_go_type(t, path)}"
        )

    def conform(self, value: Any, t: mi.Type, path: list[str]) -> Any:
        if isinstance(t, mi.UnionType):
            return self.union(value, t, path)
        if isinstance(t, mi.StructType):
            return self.struct(value, t, path)
        if isinstance(t, mi.ListType):
            if not isinstance(value, list):
                raise self.fail(value, t, path)
            return [self.conform(v, t.item_type, path) for v in value]
        if isinstance(t, mi.DictType):
            if not isinstance(value, dict):
                raise self.fail(value, t, path)
            return {k: self.conform(v, t.value_type, path) for k, v in value.items()}
        return self.scalar(value, t, path)

    def union(self, value: Any, t: mi.UnionType, path: list[str]) -> Any:
        if value is None:
            return None
        options = [o for o in t.types if not isinstance(o, mi.NoneType)]
        if len(options) == 1:
            return self.conform(value, options[0], path)
        failures: dict[type, DecodeError] = {}
        for option in options:  # int-or-string and friends
            try:
                return self.conform(value, option, path)
            except DecodeError as error:
                failures[type(option)] = error
        if isinstance(value, (int, float)) and not isinstance(value, bool) and mi.IntType in failures:
            raise failures[mi.IntType]  # IntOrString reads a number as its int: "number 8080.0 into ..."
        raise self.fail(value, options[0], path)

    def struct(self, value: Any, t: mi.StructType, path: list[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(value, t, path)
        outer, self.struct_name = self.struct_name, t.cls.__name__
        out: dict[str, Any] = {}
        for f in t.fields:
            if f.encode_name in value:
                conformed = self.conform(value[f.encode_name], f.type, [*path, f.encode_name])
                if conformed is not None:
                    out[f.encode_name] = conformed
        self.struct_name = outer
        return out

    def scalar(self, value: Any, t: mi.Type, path: list[str]) -> Any:
        if isinstance(t, mi.DateTimeType) and isinstance(value, str):
            return _time(value, micro=bool(path) and path[-1] in MICRO_TIME_FIELDS)
        if isinstance(t, mi.StrType) and isinstance(value, str):
            return value
        if isinstance(t, mi.BoolType) and isinstance(value, bool):
            return value
        if isinstance(t, mi.IntType) and isinstance(value, (int, float)) and not isinstance(value, bool):
            # Go's ParseInt: 30.0 is no integer, and the field's size bounds it.
            low, high = _INT_RANGES[_int_type(path)]
            if isinstance(value, int) and low <= value <= high:
                return value
            raise DecodeError(f"json: cannot unmarshal number {value!r} into Go struct field "
                              f"{self.struct_name}.{'.'.join(path)} of type {_int_type(path)}")
        if isinstance(t, mi.FloatType) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(t, mi.AnyType):
            return value
        if value is None:
            return None
        raise self.fail(value, t, path)


MICRO_TIME_FIELDS = frozenset({"renewTime", "acquireTime", "eventTime", "lastObservedTime"})
"""Fields of type metav1.MicroTime in the kinds decoded here (Lease, Event); every other time is
a metav1.Time."""
_TIME_CHUNKS = (("2006", r"\d{4}"), ("-", "-"), ("01", r"\d{2}"), ("-", "-"), ("02", r"\d{2}"), ("T", "T"),
                ("15", r"\d{2}"), (":", ":"), ("04", r"\d{2}"), (":", ":"), ("05", r"\d{2}"))
_ZONE = ("Z07:00", r"Z|[+-]\d{2}:\d{2}")


def _time(value: str, *, micro: bool) -> str:
    """metav1.Time parses RFC 3339 (a fraction allowed where the layout has none); metav1.MicroTime
    parses "2006-01-02T15:04:05.000000Z07:00", exactly six fractional digits. Anything else makes
    the body one the server cannot handle (400), worded as Go's time.ParseError: the rest of the
    value where parsing stopped, and the layout's element it did not match."""
    fraction = (".000000", r"\.\d{6}") if micro else ("", r"(\.\d+)?")
    layout = "".join(c for c, _ in _TIME_CHUNKS) + fraction[0] + _ZONE[0]
    rest = value
    for chunk, pattern in (*_TIME_CHUNKS, fraction, _ZONE):
        matched = re.match(pattern, rest)
        if matched is None:
            raise DecodeError(f'parsing time "{value}" as "{layout}": cannot parse "{rest}" as "{chunk}"')
        rest = rest[matched.end():]
    if rest:
        raise DecodeError(f'parsing time "{value}": extra text: "{rest}"')
    return value


@cache
def _type_info(model: type) -> mi.StructType:
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    return info


def conform(body: dict[str, Any], model: type[msgspec.Struct], kind: str, version: str) -> dict[str, Any]:
    """Keep only the fields `model` knows, with JSON types checked.

    Raises ApiError 400 worded like the server's "cannot be handled as" error.
    """
    try:
        out = _Walker(model.__name__).struct(body, _type_info(model), [])
        _check_string_maps(out)
        return out
    except DecodeError as e:
        raise cannot_handle(kind, version, str(e)) from e


def cannot_handle(kind: str, version: str, cause: str) -> ApiError:
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {cause}')


def _check_string_maps(obj: dict[str, Any]) -> None:
    """Labels, annotations, a pod's nodeSelector and its label selectors' matchLabels are
    map[string]string even though the models say `dict`: a number is refused as Go refuses it,
    a null is the empty string (as are nulls in their string lists)."""
    meta = obj.get("metadata") or {}
    for key in ("labels", "annotations"):
        _string_map(meta.get(key), "ObjectMeta", f"metadata.{key}")
    if obj.get("kind") != "Pod":
        return
    spec = obj.get("spec") or {}
    _string_map(spec.get("nodeSelector"), "PodSpec", "spec.nodeSelector")
    for constraint in spec.get("topologySpreadConstraints") or []:
        _selector(constraint.get("labelSelector"), "spec.topologySpreadConstraints.labelSelector")
    affinity = spec.get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        pods = affinity.get(kind) or {}
        path = f"spec.affinity.{kind}"
        for term in pods.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            for field in ("labelSelector", "namespaceSelector"):
                _selector(term.get(field), f"{path}.requiredDuringSchedulingIgnoredDuringExecution.{field}")
            _null_strings(term.get("matchLabelKeys"))
            _null_strings(term.get("mismatchLabelKeys"))
        for weighted in pods.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
            term = weighted.get("podAffinityTerm") or {}
            for field in ("labelSelector", "namespaceSelector"):
                _selector(term.get(field),
                          f"{path}.preferredDuringSchedulingIgnoredDuringExecution.podAffinityTerm.{field}")
            _null_strings(term.get("matchLabelKeys"))
            _null_strings(term.get("mismatchLabelKeys"))
    node = affinity.get("nodeAffinity") or {}
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = [*(required.get("nodeSelectorTerms") or []),
             *((p.get("preference") or {}) for p in node.get("preferredDuringSchedulingIgnoredDuringExecution") or [])]
    for term in terms:
        for req in [*(term.get("matchExpressions") or []), *(term.get("matchFields") or [])]:
            _null_strings(req.get("values"))


def _string_map(mapping: Any, struct: str, path: str) -> None:
    for key, value in (mapping or {}).items():
        if value is None:
            mapping[key] = ""
        elif not isinstance(value, str):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field {struct}.{path} "
                              f"of type string")


def _selector(selector: Any, path: str) -> None:
    if not selector:
        return
    _string_map(selector.get("matchLabels"), "LabelSelector", f"{path}.matchLabels")
    for req in selector.get("matchExpressions") or []:
        _null_strings(req.get("values"))


def _null_strings(values: list[Any] | None) -> None:
    for i, value in enumerate(values or []):
        if value is None:
            values[i] = ""