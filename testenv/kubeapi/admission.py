"""The admission plugins every real cluster runs that change what a create does.

NamespaceLifecycle refuses objects in a missing or terminating namespace;
ServiceAccount, Priority, RuntimeClass and DefaultTolerationSeconds fill and check pods.
They run before validation, as the real mutating admission phase does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors as e
from .gvk import GroupResource
from .jsonobj import JsonObject
from .pod_defaults import apply_admission_defaults

if TYPE_CHECKING:
    from .resources import ResourceType
    from .store import Store

NAMESPACES = "/namespaces"
SERVICE_ACCOUNTS = "/serviceaccounts"
PRIORITY_CLASSES = "scheduling.k8s.io/priorityclasses"
RUNTIME_CLASSES = "node.k8s.io/runtimeclasses"
NAMESPACES_GR = GroupResource("", "namespaces")


def admit_create(store: Store, rt: ResourceType, obj: JsonObject) -> None:
    """Mutate `obj` or raise ApiError, as the create admission chain would."""
    namespace = obj["metadata"].get("namespace", "")
    if rt.namespaced:
        _namespace_lifecycle(store, rt, namespace, obj["metadata"].get("name", ""))
    if rt.group == "" and rt.plural == "pods":
        _admit_pod(store, rt, obj)


def _namespace_lifecycle(store: Store, rt: ResourceType, namespace: str, name: str) -> None:
    ns = store.get(NAMESPACES, "", namespace)
    if ns is None:
        raise e.not_found(NAMESPACES_GR, namespace)
    if ns["metadata"].get("deletionTimestamp"):
        raise e.forbidden(
            rt.group_resource,
            name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )


def _admit_pod(store: Store, rt: ResourceType, pod: JsonObject) -> None:
    name = pod["metadata"].get("name", "")
    apply_admission_defaults(pod)
    spec = pod["spec"]
    namespace = pod["metadata"]["namespace"]
    account = spec["serviceAccountName"]
    if store.get(SERVICE_ACCOUNTS, namespace, account) is None:
        raise e.forbidden(
            rt.group_resource,
            name,
            f'error looking up service account {namespace}/{account}: serviceaccount "{account}" not found',
        )
    _admit_priority(store, rt, pod, name)
    _admit_runtime_class(store, rt, pod, name)


def _admit_priority(store: Store, rt: ResourceType, pod: JsonObject, name: str) -> None:
    spec = pod["spec"]
    class_name = spec.get("priorityClassName", "")
    priority = 0
    if class_name:
        priority_class = store.get(PRIORITY_CLASSES, "", class_name)
        if priority_class is None:
            raise e.forbidden(rt.group_resource, name, f"no PriorityClass with name {class_name} was found")
        priority = int(priority_class.get("value", 0))
        if priority_class.get("preemptionPolicy"):
            spec["preemptionPolicy"] = priority_class["preemptionPolicy"]
    if "priority" in spec and spec["priority"] != priority:
        raise e.forbidden(
            rt.group_resource,
            name,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
            f"priority admission controller computed {priority} from the given PriorityClass name",
        )
    spec["priority"] = priority


def _admit_runtime_class(store: Store, rt: ResourceType, pod: JsonObject, name: str) -> None:
    """The pod's RuntimeClass must exist; its overhead and scheduling constraints join the pod."""
    spec = pod["spec"]
    class_name = spec.get("runtimeClassName")
    if not class_name:
        return
    runtime_class = store.get(RUNTIME_CLASSES, "", class_name)
    if runtime_class is None:
        raise e.forbidden(rt.group_resource, name, f'pod rejected: RuntimeClass "{class_name}" not found')
    overhead = (runtime_class.get("overhead") or {}).get("podFixed")
    if spec.get("overhead") and spec["overhead"] != overhead:
        cause = ("Pod's Overhead doesn't match RuntimeClass's defined Overhead" if overhead
                 else "Pod Overhead set without corresponding RuntimeClass defined Overhead")
        raise e.forbidden(rt.group_resource, name, f"pod rejected: {cause}")
    if overhead:
        spec["overhead"] = dict(overhead)
    scheduling = runtime_class.get("scheduling") or {}
    selector = spec.setdefault("nodeSelector", {}) if scheduling.get("nodeSelector") else spec.get("nodeSelector")
    for key, value in (scheduling.get("nodeSelector") or {}).items():
        if key in selector and selector[key] != value:
            raise e.forbidden(rt.group_resource, name, f"conflict: runtimeClass.scheduling.nodeSelector[{key}] = "
                              f"{value}; pod.spec.nodeSelector[{key}] = {selector[key]}")
        selector[key] = value
    tolerations = spec.setdefault("tolerations", []) if scheduling.get("tolerations") else []
    for toleration in scheduling.get("tolerations") or []:
        if toleration not in tolerations:
            tolerations.append(toleration)
