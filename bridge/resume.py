"""ResumeProgram's flow: Slurm nodes in, one slurmd pod per node out.

Nodes are planned (Slurm facts → nodeset → rendered pod), their pods created at once, and
every node that cannot get a pod is set DOWN with the cause as its Reason, so Slurm requeues
the job at once instead of waiting ResumeTimeout. A repeated resume creates nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bridge import naming
from bridge.config import Config
from bridge.errors import BridgeError, KubernetesError
from bridge.kube import KubeClient
from bridge.render import PodPlan, render_pod
from bridge.resumefile import ResumeRequest
from bridge.slurm import SlurmClient

# How long to wait for the previous incarnation of a node's pod to finish terminating
# (a node resumed again right after a suspend) before calling the node failed.
TERMINATING_WAIT = 30.0


@dataclass
class Outcome:
    """What a resume did, node by node."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    """Nodes whose pod the bridge had already created (a repeated resume)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Node → cause, as set in the node's Reason."""
    errors: list[BridgeError] = field(default_factory=list)

    def exit_code(self) -> int | None:
        """When every node failed for one kind of reason (e.g. the API is unreachable), that
        kind's exit code; None when some nodes went ahead or the causes differ."""
        if self.created or self.existing:
            return None
        codes = {e.exit_code for e in self.errors}
        return codes.pop() if len(codes) == 1 and len(self.errors) == len(self.failed) else None


def resume(nodes: list[str], *, config: Config, slurm: SlurmClient, kube: KubeClient,
           request: ResumeRequest | None = None, log: Any) -> Outcome:
    """Create the pods of ``nodes``; mark in Slurm the nodes that cannot have one."""
    outcome = Outcome()
    plans = _plan(nodes, config=config, slurm=slurm, request=request, outcome=outcome)
    errors = kube.create_pods([p.manifest for p in plans]) if plans else {}
    conflicts = [p for p in plans if _already_exists(errors[p.name])]
    for plan in plans:
        error = errors[plan.name]
        if error is None:
            outcome.created.append(plan.node)
        elif not _already_exists(error):
            outcome.failed[plan.node] = f"pod {plan.name}: {error}"
            outcome.errors.append(error)
    if conflicts:
        _settle_conflicts(conflicts, config=config, kube=kube, outcome=outcome)
    if outcome.failed:
        _fail(outcome.failed, config=config, slurm=slurm, kube=kube, log=log)
    log.info("resume done", created=len(outcome.created), existing=len(outcome.existing),
             failed=len(outcome.failed))
    return outcome


def _plan(nodes: list[str], *, config: Config, slurm: SlurmClient, request: ResumeRequest | None,
          outcome: Outcome) -> list[PodPlan]:
    facts = slurm.node_facts(nodes)
    plans = []
    for node in nodes:
        if node not in facts:
            outcome.failed[node] = "Slurm does not know this node"
            continue
        job = request.job_of(node) if request else None
        try:
            plans.append(render_pod(config, facts[node], job_id=job.job_id if job else None))
        except BridgeError as e:
            outcome.failed[node] = f"{e.kind}: {e}"
            outcome.errors.append(e)
    return plans


def _already_exists(error: KubernetesError | None) -> bool:
    return error is not None and error.code == 409


def _settle_conflicts(conflicts: list[PodPlan], *, config: Config, kube: KubeClient, outcome: Outcome) -> None:
    """A pod of that name exists. Ours and alive: nothing to do. Ours and on its way out
    (a suspend just deleted it, or it ended): wait for it to go, then create it again.
    Not ours: never touched; the node fails."""
    deadline = time.monotonic() + TERMINATING_WAIT
    pending = conflicts
    while True:
        retry = [plan for plan in pending if _needs_retry(plan, config=config, kube=kube, outcome=outcome)]
        if not retry:
            return
        if time.monotonic() > deadline:
            for plan in retry:
                outcome.failed[plan.node] = f"pod {plan.name} from an earlier resume is still terminating"
            return
        time.sleep(0.5)
        errors = kube.create_pods([p.manifest for p in retry])
        for plan in retry:
            if errors[plan.name] is None:
                outcome.created.append(plan.node)
            elif not _already_exists(errors[plan.name]):
                outcome.failed[plan.node] = f"pod {plan.name}: {errors[plan.name]}"
                outcome.errors.append(errors[plan.name])
        pending = [p for p in retry if _already_exists(errors[p.name])]


def _needs_retry(plan: PodPlan, *, config: Config, kube: KubeClient, outcome: Outcome) -> bool:
    """Sort one conflict; True when the old pod is going away and create must be tried again."""
    pod = kube.get_pod(plan.name)
    if pod is None:
        return True  # gone since the conflict
    if not naming.is_ours(pod, cluster=config.slurm.cluster_name, node=plan.node):
        outcome.failed[plan.node] = f"pod {plan.name} exists and was not created by the bridge for this node"
        return False
    terminating = pod["metadata"].get("deletionTimestamp") is not None
    finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    if not terminating and not finished:
        outcome.existing.append(plan.node)
        return False
    if finished and not terminating:
        kube.delete_pods([plan.name])
    return True


def _fail(failed: dict[str, str], *, config: Config, slurm: SlurmClient, kube: KubeClient, log: Any) -> None:
    """Set failed nodes DOWN (Slurm requeues their jobs) and remove any pod they may have
    got anyway (a create that timed out may still have happened)."""
    by_reason: dict[str, list[str]] = {}
    for node, cause in failed.items():
        by_reason.setdefault(cause, []).append(node)
    for cause, nodes in by_reason.items():
        log.error("node failed", nodes=nodes, cause=cause)
        slurm.set_down(nodes, cause)
    _remove_pods_of(set(failed), config=config, kube=kube, log=log)


def _remove_pods_of(nodes: set[str], *, config: Config, kube: KubeClient, log: Any) -> None:
    try:
        pods = kube.list_pods(naming.owner_labels(config.slurm.cluster_name))
    except KubernetesError as e:
        log.warning("cannot check for pods of failed nodes", error=str(e))
        return
    names = [p["metadata"]["name"] for p in pods if naming.node_of(p) in nodes
             and naming.is_ours(p, cluster=config.slurm.cluster_name)]
    if names:
        log.info("deleting pods of failed nodes", pods=names)
        kube.delete_pods(names)
