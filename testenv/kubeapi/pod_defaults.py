"""Pod defaults the server fills in, so a stored pod looks like a real cluster's.

`apply_scheme_defaults` mirrors pkg/apis/core/v1/defaults.go and runs on
every pod body (create and update). `apply_admission_defaults` mirrors the
admission plugins that mutate pods on create only (ServiceAccount,
Priority, DefaultTolerationSeconds).
"""

from __future__ import annotations

from . import quantity
from .decoding import cannot_handle
from .jsonobj import JsonObject

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def all_containers(spec: JsonObject) -> list[JsonObject]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def apply_scheme_defaults(pod: JsonObject) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for container in all_containers(spec):
        _default_container(container)
    for container in spec.get("ephemeralContainers") or []:
        _default_container(container)
    for volume in spec.get("volumes") or []:
        _default_volume(volume)


def _default_container(container: JsonObject) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", image_pull_policy(container.get("image", "")))
    resources = container.setdefault("resources", {})
    limits = resources.get("limits")
    if limits:
        # A limit without a request means "request exactly the limit".
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe is not None:
            _default_probe(probe)


def _default_probe(probe: JsonObject) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "secret",
    "configMap",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "nfs",
    "csi",
    "ephemeral",
    "image",
    "iscsi",
    "glusterfs",
    "rbd",
    "cephfs",
    "fc",
    "flexVolume",
    "azureFile",
    "azureDisk",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "gitRepo",
    "cinder",
    "flocker",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)


def _default_volume(volume: JsonObject) -> None:
    if not any(source in volume for source in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "projected", "downwardAPI"):
        if source in volume:
            volume[source].setdefault("defaultMode", 420)
    if "hostPath" in volume:
        volume["hostPath"].setdefault("type", "")


def image_pull_policy(image: str) -> str:
    """Always for ':latest' or an untagged image, IfNotPresent otherwise (digests count as tags)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def canonicalize_resources(pod: JsonObject, version: str = "v1") -> None:
    """Rewrite container quantities as the server stores them; raises ApiError 400 for bad text."""
    spec = pod.get("spec") or {}
    for container in [*all_containers(spec), *(spec.get("ephemeralContainers") or [])]:
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            if resources.get(kind):
                resources[kind] = _canonical_list(resources[kind], version)
    if spec.get("overhead"):
        spec["overhead"] = _canonical_list(spec["overhead"], version)


def _canonical_list(resources: JsonObject, version: str) -> JsonObject:
    try:
        return {name: quantity.canonical_text(value) for name, value in resources.items()}
    except quantity.QuantityError as err:
        raise cannot_handle("Pod", version, str(err)) from err


def apply_admission_defaults(pod: JsonObject) -> None:
    """What ServiceAccount, Priority and DefaultTolerationSeconds admission add on create."""
    spec = pod["spec"]
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for taint in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if not any(_tolerates_no_execute(t, taint) for t in tolerations):
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                }
            )


def _tolerates_no_execute(toleration: JsonObject, taint: str) -> bool:
    # The plugin's own test, looser than the scheduler's: an empty key counts whatever the operator.
    return toleration.get("key", "") in ("", taint) and toleration.get("effect", "") in ("", "NoExecute")


def merge_affinity_label_keys(pod: JsonObject) -> None:
    """The create strategy's mutatePodAffinity (MatchLabelKeysInPodAffinity, beta and on in
    1.31): each pod affinity term's matchLabelKeys / mismatchLabelKeys become `key In` / `key
    NotIn` [the pod's own value] appended to its labelSelector, for the keys the pod's labels
    have; a term without a selector matches nothing and is left alone. The keys stay, and
    validation then sees the merged selector; an update merges nothing."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind) or {}
        terms = [(w.get("podAffinityTerm") or {}) for w in rules.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        for term in [*terms, *(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or [])]:
            selector = term.get("labelSelector")
            if selector is None or not (term.get("matchLabelKeys") or term.get("mismatchLabelKeys")):
                continue
            merged = [{"key": key, "operator": operator, "values": [labels[key]]}
                      for field, operator in (("matchLabelKeys", "In"), ("mismatchLabelKeys", "NotIn"))
                      for key in term.get(field) or [] if key in labels]
            if merged:
                selector["matchExpressions"] = [*(selector.get("matchExpressions") or []), *merged]
