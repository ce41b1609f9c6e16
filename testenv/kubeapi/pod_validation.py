"""Pod validation with the server's field paths and wording (pkg/apis/core/validation).

Only the rules code in this project can trip over are here: containers,
resources, volumes, names, policies, tolerations, scheduling gates, and
which spec fields an update may change.
"""

from __future__ import annotations

import json
from typing import Any

from . import errors as e
from . import names, quantity
from .jsonobj import JsonObject, clone
from .validation import validate_labels

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
_STANDARD_QUOTA_RESOURCES = _STANDARD_CONTAINER_RESOURCES | {
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "services.nodeports",
    "services.loadbalancers",
}
MAX_INT32 = 2147483647


# RelaxedEnvironmentVariableValidation (GA in 1.34): any printable ASCII but '='.
ENV_VAR_NAME_MESSAGE = (
    "a valid environment variable name must consist only of printable ASCII characters other than '='"
)


def is_env_var_name(name: str) -> bool:
    return all(" " <= c <= "~" and c != "=" for c in name)


def validate_pod_spec(spec: JsonObject) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    volume_names = _validate_volumes(spec.get("volumes") or [], errs)
    if not spec.get("containers"):
        errs.append(e.required("spec.containers", ""))
    seen: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field) or []):
            errs += _validate_container(container, f"spec.{field}[{i}]", seen, volume_names)
    errs += _validate_policies(spec)
    errs += _validate_scheduling(spec)
    return errs


def _validate_container(container: JsonObject, path: str, seen: set[str], volumes: set[str]) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    name = container.get("name", "")
    if not name:
        errs.append(e.required(f"{path}.name", ""))
    else:
        errs += [e.invalid(f"{path}.name", name, m) for m in names.is_dns1123_label(name)]
        if name in seen:
            errs.append(e.duplicate(f"{path}.name", name))
        seen.add(name)
    image = container.get("image", "")
    if not image:
        errs.append(e.required(f"{path}.image", ""))
    elif image != image.strip():
        errs.append(e.invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    errs += _validate_ports(container.get("ports") or [], f"{path}.ports")
    for j, env in enumerate(container.get("env") or []):
        env_name = env.get("name", "")
        if not env_name:
            errs.append(e.required(f"{path}.env[{j}].name", ""))
        elif not is_env_var_name(env_name):
            errs.append(e.invalid(f"{path}.env[{j}].name", env_name, ENV_VAR_NAME_MESSAGE))
    errs += _validate_mounts(container.get("volumeMounts") or [], f"{path}.volumeMounts", volumes)
    errs += validate_resources(container.get("resources") or {}, f"{path}.resources")
    return errs


def _validate_ports(ports: list[Any], path: str) -> list[e.FieldError]:
    errs = []
    for j, port in enumerate(ports):
        number = port.get("containerPort", 0)
        if not number:
            errs.append(e.required(f"{path}[{j}].containerPort", ""))
        elif not 1 <= number <= 65535:
            errs.append(e.invalid(f"{path}[{j}].containerPort", number, "must be between 1 and 65535, inclusive"))
        if port.get("protocol", "TCP") not in PROTOCOLS:
            errs.append(e.not_supported(f"{path}[{j}].protocol", port.get("protocol"), PROTOCOLS))
    return errs


def _validate_mounts(mounts: list[Any], path: str, volumes: set[str]) -> list[e.FieldError]:
    errs = []
    paths: set[str] = set()
    for j, mount in enumerate(mounts):
        name = mount.get("name", "")
        if not name:
            errs.append(e.required(f"{path}[{j}].name", ""))
        elif name not in volumes:
            errs.append(e.not_found_field(f"{path}[{j}].name", name))
        mount_path = mount.get("mountPath", "")
        if not mount_path:
            errs.append(e.required(f"{path}[{j}].mountPath", ""))
        elif mount_path in paths:
            errs.append(e.invalid(f"{path}[{j}].mountPath", mount_path, "must be unique"))
        paths.add(mount_path)
    return errs


def _validate_volumes(volumes: list[Any], errs: list[e.FieldError]) -> set[str]:
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        name = volume.get("name", "")
        path = f"spec.volumes[{i}].name"
        if not name:
            errs.append(e.required(path, ""))
            continue
        errs += [e.invalid(path, name, m) for m in names.is_dns1123_label(name)]
        if name in seen:
            errs.append(e.duplicate(path, name))
        seen.add(name)
    return seen


# --- resources ----------------------------------------------------------------------------------


def is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def is_extended(name: str) -> bool:
    return not is_native(name) and not name.startswith("requests.") and not names.is_qualified_name("requests." + name)


def overcommit_allowed(name: str) -> bool:
    return is_native(name) and not is_hugepages(name)


def _validate_resource_name(name: str, path: str) -> list[e.FieldError]:
    problems = names.is_qualified_name(name)
    if problems:
        return [e.invalid(path, name, m) for m in problems]
    if "/" not in name:
        if name not in _STANDARD_QUOTA_RESOURCES and not is_hugepages(name):
            return [e.invalid(path, name, "must be a standard resource type or fully qualified")]
        if name not in _STANDARD_CONTAINER_RESOURCES and not is_hugepages(name):
            return [e.invalid(path, name, "must be a standard resource for containers")]
    elif not is_native(name) and not is_extended(name):
        return [e.invalid(path, name, "doesn't follow extended resource name standard")]
    return []


def _validate_quantity(name: str, text: str, path: str) -> list[e.FieldError]:
    value = quantity.parse(text)
    errs = []
    if value.value < 0:
        errs.append(e.invalid(path, str(value), "must be greater than or equal to 0"))
    if is_extended(name) and not value.is_integer():
        errs.append(e.invalid(path, str(value), "must be an integer"))
    return errs


def validate_resources(resources: JsonObject, path: str) -> list[e.FieldError]:
    """Requests/limits rules; quantities were parsed (and canonicalised) during decoding."""
    errs: list[e.FieldError] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for name, text in limits.items():
        errs += _validate_resource_name(name, f"{path}.limits[{name}]")
        errs += _validate_quantity(name, text, f"{path}.limits[{name}]")
    for name, text in requests.items():
        errs += _validate_resource_name(name, f"{path}.requests[{name}]")
        errs += _validate_quantity(name, text, f"{path}.requests[{name}]")
        errs += _request_against_limit(name, text, limits, path)
    compute = {"cpu", "memory"} & (set(limits) | set(requests))
    if not compute and any(is_hugepages(n) for n in [*limits, *requests]):
        errs.append(e.forbidden_field(path, "HugePages require cpu or memory"))
    return errs


def _request_against_limit(name: str, text: str, limits: JsonObject, path: str) -> list[e.FieldError]:
    request = quantity.parse(text)
    if name not in limits:
        if overcommit_allowed(name):
            return []
        return [e.required(f"{path}.limits", "Limit must be set for non overcommitable resources")]
    limit = quantity.parse(limits[name])
    if request != limit and not overcommit_allowed(name):
        return [e.invalid(f"{path}.requests", str(request), f"must be equal to {name} limit of {limit}")]
    if limit < request:
        return [e.invalid(f"{path}.requests", str(request), f"must be less than or equal to {name} limit of {limit}")]
    return []


# --- policies and scheduling -------------------------------------------------------------------


def _validate_policies(spec: JsonObject) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    restart = spec.get("restartPolicy", "")
    if restart not in RESTART_POLICIES:
        errs.append(e.not_supported("spec.restartPolicy", restart, RESTART_POLICIES))
    dns = spec.get("dnsPolicy", "")
    if dns not in DNS_POLICIES:
        errs.append(e.not_supported("spec.dnsPolicy", dns, DNS_POLICIES))
    elif dns == "None" and not spec.get("dnsConfig"):
        errs.append(e.required("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    for field in ("hostname", "subdomain"):
        if spec.get(field):
            errs += [e.invalid(f"spec.{field}", spec[field], m) for m in names.is_dns1123_label(spec[field])]
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        errs.append(e.invalid("spec.activeDeadlineSeconds", deadline, f"must be between 1 and {MAX_INT32}, inclusive"))
    errs += validate_labels(spec.get("nodeSelector") or {}, "spec.nodeSelector")
    return errs


def _validate_scheduling(spec: JsonObject) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    node = spec.get("nodeName", "")
    if node:
        errs += [e.invalid("spec.nodeName", node, m) for m in names.is_dns1123_subdomain(node)]
    gates = spec.get("schedulingGates") or []
    if gates and node:
        errs.append(e.forbidden_field("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    seen: set[str] = set()
    for i, gate in enumerate(gates):
        gate_name = gate.get("name", "")
        errs += [e.invalid(f"spec.schedulingGates[{i}].name", gate_name, m) for m in names.is_qualified_name(gate_name)]
        if gate_name in seen:
            errs.append(e.duplicate(f"spec.schedulingGates[{i}].name", gate_name))
        seen.add(gate_name)
    for i, toleration in enumerate(spec.get("tolerations") or []):
        errs += _validate_toleration(toleration, f"spec.tolerations[{i}]")
    for i, constraint in enumerate(spec.get("topologySpreadConstraints") or []):
        skew = constraint.get("maxSkew", 0)
        if not isinstance(skew, int) or skew <= 0:
            errs.append(e.invalid(f"spec.topologySpreadConstraints[{i}].maxSkew", skew, "must be greater than zero"))
    return errs


def _validate_toleration(toleration: JsonObject, path: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    key = toleration.get("key", "")
    operator = toleration.get("operator", "Equal")
    if key:
        errs += [e.invalid(f"{path}.key", key, m) for m in names.is_qualified_name(key)]
    elif operator != "Exists":
        errs.append(
            e.invalid(
                f"{path}.operator",
                operator,
                'operator must be Exists when `key` is empty, which means "match all values and all keys"',
            )
        )
    if operator not in TOLERATION_OPERATORS:
        errs.append(e.not_supported(f"{path}.operator", operator, TOLERATION_OPERATORS))
    elif operator == "Exists" and toleration.get("value"):
        errs.append(
            e.invalid(f"{path}.operator", toleration["value"], "value must be empty when `operator` is 'Exists'")
        )
    effect = toleration.get("effect", "")
    if effect and effect not in TAINT_EFFECTS:
        errs.append(e.not_supported(f"{path}.effect", effect, TAINT_EFFECTS))
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        errs.append(e.invalid(f"{path}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return errs


# --- updates ------------------------------------------------------------------------------------

UPDATABLE_FIELDS = ",".join(
    [
        "`spec.containers[*].image`",
        "`spec.initContainers[*].image`",
        "`spec.activeDeadlineSeconds`",
        "`spec.tolerations` (only additions to existing tolerations)",
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    ]
)


def validate_pod_spec_update(new: JsonObject, old: JsonObject) -> list[e.FieldError]:
    """Pod specs are immutable except images, a shorter deadline, added tolerations, removed gates."""
    errs: list[e.FieldError] = []
    for field in ("containers", "initContainers"):
        for i, container in enumerate(new.get(field) or []):
            if not container.get("image"):
                errs.append(e.required(f"spec.{field}[{i}].image", ""))
    errs += _deadline_update(new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds"))
    errs += _gates_update(new.get("schedulingGates") or [], old.get("schedulingGates") or [])
    munged = _munge(new, old)
    if munged != old:
        errs.append(
            e.forbidden_field(
                "spec", f"pod updates may not change fields other than {UPDATABLE_FIELDS}\n{_diff(old, munged)}"
            )
        )
    return errs


def _munge(new: JsonObject, old: JsonObject) -> JsonObject:
    """`new` with every field an update may change set back to `old`'s value."""
    munged = clone(new)
    for field in ("containers", "initContainers"):
        old_list = old.get(field) or []
        new_list = munged.get(field) or []
        if len(old_list) == len(new_list):
            for container, previous in zip(new_list, old_list, strict=True):
                container["image"] = previous.get("image")
    for field in ("activeDeadlineSeconds", "schedulingGates"):
        if field in old:
            munged[field] = old[field]
        else:
            munged.pop(field, None)
    old_tolerations = old.get("tolerations")
    if all(t in (new.get("tolerations") or []) for t in old_tolerations or []):
        if old_tolerations is None:
            munged.pop("tolerations", None)
        else:
            munged["tolerations"] = old_tolerations
    return munged


def _deadline_update(new: int | None, old: int | None) -> list[e.FieldError]:
    if old is None or new is None:
        if old is not None:
            return [
                e.invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value")
            ]
        return []
    if new > old:
        return [e.invalid("spec.activeDeadlineSeconds", new, "must be less than or equal to previous value")]
    return []


def _gates_update(new: list[Any], old: list[Any]) -> list[e.FieldError]:
    old_names = {g.get("name") for g in old}
    errs = []
    for i, gate in enumerate(new):
        if gate.get("name") not in old_names:
            errs.append(
                e.forbidden_field(
                    f"spec.schedulingGates[{i}]",
                    f"only deletion is allowed, but found new scheduling gate '{gate.get('name')}'",
                )
            )
    return errs


def _diff(old: JsonObject, new: JsonObject) -> str:
    """A short account of which spec fields differ (the real server prints a Go cmp.Diff)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines.append(f"-  {key}: {json.dumps(old.get(key), sort_keys=True)}")
            lines.append(f"+  {key}: {json.dumps(new.get(key), sort_keys=True)}")
    return "\n".join(lines)


def validate_binding(binding: JsonObject) -> list[e.FieldError]:
    target = binding.get("target") or {}
    errs = []
    if target.get("kind", "") not in ("", "Node"):
        errs.append(e.not_supported("target.kind", target.get("kind"), ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(e.required("target.name", ""))
    return errs
