"""Pods: the kind whose lifecycle rules matter most to the bridge.

Status is written only through `pods/status`; `spec.nodeName` only through
`pods/binding` (or at create); deleting a pod that runs on a node is
graceful, leaving it to the kubelet to remove it with grace 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from lightkube.models import core_v1

from . import errors as e
from . import names, pod_defaults, pod_validation
from .clock import timestamp
from .gvk import GroupResource
from .jsonobj import JsonObject, clone
from .qos import pod_qos
from .selector import FieldGetter
from .strategy import Strategy, path_field
from .validation import validate_object_meta_update

if TYPE_CHECKING:
    from .resources import ResourceType

TERMINAL_PHASES = ("Succeeded", "Failed")
BINDING_GR = GroupResource("", "pods/binding")


def _host_network(pod: JsonObject) -> str:
    return "true" if (pod.get("spec") or {}).get("hostNetwork") else "false"


class PodStrategy(Strategy):
    model = core_v1.Pod
    # No metadata.generation: pods only got one in 1.33, and discovery says 1.31.
    return_deleted_object = True
    graceful_deletion = True
    extra_fields: ClassVar[Mapping[str, FieldGetter]] = {
        "spec.nodeName": path_field("spec", "nodeName"),
        "spec.restartPolicy": path_field("spec", "restartPolicy"),
        "spec.schedulerName": path_field("spec", "schedulerName"),
        "spec.serviceAccountName": path_field("spec", "serviceAccountName"),
        "spec.hostNetwork": _host_network,
        "status.phase": path_field("status", "phase"),
        "status.podIP": path_field("status", "podIP"),
        "status.nominatedNodeName": path_field("status", "nominatedNodeName"),
    }  # GetAttrs: metadata.uid is no pod field label ("field label not supported")

    def decode(self, body: JsonObject, rt: ResourceType) -> JsonObject:
        pod = super().decode(body, rt)
        pod_defaults.canonicalize_resources(pod, rt.version)
        return pod

    def default(self, obj: JsonObject, rt: ResourceType) -> None:
        pod_defaults.apply_scheme_defaults(obj)

    def prepare_for_create(self, obj: JsonObject, rt: ResourceType) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos(obj["spec"])}
        pod_defaults.merge_affinity_label_keys(obj)  # create only, never on update

    def validate(self, obj: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        return super().validate(obj, rt) + pod_validation.validate_pod_spec(obj["spec"])

    def validate_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        errs = validate_object_meta_update(new["metadata"], old["metadata"])
        errs += pod_validation.validate_pod_spec(new["spec"])
        return errs + pod_validation.validate_pod_spec_update(new["spec"], old["spec"])

    def validate_status_update(self, new: JsonObject, old: JsonObject, rt: ResourceType) -> list[e.FieldError]:
        nominated = (new.get("status") or {}).get("nominatedNodeName", "")
        if nominated and nominated != (old.get("status") or {}).get("nominatedNodeName", ""):
            return [e.invalid("status.nominatedNodeName", nominated, m) for m in names.is_dns1123_subdomain(nominated)]
        return []

    def grace_period(self, obj: JsonObject, requested: int | None) -> int:
        spec = obj.get("spec") or {}
        period = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        if not spec.get("nodeName"):
            return 0  # nothing runs it, so nothing needs time to stop
        if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return 0
        return max(period, 1) if period != 0 else 0


def bind(pod: JsonObject, binding: JsonObject) -> JsonObject:
    """The pod after a Binding; raises ApiError 409 the way the binding REST does."""
    name = pod["metadata"]["name"]
    spec = pod["spec"]
    uid = (binding.get("metadata") or {}).get("uid")
    if uid and uid != pod["metadata"]["uid"]:
        # The storage's UID precondition (registry/core/pod/storage): a binding made for an
        # earlier pod of that name must not place its successor.
        namespace = pod["metadata"]["namespace"]
        raise e.conflict(
            BINDING_GR, name,
            f"StorageError: invalid object, Code: 4, Key: /registry/pods/{namespace}/{name}, ResourceVersion: 0, "
            f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, "
            f"UID in object meta: {pod['metadata']['uid']}",
        )
    if pod["metadata"].get("deletionTimestamp"):
        raise e.conflict(BINDING_GR, name, f"pod {name} is being deleted, cannot be assigned to a host")
    if spec.get("nodeName"):
        raise e.conflict(BINDING_GR, name, f'pod {name} is already assigned to node "{spec["nodeName"]}"')
    if spec.get("schedulingGates"):
        raise e.conflict(BINDING_GR, name, f"pod {name} has non-empty .spec.schedulingGates")
    bound = clone(pod)
    bound["spec"]["nodeName"] = binding["target"]["name"]
    annotations = (binding.get("metadata") or {}).get("annotations") or {}
    if annotations:
        bound["metadata"].setdefault("annotations", {}).update(annotations)
    scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": timestamp()}
    _set_condition(bound.setdefault("status", {}), scheduled)
    return bound


def _set_condition(status: JsonObject, condition: JsonObject) -> None:
    conditions = status.setdefault("conditions", [])
    for existing in conditions:
        if existing.get("type") == condition["type"]:
            existing.update(condition)
            return
    conditions.append(condition)
