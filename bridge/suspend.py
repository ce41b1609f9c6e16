"""SuspendProgram's and ResumeFailProgram's flow: delete the pods of nodes Slurm is done with.

Only pods the bridge created for these very nodes are deleted (labels and the exact node-name
annotation must match): a pod someone else made in the namespace is never touched.
Pods get their own grace period, so slurmd leaves cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge import naming
from bridge.config import Config
from bridge.kube import KubeClient
from bridge.slurm import SlurmClient


@dataclass
class Outcome:
    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    """Nodes that had no pod of ours (already gone: nothing to do)."""
    failed: dict[str, str] = field(default_factory=dict)


def suspend(nodes: list[str], *, config: Config, kube: KubeClient, log: Any) -> Outcome:
    """Delete the pods of ``nodes``."""
    outcome = Outcome()
    ours = _ours(config=config, kube=kube)
    pods = {node: pod["metadata"]["name"]
            for node, pod in naming.pods_by_node(ours, cluster=config.slurm.cluster_name, nodes=set(nodes)).items()}
    errors = kube.delete_pods(list(pods.values())) if pods else {}
    _delete_finished_groups(ours, set(pods.values()), kube=kube)
    for node in nodes:
        name = pods.get(node)
        if name is None:
            outcome.absent.append(node)
        elif errors.get(name) is None:
            outcome.deleted.append(node)
        else:
            outcome.failed[node] = f"pod {name}: {errors[name]}"
    for node, cause in outcome.failed.items():
        log.error("pod not deleted", node=node, cause=cause)
    log.info("suspend done", deleted=len(outcome.deleted), absent=len(outcome.absent),
             failed=len(outcome.failed))
    return outcome


def resume_failed(nodes: list[str], *, config: Config, slurm: SlurmClient, kube: KubeClient, log: Any) -> Outcome:
    """Slurm gave up on ``nodes`` (ResumeTimeout): record why their pods did not come up,
    then delete them. Slurm does not call SuspendProgram for these nodes, so this is the
    only cleanup they get. Where the bridge had already set a node DOWN with a cause, that
    cause replaces Slurm's "ResumeTimeout reached"."""
    from bridge import causes
    from bridge.errors import SlurmError

    from bridge.failure import Failure, with_last_words

    pods = naming.pods_by_node(_ours(config=config, kube=kube), cluster=config.slurm.cluster_name, nodes=set(nodes))
    for node, pod in pods.items():
        cause = with_last_words(Failure(pod_problem(pod), True, container=main_container(pod)), pod, kube=kube).cause
        log.error("node did not come up", node=node, pod=pod["metadata"]["name"], cause=cause)
        kube.emit_event(pod, reason="ResumeTimeout", message=f"Slurm node {node} did not register in time: {cause}")
    outcome = suspend(nodes, config=config, kube=kube, log=log)  # cleanup first: nothing else will
    for node in nodes:
        cause = causes.recall(config.resume.state_dir, node)
        try:
            if cause:
                slurm.set_down([node], cause)
        except SlurmError as e:
            log.warning("cannot restore the node's reason", node=node, error=str(e))
    return outcome


def _ours(*, config: Config, kube: KubeClient) -> list[dict[str, Any]]:
    cluster = config.slurm.cluster_name
    return [p for p in kube.list_pods(naming.owner_labels(cluster)) if naming.is_ours(p, cluster=cluster)]


def _delete_finished_groups(ours: list[dict[str, Any]], deleted: set[str], *, kube: KubeClient) -> None:
    """A gang's pod group goes with the last of its pods."""
    going = {ref for p in ours if p["metadata"]["name"] in deleted and (ref := naming.group_of(p))}
    staying = {naming.group_of(p) for p in ours if p["metadata"]["name"] not in deleted}
    if going - staying:
        kube.delete_objects(sorted(going - staying))


def pod_problem(pod: dict[str, Any]) -> str:
    """Why a pod is not running, in words the pod's own status gives."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}".strip()
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{container.get('name')}: {waiting['reason']}: {waiting.get('message', '')}".strip()
        if terminated:
            return f"{container.get('name')}: {terminated.get('reason', 'terminated')} (exit {terminated.get('exitCode')})"
    return f"pod phase {status.get('phase', 'unknown')}"


def main_container(pod: dict[str, Any]) -> str | None:
    """The pod's first container: slurmd, in the bridge's templates."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0].get("name")
