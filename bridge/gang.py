"""Gang scheduling: one job's pods are placed all together or not at all.

Without it two jobs can each hold part of what both need (job A holds 3 of 4 GPUs, job B the
fourth) and wait forever. Per job and nodeset with a ``gang`` setting, the bridge makes one
group of that job's pods in the scheduler's own terms, created before the pods and deleted
with them:

* Volcano: PodGroup ``scheduling.volcano.sh/v1beta1`` (``minMember``, ``queue``), pod
  annotation ``scheduling.k8s.io/group-name``, ``schedulerName: volcano``;
* scheduler-plugins coscheduling: PodGroup ``scheduling.x-k8s.io/v1alpha1`` (``minMember``),
  pod label ``scheduling.x-k8s.io/pod-group``;
* Kueue plain pods: labels ``kueue.x-k8s.io/queue-name`` and ``kueue.x-k8s.io/pod-group-name``,
  annotation ``kueue.x-k8s.io/pod-group-total-count``; Kueue needs no object of ours.

Every pod of a group names it in the annotation :data:`GROUP_ANNOTATION` (``<apiVersion>/<kind>/<name>``)
so suspend and failure handling can delete the group with its last pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge import naming
from bridge.config import Config, Gang
from bridge.resumefile import ResumeRequest

GROUP_ANNOTATION = naming.GROUP_ANNOTATION
POD_GROUP_KINDS = {
    "volcano": ("scheduling.volcano.sh/v1beta1", "PodGroup", "podgroups"),
    "coscheduling": ("scheduling.x-k8s.io/v1alpha1", "PodGroup", "podgroups"),
}
DEFAULT_SCHEDULERS = {"volcano": "volcano", "coscheduling": "scheduler-plugins-scheduler"}
PROVIDERS = {"volcano": "Volcano", "coscheduling": "scheduler-plugins (coscheduling)"}


def not_served(api_version: str) -> str:
    """The cause when the API server does not serve a PodGroup's group/version."""
    kind = next((k for k, (v, _, _) in POD_GROUP_KINDS.items() if v == api_version), None)
    provider = PROVIDERS.get(kind or "")
    return f"{api_version} is not served: is {provider} installed?" if provider else f"{api_version} is not served"


@dataclass(frozen=True)
class Group:
    name: str
    nodes: tuple[str, ...]
    objects: tuple[dict[str, Any], ...]
    """The PodGroup to create before the pods (none for Kueue)."""
    gang: Gang | None = None

    def mark(self, pod: dict[str, Any]) -> None:
        """Make ``pod`` (a member's manifest) a member of this group."""
        assert self.gang is not None
        _mark(pod, self.gang, self.name, len(self.nodes))


def plan(members: list[tuple[str, str]], request: ResumeRequest | None, config: Config) -> list[Group]:
    """The groups of ``members`` ((node, nodeset) pairs), one per job × nodeset with ``gang``,
    known before any pod is rendered: resume renders and creates pods in chunks, and a
    group's size (``minMember``) is that of the whole job."""
    gangs: dict[tuple[int, str], list[str]] = {}
    for node, nodeset_name in members:
        job = request.job_of(node) if request else None  # a manual power-up has no job, no gang
        if job is not None and _gang_of(config, nodeset_name) is not None:
            gangs.setdefault((job.job_id, nodeset_name), []).append(node)
    groups = []
    for (job_id, nodeset_name), nodes in gangs.items():
        gang = _gang_of(config, nodeset_name)
        assert gang is not None
        name = naming.dns_label(f"{config.slurm.cluster_name}-job-{job_id}-{nodeset_name}")
        objects = (_pod_group(gang, name, len(nodes), job_id, config),) if gang.kind in POD_GROUP_KINDS else ()
        groups.append(Group(name=name, nodes=tuple(nodes), objects=objects, gang=gang))
    return groups


def _gang_of(config: Config, nodeset_name: str) -> Gang | None:
    return next(n.gang for n in config.nodesets if n.name == nodeset_name)


def _mark(pod: dict[str, Any], gang: Gang, name: str, size: int) -> None:
    meta = pod["metadata"]
    labels, annotations = meta.setdefault("labels", {}), meta.setdefault("annotations", {})
    scheduler = gang.scheduler_name or DEFAULT_SCHEDULERS.get(gang.kind)
    if scheduler:
        pod["spec"]["schedulerName"] = scheduler
    if gang.kind == "volcano":
        annotations["scheduling.k8s.io/group-name"] = name
    elif gang.kind == "coscheduling":
        labels["scheduling.x-k8s.io/pod-group"] = name
    else:
        labels["kueue.x-k8s.io/queue-name"] = gang.queue
        labels["kueue.x-k8s.io/pod-group-name"] = name
        annotations["kueue.x-k8s.io/pod-group-total-count"] = str(size)
    if gang.kind in POD_GROUP_KINDS:
        api_version, kind, _ = POD_GROUP_KINDS[gang.kind]
        annotations[GROUP_ANNOTATION] = f"{api_version}/{kind}/{name}"


def _pod_group(gang: Gang, name: str, size: int, job_id: int, config: Config) -> dict[str, Any]:
    api_version, kind, _ = POD_GROUP_KINDS[gang.kind]
    spec: dict[str, Any] = {"minMember": size}
    if gang.kind == "volcano" and gang.queue:
        spec["queue"] = gang.queue
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": config.kubernetes.namespace,
                     "labels": {**naming.owner_labels(config.slurm.cluster_name), naming.JOB_LABEL: str(job_id)}},
        "spec": spec,
    }
