"""What the bridge does when a job's pods cannot all come up: all or nothing, fast.

Every pod of the job is deleted (nothing half-started holds GPUs), the cause goes into the
node's Reason, a Kubernetes Event and the log, and Slurm requeues the job at once instead of
after ResumeTimeout. Then, by the kind of cause:

* passing (no capacity, API unavailable, throttled, timed out): the nodes are powered down
  (POWER_DOWN_FORCE) and return to service by themselves after SuspendTimeout; the job may
  start again after the configured cool-down;
* lasting (invalid template, forbidden, image missing, slurmd crashing): the failing nodes
  are set DOWN with a reason an admin can act on; the job's other nodes are released.

A job that has failed ``max_attempts`` times is held, with the cause in its AdminComment,
so it cannot loop between resume and failure.

Slurm facts this rests on (22.05, measured): DOWN on a powering-up node requeues its job at
once but the node keeps powering up until ResumeTimeout, when Slurm overwrites the Reason
with "ResumeTimeout reached" (hence :mod:`bridge.causes`); any state change made after
POWER_DOWN_FORCE is dropped until the node is powered down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge import causes, naming
from bridge.config import Config
from bridge.errors import BridgeError, KubernetesError
from bridge.kube import KubeClient
from bridge.slurm import SlurmClient


@dataclass(frozen=True)
class Failure:
    cause: str
    transient: bool


def classify(error: BridgeError) -> Failure:
    """A failure from an exception: only Kubernetes can fail for a passing reason."""
    transient = isinstance(error, KubernetesError) and error.transient
    return Failure(cause=f"{error.kind}: {error}" if not isinstance(error, KubernetesError) else str(error),
                   transient=transient)


def release_job(job_id: int | None, nodes: list[str], failed: dict[str, Failure], *, config: Config,
                slurm: SlurmClient, kube: KubeClient, log: Any, groups: set[naming.Ref] = frozenset()) -> None:
    """Undo a job's resume: ``nodes`` are all the nodes resumed for it, ``failed`` the ones
    that failed and why, ``groups`` pod groups made for it (more are found on its pods)."""
    log = log.bind(job=job_id)
    first = next(iter(failed.values()))
    pods = _pods_of(set(nodes), config=config, kube=kube)
    for node, failure in failed.items():
        log.error("resume failed", node=node, cause=failure.cause, transient=failure.transient)
        if node in pods:
            kube.emit_event(pods[node], reason="SlurmResumeFailed", message=f"Slurm node {node}: {failure.cause}")
    _update_slurm(job_id, nodes, failed, first, config=config, slurm=slurm, log=log)
    if pods:
        kube.delete_pods([p["metadata"]["name"] for p in pods.values()])
        log.info("pods of failed job deleted", pods=sorted(p["metadata"]["name"] for p in pods.values()))
    refs = set(groups) | {ref for p in pods.values() if (ref := naming.group_of(p))}
    if refs:
        kube.delete_objects(sorted(refs))


def _update_slurm(job_id: int | None, nodes: list[str], failed: dict[str, Failure], first: Failure, *,
                  config: Config, slurm: SlurmClient, log: Any) -> None:
    lasting = {n: f for n, f in failed.items() if not f.transient}
    for node, failure in lasting.items():
        slurm.set_down([node], failure.cause)
        causes.remember(config.resume.state_dir, node, failure.cause, log=log)
    released = [n for n in nodes if n not in lasting]
    if released:
        why = first.cause if job_id is None else f"job {job_id} could not start: {first.cause}"
        slurm.power_down(released, why)
    if job_id is not None:
        _requeue_or_hold(job_id, first, config=config, slurm=slurm, log=log)


def _requeue_or_hold(job_id: int, failure: Failure, *, config: Config, slurm: SlurmClient, log: Any) -> None:
    # slurmctld requeues a node's job inside the update call, so Restarts already counts it.
    restarts = slurm.job_restarts(job_id)
    if restarts is None:
        return
    if restarts >= config.resume.max_attempts:
        comment = f"held after {restarts} failed resumes: {failure.cause}"
        slurm.hold(job_id, comment)
        log.error("job held", attempts=restarts, cause=failure.cause)
    elif failure.transient:
        slurm.delay(job_id, config.resume.cooldown)
        log.warning("job requeued", attempts=restarts, cooldown=config.resume.cooldown)
    else:
        log.warning("job requeued", attempts=restarts)


def _pods_of(nodes: set[str], *, config: Config, kube: KubeClient) -> dict[str, dict]:
    cluster = config.slurm.cluster_name
    try:
        pods = kube.list_pods(naming.owner_labels(cluster))
    except KubernetesError:
        return {}
    return {naming.node_of(p): p for p in pods if naming.node_of(p) in nodes and naming.is_ours(p, cluster=cluster)}
