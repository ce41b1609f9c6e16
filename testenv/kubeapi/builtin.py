"""The built-in kinds, one registry entry each, and the small strategies they need.

Pods, events and CRDs have modules of their own; the kinds here differ from
the default strategy only in a few defaults and checks.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from typing import ClassVar

from lightkube.models import coordination_v1, core_v1, node_v1, scheduling_v1

from . import errors as e
from . import names, quantity
from .crds import CrdStrategy
from .decoding import cannot_handle
from .events import CoreEventStrategy, EventsV1Strategy
from .jsonobj import JsonObject
from .pods import PodStrategy
from .resources import STATUS, Registry, ResourceType, Subresource
from .reviews import REVIEW_KINDS
from .selector import FieldGetter
from .strategy import Strategy, path_field


def _bool_field(*path: str) -> FieldGetter:
    get = path_field(*path)
    return lambda obj: get(obj) or "false"


class NodeStrategy(Strategy):
    model = core_v1.Node
    keeps_status_on_create = True  # kubelets register with their capacity in one create
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {"spec.unschedulable": _bool_field("spec", "unschedulable")}

    def decode(self, body: JsonObject, rt: ResourceType) -> JsonObject:
        node = super().decode(body, rt)
        status = node.get("status") or {}
        for key in ("capacity", "allocatable"):
            if status.get(key):
                try:
                    status[key] = {n: quantity.canonical_text(v) for n, v in status[key].items()}
                except quantity.QuantityError as err:
                    raise cannot_handle(rt.kind, rt.version, str(err)) from err
        return node

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + _taint_errors(obj)

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate_update(new, old, rt) + _taint_errors(new)


TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _taint_errors(node: JsonObject) -> list[e.FieldError]:
    errs = []
    for i, taint in enumerate((node.get("spec") or {}).get("taints") or []):
        if not taint.get("key"):
            errs.append(e.required(f"spec.taints[{i}].key", ""))
        if taint.get("effect") not in TAINT_EFFECTS:
            errs.append(e.not_supported(f"spec.taints[{i}].effect", taint.get("effect", ""), TAINT_EFFECTS))
    return errs


class NamespaceStrategy(Strategy):
    model = core_v1.Namespace

    def check_name(self, name: str) -> list[str]:
        return names.is_dns1123_label(name)

    return_deleted_object = True
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {"status.phase": path_field("status", "phase")}

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        # The server labels every namespace with its own name (so selectors can pick namespaces).
        name = obj.get("metadata", {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    def prepare_for_create(self, obj: JsonObject, rt: ResourceType) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]

    def prepare_for_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> None:
        super().prepare_for_update(new, old, rt)
        new["spec"] = old.get("spec", {})  # finalizers change only through namespaces/finalize


def _validate_keys(data: JsonObject | None, field: str) -> list[e.FieldError]:
    errs = []
    for key in data or {}:
        errs += [e.invalid(f"{field}[{key}]", key, m) for m in names.is_config_key(key)]
    return errs


def _immutable_data(new: JsonObject, old: JsonObject, fields: tuple[str, ...]) -> list[e.FieldError]:
    if not old.get("immutable"):
        return []
    errs = []
    for field in fields:
        if new.get(field) != old.get(field):
            errs.append(e.forbidden_field(field, "field is immutable when `immutable` is set"))
    if not new.get("immutable"):
        errs.append(e.forbidden_field("immutable", "field is immutable when `immutable` is set"))
    return errs


class ConfigMapStrategy(Strategy):
    model = core_v1.ConfigMap

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return (
            super().validate(obj, rt)
            + _validate_keys(obj.get("data"), "data")
            + _validate_keys(obj.get("binaryData"), "binaryData")
        )

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate_update(new, old, rt) + _immutable_data(new, old, ("data", "binaryData"))


class SecretStrategy(Strategy):
    model = core_v1.Secret
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {"type": path_field("type")}

    def decode(self, body: JsonObject, rt: ResourceType) -> JsonObject:
        secret = super().decode(body, rt)
        for key, value in (secret.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as err:
                raise cannot_handle(rt.kind, rt.version, f"illegal base64 data in data[{key}]") from err
        string_data = secret.pop("stringData", None) or {}
        if string_data:
            data = secret.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode()).decode()
        return secret

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        obj.setdefault("type", "Opaque")

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + _validate_keys(obj.get("data"), "data")

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate_update(new, old, rt) + _immutable_data(new, old, ("data",))
        if new.get("type") != old.get("type"):
            errs.append(e.invalid("type", new.get("type", ""), "field is immutable"))
        return errs


class ServiceAccountStrategy(Strategy):
    model = core_v1.ServiceAccount
    return_deleted_object = True


class ServiceStrategy(Strategy):
    """ClusterIP services get an address from 10.96.0.0/12 like a default kubeadm cluster."""

    model = core_v1.Service

    def check_name(self, name: str) -> list[str]:
        return names.is_dns1035_label(name)

    return_deleted_object = True

    def __init__(self) -> None:
        self._next_ip = int(ipaddress.IPv4Address("10.96.0.10"))

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))

    def prepare_for_create(self, obj: JsonObject, rt: ResourceType) -> None:
        super().prepare_for_create(obj, rt)
        spec = obj["spec"]
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = str(ipaddress.IPv4Address(self._next_ip))
            self._next_ip += 1
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> None:
        super().prepare_for_update(new, old, rt)
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if field in old.get("spec", {}) and not new["spec"].get(field):
                new["spec"][field] = old["spec"][field]

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate(obj, rt)
        spec = obj.get("spec") or {}
        ports = spec.get("ports") or []
        if not ports and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
            errs.append(e.required("spec.ports", ""))
        for i, port in enumerate(ports):
            number = port.get("port", 0)
            if not 1 <= number <= 65535:
                errs.append(e.invalid(f"spec.ports[{i}].port", number, "must be between 1 and 65535, inclusive"))
        return errs

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate_update(new, old, rt)
        if new["spec"].get("clusterIP") != old["spec"].get("clusterIP"):
            errs.append(e.invalid("spec.clusterIP", new["spec"].get("clusterIP", ""), "field is immutable"))
        return errs


class LeaseStrategy(Strategy):
    """Lease (coordination.k8s.io/v1): ValidateLeaseSpec on create and update.
    pkg/registry/coordination/lease/strategy.go: AllowUnconditionalUpdate false (a PUT must carry
    a resourceVersion), AllowCreateOnUpdate true (a PUT of a missing Lease creates it)."""

    model = coordination_v1.Lease
    allow_unconditional_update = False
    allow_create_on_update = True

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + _lease_spec_errors(obj)

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate_update(new, old, rt) + _lease_spec_errors(new)


LEASE_STRATEGIES = ["OldestEmulationVersion"]


def _lease_spec_errors(lease: JsonObject) -> list[e.FieldError]:
    """pkg/apis/coordination/validation ValidateLeaseSpec."""
    spec = lease.get("spec") or {}
    errs = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(e.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(e.invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy is not None and "/" not in strategy and strategy not in LEASE_STRATEGIES:  # else a qualified name
        errs.append(e.not_supported("spec.strategy", strategy, LEASE_STRATEGIES))
    if spec.get("preferredHolder") and not strategy:
        errs.append(e.forbidden_field("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


class PriorityClassStrategy(Strategy):
    model = scheduling_v1.PriorityClass

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate(obj, rt)
        if "value" not in obj:
            errs.append(e.required("value", ""))
        return errs


class RuntimeClassStrategy(Strategy):
    """RuntimeClass (node.k8s.io/v1): a handler name, optional overhead and scheduling, which
    the RuntimeClass admission plugin adds to the pods that name it (admission.py)."""

    model = node_v1.RuntimeClass

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate(obj, rt)
        handler = obj.get("handler")
        if not handler:
            errs.append(e.required("handler", ""))
        else:
            errs += [e.invalid("handler", handler, message) for message in names.is_dns1123_label(handler)]
        return errs

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = super().validate_update(new, old, rt)
        if new.get("handler") != old.get("handler"):
            errs.append(e.invalid("handler", new.get("handler"), "field is immutable"))
        return errs


class BindingStrategy(Strategy):
    model = core_v1.Binding


BINDING = Subresource("binding", "Binding", ("create",))
LOG = Subresource("log", "Pod", ("get",))
FINALIZE = Subresource("finalize", "Namespace", ("update",))


def builtin_registry() -> Registry:
    """A registry with every built-in kind; CRDs add to it later."""
    registry = Registry()
    core = [
        ResourceType(
            "", "v1", "pods", "Pod", True, PodStrategy(), "pod", ("po",), ("all",), subresources=(STATUS, BINDING, LOG)
        ),
        ResourceType("", "v1", "nodes", "Node", False, NodeStrategy(), "node", ("no",), subresources=(STATUS,)),
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            False,
            NamespaceStrategy(),
            "namespace",
            ("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            subresources=(STATUS, FINALIZE),
        ),
        ResourceType("", "v1", "secrets", "Secret", True, SecretStrategy(), "secret"),
        ResourceType("", "v1", "configmaps", "ConfigMap", True, ConfigMapStrategy(), "configmap", ("cm",)),
        ResourceType(
            "",
            "v1",
            "services",
            "Service",
            True,
            ServiceStrategy(),
            "service",
            ("svc",),
            ("all",),
            verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
            subresources=(STATUS,),
        ),
        ResourceType(
            "", "v1", "serviceaccounts", "ServiceAccount", True, ServiceAccountStrategy(), "serviceaccount", ("sa",)
        ),
        ResourceType("", "v1", "events", "Event", True, CoreEventStrategy(), "event", ("ev",), storage="events"),
        ResourceType("", "v1", "bindings", "Binding", True, BindingStrategy(), "binding", verbs=("create",)),
        ResourceType(
            "events.k8s.io", "v1", "events", "Event", True, EventsV1Strategy(), "event", ("ev",), storage="events"
        ),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            CrdStrategy(),
            "customresourcedefinition",
            ("crd", "crds"),
            ("api-extensions",),
            subresources=(STATUS,),
        ),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, LeaseStrategy(), "lease"),
        ResourceType(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            False,
            PriorityClassStrategy(),
            "priorityclass",
            ("pc",),
        ),
        ResourceType(
            "node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, RuntimeClassStrategy(), "runtimeclass"
        ),
    ]
    reviews = [
        ResourceType("authorization.k8s.io", "v1", plural, kind, False, Strategy(), verbs=("create",))
        for plural, kind in REVIEW_KINDS.items()
    ]
    for rt in core + reviews:
        registry.add(rt)
    return registry
