"""SuspendProgram's and ResumeFailProgram's flow: delete the pods of nodes Slurm is done with.

Only pods the bridge created for these very nodes are deleted (labels and the exact node-name
annotation must match): a pod someone else made in the namespace is never touched.
Pods get their own grace period, so slurmd leaves cleanly. Pods are listed by their metadata
alone, a page at a time: a suspend of 5,000 nodes need not hold 5,000 whole pods.

A slow SuspendProgram (the API throttled, deletes retried) may outlive SuspendTimeout: Slurm
then counts the node off, and a new job may resume it before this call's deletes go out. The
pod is then the new job's (same name, made by that resume), so just before deleting, Slurm is
asked again and a node it powers up again keeps its pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge import naming, nodestate, owed
from bridge.config import Config
from bridge.errors import KubernetesError, SlurmError
from bridge.kube import KubeClient
from bridge.slurm import SlurmClient


# How long a suspend keeps retrying deletes that fail for a passing reason (5xx, 429, the API
# away), beyond each call's own retries: Slurm counts the node powered down whatever happens,
# so a pod not deleted now runs on, unseen, until a later hook call pays the delete.
DELETE_BUDGET = 60.0
RETRY_PAUSE = 1.0


@dataclass
class Outcome:
    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    """Nodes that had no pod of ours (already gone: nothing to do)."""
    failed: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    """Nodes Slurm powered up again since it called suspend: their pod is a new job's."""


def suspend(nodes: list[str], *, config: Config, kube: KubeClient, log: Any, slurm: SlurmClient | None = None,
            strict: bool = False, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Delete the pods of ``nodes``, and any pod an earlier suspend still owes (:mod:`bridge.owed`).
    The deletes go out first; what still fails after DELETE_BUDGET is logged, put on the pod as
    an Event and stays owed to the next hook call. With ``slurm``, a node Slurm has up or powers
    up again by then keeps its pod; without (``suspend --force``), every pod goes.

    Raises:
        SlurmError: ``strict`` (an admin's command) and Slurm cannot say which nodes it has up:
            nothing is deleted. SuspendProgram is not strict: Slurm counts its nodes off already."""
    outcome = Outcome()
    state_dir = config.resume.state_dir
    cluster = config.slurm.cluster_name
    try:
        listed = naming.pods_of(kube, cluster=cluster, nodes=set(nodes) | set(owed.owed(state_dir)),
                                metadata_only=True)
    except KubernetesError:  # unreachable, or the kubeconfig's credentials failed (CredentialsError)
        if not strict:
            owe(nodes, config=config, log=log)
        raise
    outcome.kept = _resumed_again(sorted(n for n in listed if n in set(nodes)), slurm=slurm, log=log, strict=strict)
    pods = {node: pod for node, pod in listed.items() if node in set(nodes) - set(outcome.kept)}
    owed.owe(state_dir, {node: _ref(pod) for node, pod in pods.items()}, log=log)  # before the deletes go out
    leftovers = _leftovers(list(listed.values()), set(nodes), config=config)
    targets = {**leftovers, **pods}
    errors = _delete(sorted(p["metadata"]["name"] for p in targets.values()), kube=kube, clock=clock, sleep=sleep)
    _delete_finished_groups(list(targets.values()), {p["metadata"]["name"] for p in targets.values()} - set(errors),
                            config=config, kube=kube)
    owed.paid(state_dir, [n for n, p in targets.items() if p["metadata"]["name"] not in errors])
    for node in (n for n in nodes if n not in outcome.kept):
        name = pods[node]["metadata"]["name"] if node in pods else None
        if name is None:
            outcome.absent.append(node)
        elif name not in errors:
            outcome.deleted.append(node)
        else:
            outcome.failed[node] = f"pod {name}: {errors[name]}"
    for node, pod in targets.items():
        if (error := errors.get(pod["metadata"]["name"])) is not None:
            _report_left(node, pod, error, kube=kube, log=log)
    if leftovers:
        log.info("owed pod deletes paid", nodes=sorted(n for n in leftovers if n not in outcome.failed))
    log.info("suspend done", deleted=len(outcome.deleted), absent=len(outcome.absent),
             failed=len(outcome.failed), kept=len(outcome.kept))
    return outcome


def owe(nodes: list[str], *, config: Config, log: Any) -> None:
    """Slurm counts ``nodes`` off whatever happens here: whatever pod they have now is owed to
    the next hook call that reaches Kubernetes (or the daemon's orphan rule)."""
    now = owed.before(time.time())
    owed.owe(config.resume.state_dir, {n: (naming.pod_name(config.slurm.cluster_name, n), now) for n in nodes},
             log=log)


def _resumed_again(nodes: list[str], *, slurm: SlurmClient | None, log: Any, strict: bool = False) -> list[str]:
    """Those of ``nodes`` (with a pod) that Slurm powers up again or counts up: asked as late as
    possible, right before the deletes (a resume cannot slip in between: it would first have to
    delete the listed pod and wait out its grace period). Slurm not answering: the deletes go out as asked (a
    wrongly deleted pod's job is requeued at ResumeTimeout; a pod left would run unseen)."""
    if slurm is None or not nodes:
        return []
    try:
        facts = slurm.node_facts(nodes)
    except SlurmError as e:
        if strict:
            raise SlurmError(f"cannot ask Slurm which of the nodes it has up, so nothing was deleted "
                             f"(--force deletes anyway): {e}") from None
        log.warning("cannot ask Slurm whether the nodes were resumed again: deleting as asked", error=str(e))
        return []
    # POWERING_DOWN wins over POWERING_UP: a resume given up (POWER_DOWN_FORCE) is this very suspend.
    again = sorted(node for node, fact in facts.items()
                   if nodestate.needs_pod(fact.state) and not nodestate.is_off(fact.state))
    if again:
        log.warning("nodes resumed again since the suspend call: their pods are kept", nodes=again,
                    states={node: "+".join(facts[node].state) for node in again})
    return again


def _ref(pod: dict[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["name"], pod["metadata"].get("uid", "")


def _leftovers(ours: list[dict[str, Any]], nodes: set[str], *, config: Config) -> dict[str, dict[str, Any]]:
    """Pods earlier suspends owe, of other nodes than ``nodes``: that very pod (uid), still there."""
    owing = owed.owed(config.resume.state_dir)
    others = {n for n in owing if n not in nodes}
    if not others:
        return {}
    found = naming.pods_by_node(ours, cluster=config.slurm.cluster_name, nodes=others)
    left = {node: pod for node, pod in found.items() if owed.matches(owing[node], pod)}
    owed.paid(config.resume.state_dir, sorted(others - set(left)))  # that pod is gone already
    return left


def _delete(names: list[str], *, kube: KubeClient, clock: Callable[[], float],
            sleep: Callable[[float], None]) -> dict[str, KubernetesError]:
    """Delete ``names``; the errors left once DELETE_BUDGET is spent (lasting ones at once)."""
    deadline = clock() + DELETE_BUDGET
    errors: dict[str, KubernetesError] = {}
    pending = names
    while pending:
        result = kube.delete_pods(pending)
        errors = {**{n: e for n, e in errors.items() if n not in result},
                  **{n: e for n, e in result.items() if e is not None}}
        pending = [n for n, e in result.items() if e is not None and e.transient]
        if not pending or clock() + RETRY_PAUSE > deadline:
            break
        sleep(RETRY_PAUSE)
    return errors


def _report_left(node: str, pod: dict[str, Any], error: KubernetesError, *, kube: KubeClient, log: Any) -> None:
    cause = f"pod {pod['metadata']['name']}: {error}"
    log.error("pod not deleted", node=node, cause=cause, owed=True)
    kube.emit_event(pod, reason="SlurmSuspendFailed",
                    message=f"Slurm node {node} is powered down but its pod could not be deleted: {error}; "
                            "the next suspend or resume-fail, or the node's next resume, deletes it")


def resume_failed(nodes: list[str], *, config: Config, slurm: SlurmClient, kube: KubeClient, log: Any) -> Outcome:
    """Slurm gave up on ``nodes`` (ResumeTimeout): record why their pods did not come up,
    then delete them. Slurm does not call SuspendProgram for these nodes, so this is the
    only cleanup they get. Where the bridge had already set a node DOWN with a cause, that
    cause replaces Slurm's "ResumeTimeout reached"."""
    from bridge.failure import Failure, with_last_words

    try:
        try:
            pods = naming.pods_of(kube, cluster=config.slurm.cluster_name, nodes=nodes)
        except KubernetesError:
            pods = {}  # the suspend below lists them again, and owes their deletes if it cannot
        for node, pod in pods.items():
            cause = with_last_words(Failure(pod_problem(pod), True, container=main_container(pod)), pod,
                                    kube=kube).cause
            log.error("node did not come up", node=node, pod=pod["metadata"]["name"], cause=cause)
            kube.emit_event(pod, reason="ResumeTimeout",
                            message=f"Slurm node {node} did not register in time: {cause}")
        return suspend(nodes, config=config, kube=kube, log=log)  # cleanup first: nothing else will
    finally:  # the bridge's cause, even when Kubernetes cannot be reached
        restore_causes(nodes, config=config, slurm=slurm, log=log)


def restore_causes(nodes: list[str], *, config: Config, slurm: SlurmClient, log: Any) -> None:
    """Where the bridge had set a node DOWN with a cause, that cause replaces Slurm's
    "ResumeTimeout reached"."""
    from bridge import causes

    for node in nodes:
        cause = causes.recall(config.resume.state_dir, node)
        try:
            if cause:
                slurm.set_down([node], cause)
        except SlurmError as e:
            log.warning("cannot restore the node's reason", node=node, error=str(e))


def _ours(*, config: Config, kube: KubeClient) -> list[dict[str, Any]]:
    cluster = config.slurm.cluster_name
    return [p for p in kube.list_pod_metadata(naming.owner_labels(cluster)) if naming.is_ours(p, cluster=cluster)]


def _delete_finished_groups(targets: list[dict[str, Any]], deleted: set[str], *, config: Config,
                            kube: KubeClient) -> None:
    """A gang's pod group goes with the last of its pods. Only then are all the bridge's pods
    listed: a gang's other pods may be on nodes this call does not name."""
    going = {ref for p in targets if p["metadata"]["name"] in deleted and (ref := naming.group_of(p))}
    if not going:
        return
    staying = {naming.group_of(p) for p in _ours(config=config, kube=kube) if p["metadata"]["name"] not in deleted}
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
