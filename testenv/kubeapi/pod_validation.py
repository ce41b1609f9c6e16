"""Pod validation with the server's field paths and wording (pkg/apis/core/validation).

Only the rules code in this project can trip over are here: containers,
resources, volumes, names, policies, tolerations, scheduling gates, and
which spec fields an update may change.
"""

from __future__ import annotations

import json
import re
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


def env_var_name_errors(name: str) -> list[str]:
    """validation.IsEnvVarName: the rule of the version discovery reports (1.31, where
    RelaxedEnvironmentVariableValidation is alpha and off; it is on by default from 1.32)."""
    errors = []
    if not ENV_VAR_NAME.fullmatch(name):
        errors.append(names.regex_error("a valid environment variable name must consist of alphabetic characters, "
                                        "digits, '_', '-', or '.', and must not start with a digit",
                                        ENV_VAR_NAME.pattern, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    if name in (".", ".."):
        errors.append(f"must not be '{name}'")
    elif name.startswith(".."):
        errors.append("must not start with '..'")
    return errors


ENV_VAR_NAME = re.compile("[-._a-zA-Z][-._a-zA-Z0-9]*")


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
        else:
            errs += [e.invalid(f"{path}.env[{j}].name", env_name, m) for m in env_var_name_errors(env_name)]
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
    """In ValidatePodSpec's order: affinity, schedulingGates, topologySpreadConstraints,
    nodeName, tolerations; then ValidatePodCreate's rule on nodeName and gates."""
    errs: list[e.FieldError] = []
    affinity = spec.get("affinity") or {}
    if affinity.get("nodeAffinity") is not None:
        errs += _validate_node_affinity(affinity["nodeAffinity"], "spec.affinity.nodeAffinity")
    for kind in ("podAffinity", "podAntiAffinity"):
        if affinity.get(kind) is not None:
            errs += _validate_pod_affinity(affinity[kind], f"spec.affinity.{kind}")
    gates = spec.get("schedulingGates") or []
    seen: set[str] = set()
    for i, gate in enumerate(gates):
        gate_name = gate.get("name", "")
        errs += [e.invalid(f"spec.schedulingGates[{i}].name", gate_name, m) for m in names.is_qualified_name(gate_name)]
        if gate_name in seen:
            errs.append(e.duplicate(f"spec.schedulingGates[{i}].name", gate_name))
        seen.add(gate_name)
    errs += _validate_spread(spec.get("topologySpreadConstraints") or [], "spec.topologySpreadConstraints")
    node = spec.get("nodeName", "")
    if node:
        errs += [e.invalid("spec.nodeName", node, m) for m in names.is_dns1123_subdomain(node)]
    for i, toleration in enumerate(spec.get("tolerations") or []):
        errs += _validate_toleration(toleration, f"spec.tolerations[{i}]")
    if gates and node:
        errs.append(e.forbidden_field("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return errs


# --- placement: validateTopologySpreadConstraints, validateAffinity (pkg/apis/core/validation) --

NOT_POSITIVE = "must be greater than zero"
SCHEDULE_ACTIONS = ["DoNotSchedule", "ScheduleAnyway"]
NODE_INCLUSION_POLICIES = ["Honor", "Ignore"]
WEIGHT_RANGE = "must be in the range 1-100"


def _validate_spread(constraints: list[JsonObject], path: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    for i, c in enumerate(constraints):
        at = f"{path}[{i}]"
        skew = c.get("maxSkew", 0)
        if not isinstance(skew, int) or skew <= 0:
            errs.append(e.invalid(f"{at}.maxSkew", skew, NOT_POSITIVE))
        key, action = c.get("topologyKey", ""), c.get("whenUnsatisfiable", "")
        if not key:
            errs.append(e.required(f"{at}.topologyKey", "can not be empty"))
        if action not in SCHEDULE_ACTIONS:
            errs.append(e.not_supported(f"{at}.whenUnsatisfiable", action, SCHEDULE_ACTIONS))
        if any((o.get("topologyKey", ""), o.get("whenUnsatisfiable", "")) == (key, action) for o in constraints[i + 1:]):
            errs.append(e.duplicate(f"{at}.{{topologyKey, whenUnsatisfiable}}", f"{{{key}, {action}}}"))
        domains = c.get("minDomains")
        if domains is not None:
            if domains <= 0:
                errs.append(e.invalid(f"{at}.minDomains", domains, NOT_POSITIVE))
            if action != "DoNotSchedule":
                errs.append(e.invalid(f"{at}.minDomains", domains,
                                      f"can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"))
        for field in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            if c.get(field) is not None and c[field] not in NODE_INCLUSION_POLICIES:
                errs.append(e.not_supported(f"{at}.{field}", c[field], NODE_INCLUSION_POLICIES))
        errs += _validate_match_label_keys(c.get("matchLabelKeys") or [], c.get("labelSelector"), f"{at}.matchLabelKeys")
        errs += validate_label_selector(c.get("labelSelector"), f"{at}.labelSelector")
    return errs


def _validate_match_label_keys(keys: list[str], selector: JsonObject | None, path: str) -> list[e.FieldError]:
    if not keys:
        return []
    errs: list[e.FieldError] = []
    if selector is None:
        errs.append(e.forbidden_field(path, "must not be specified when labelSelector is not set"))
    taken = set((selector or {}).get("matchLabels") or {}) | {r.get("key") for r in (selector or {}).get("matchExpressions") or []}
    for i, key in enumerate(keys):
        errs += [e.invalid(f"{path}[{i}]", key, m) for m in names.is_qualified_name(key)]
        if key in taken:
            errs.append(e.invalid(f"{path}[{i}]", key, "exists in both matchLabelKeys and labelSelector"))
    return errs


def _validate_affinity_label_keys(term: JsonObject, path: str) -> list[e.FieldError]:
    """validateMatchLabelKeysAndMismatchLabelKeys (1.31): it sees the selector after the create
    strategy merged the keys in (pod_defaults.merge_affinity_label_keys), so a key the selector
    already names is caught by the expression the merge appended, reported at the term's path
    plus the key's index in matchLabelKeys."""
    selector = term.get("labelSelector")
    match, mismatch = term.get("matchLabelKeys") or [], term.get("mismatchLabelKeys") or []
    errs: list[e.FieldError] = []
    for field, keys in (("matchLabelKeys", match), ("mismatchLabelKeys", mismatch)):
        if keys and selector is None:
            errs.append(e.forbidden_field(f"{path}.{field}", "must not be specified when labelSelector is not set"))
        elif keys:
            for i, key in enumerate(keys):
                errs += [e.invalid(f"{path}.{field}[{i}]", key, m) for m in names.is_qualified_name(key)]
    if selector is not None:
        index = {key: i for i, key in enumerate(match)}  # the last of a repeated key, as Go's map
        seen = set(selector.get("matchLabels") or {})
        for req in selector.get("matchExpressions") or []:
            key = req.get("key", "")
            if key in index and key in seen:
                errs.append(e.invalid(f"{path}[{index[key]}]", key, "exists in both matchLabelKeys and labelSelector"))
            seen.add(key)
    for i, key in enumerate(match):
        if key in mismatch:
            errs.append(e.invalid(f"{path}.matchLabelKeys[{i}]", key, "exists in both matchLabelKeys and mismatchLabelKeys"))
    return errs


def validate_label_selector(selector: JsonObject | None, path: str) -> list[e.FieldError]:
    """metav1 ValidateLabelSelector, label values checked (AllowInvalidLabelValueInSelector off)."""
    if selector is None:
        return []
    errs = validate_labels(selector.get("matchLabels") or {}, f"{path}.matchLabels")
    for i, req in enumerate(selector.get("matchExpressions") or []):
        at = f"{path}.matchExpressions[{i}]"
        errs += _operator_and_values(req, at, {"In": 1, "NotIn": 1, "Exists": 0, "DoesNotExist": 0})
        errs += [e.invalid(f"{at}.key", req.get("key", ""), m) for m in names.is_qualified_name(req.get("key", ""))]
        for j, value in enumerate(req.get("values") or []):
            errs += [e.invalid(f"{at}.values[{j}]", value, m) for m in names.is_label_value(value)]
    return errs


def _operator_and_values(req: JsonObject, at: str, wants: dict[str, int]) -> list[e.FieldError]:
    """``wants``: per operator, 1 for some values, 0 for none, -1 for exactly one (Gt, Lt)."""
    operator, values = req.get("operator", ""), req.get("values") or []
    want = wants.get(operator)
    if want is None:
        return [e.invalid(f"{at}.operator", operator, "not a valid selector operator")]
    if want == 1 and not values:
        return [e.required(f"{at}.values", "must be specified when `operator` is 'In' or 'NotIn'")]
    if want == 0 and values:
        return [e.forbidden_field(f"{at}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]
    if want == -1 and len(values) != 1:
        return [e.required(f"{at}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")]
    return []


NODE_OPERATORS = {"In": 1, "NotIn": 1, "Exists": 0, "DoesNotExist": 0, "Gt": -1, "Lt": -1}


def _validate_node_term(term: JsonObject, path: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    for j, req in enumerate(term.get("matchExpressions") or []):
        at = f"{path}.matchExpressions[{j}]"
        errs += _operator_and_values(req, at, NODE_OPERATORS)
        errs += [e.invalid(f"{at}.key", req.get("key", ""), m) for m in names.is_qualified_name(req.get("key", ""))]
    for j, req in enumerate(term.get("matchFields") or []):
        at = f"{path}.matchFields[{j}]"
        operator, values = req.get("operator", ""), req.get("values") or []
        if operator not in ("In", "NotIn"):
            errs.append(e.invalid(f"{at}.operator", operator, "not a valid selector operator"))
        elif len(values) != 1:
            errs.append(e.required(f"{at}.values",
                                   "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
        if req.get("key", "") != "metadata.name":
            errs.append(e.invalid(f"{at}.key", req.get("key", ""), "not a valid field selector key"))
        else:
            for k, value in enumerate(values):
                errs += [e.invalid(f"{at}.values[{k}]", value, m) for m in names.is_dns1123_subdomain(value)]
    return errs


def _validate_node_affinity(affinity: JsonObject, path: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        terms_path = f"{path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        terms = required.get("nodeSelectorTerms") or []
        if not terms:
            errs.append(e.required(terms_path, "must have at least one node selector term"))
        for i, term in enumerate(terms):
            errs += _validate_node_term(term, f"{terms_path}[{i}]")
    return errs + _validate_weighted(affinity, path, "preference", _validate_node_term)


def _validate_pod_affinity(affinity: JsonObject, path: str) -> list[e.FieldError]:
    errs: list[e.FieldError] = []
    for i, term in enumerate(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
        errs += _validate_pod_term(term, f"{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
    return errs + _validate_weighted(affinity, path, "podAffinityTerm", _validate_pod_term)


def _validate_weighted(affinity: JsonObject, path: str, inner: str, validate: Any) -> list[e.FieldError]:
    """ValidatePreferredSchedulingTerms, validateWeightedPodAffinityTerms."""
    errs: list[e.FieldError] = []
    for i, term in enumerate(affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        at = f"{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        if not 1 <= term.get("weight", 0) <= 100:
            errs.append(e.invalid(f"{at}.weight", term.get("weight", 0), WEIGHT_RANGE))
        errs += validate(term.get(inner) or {}, f"{at}.{inner}")
    return errs


def _validate_pod_term(term: JsonObject, path: str) -> list[e.FieldError]:
    errs = validate_label_selector(term.get("labelSelector"), f"{path}.labelSelector")
    errs += validate_label_selector(term.get("namespaceSelector"), f"{path}.namespaceSelector")
    for namespace in term.get("namespaces") or []:
        errs += [e.invalid(f"{path}.namespace", namespace, m) for m in names.is_dns1123_label(namespace)]
    errs += _validate_affinity_label_keys(term, path)
    key = term.get("topologyKey", "")
    if not key:
        errs.append(e.required(f"{path}.topologyKey", "can not be empty"))
    return errs + [e.invalid(f"{path}.topologyKey", key, m) for m in names.is_qualified_name(key)]


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
