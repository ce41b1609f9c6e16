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

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from bridge import causes, naming
from bridge.config import Config
from bridge.errors import BridgeError, KubernetesError, SlurmError
from bridge.kube import KubeClient
from bridge.slurm import SlurmClient

# Lines of a container's log read for its last words: enough to get past munged's chatter and
# a few repeats of a retry loop, small enough for one quick call.
LOG_LINES = 40
_ERROR = re.compile(r"\b(error|fatal)\b", re.IGNORECASE)
_CHATTER = re.compile(r"\b(info|debug\d?|verbose)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    cause: str
    transient: bool
    container: str | None = None
    """The container whose log says more (slurmd crashing, or running but not registering):
    its last words are added to the cause when the job is released."""
    registered: bool = False
    """The node's slurmd had registered (a running node lost its pod): Slurm waits for a dead
    slurmd's epilog until SlurmdTimeout unless the node is set DOWN first (22.05, measured:
    POWER_DOWN_FORCE alone leaves the job COMPLETING; DOWN then POWER_DOWN_FORCE requeues it at
    once and the node is back in service, powered down)."""


def classify(error: BridgeError) -> Failure:
    """A failure from an exception: only Kubernetes can fail for a passing reason."""
    transient = isinstance(error, KubernetesError) and error.transient
    return Failure(cause=f"{error.kind}: {error}" if not isinstance(error, KubernetesError) else str(error),
                   transient=transient)


def release_job(job_ids: tuple[int, ...], nodes: list[str], failed: dict[str, Failure], *, config: Config,
                slurm: SlurmClient, kube: KubeClient, log: Any, groups: set[naming.Ref] = frozenset(),
                created: Iterable[str] = ()) -> None:
    """Undo a resume: ``nodes`` are all the nodes resumed for ``job_ids`` (jobs that share a node
    stand or fall together; with no job, nodes powered up by hand, each failing alone), ``failed``
    the ones that failed and why,
    ``groups`` pod groups made for them (more are found on their pods), ``created`` the nodes
    whose pods the caller has just created: deleted by name if the pods cannot be listed.

    Pods go first, whatever Slurm says afterwards: nothing half-started may hold resources."""
    log = log.bind(jobs=list(job_ids))
    unlisted: list[str] = []
    try:
        pods = naming.pods_of(kube, cluster=config.slurm.cluster_name, nodes=set(nodes))
    except KubernetesError as e:
        pods = {}
        unlisted = sorted(naming.pod_name(config.slurm.cluster_name, n) for n in set(created) & set(nodes))
        log.warning("cannot list the failed job's pods; deleting those this call created", pods=unlisted,
                    error=str(e))
    failed = {node: with_last_words(failure, pods.get(node), kube=kube) for node, failure in failed.items()}
    first = _telling(failed)
    for node, failure in failed.items():
        log.error("resume failed", node=node, cause=failure.cause, transient=failure.transient)
        if node in pods:
            kube.emit_event(pods[node], reason="SlurmResumeFailed", message=f"Slurm node {node}: {failure.cause}")
    _delete(pods, set(groups), kube=kube, log=log, by_name=unlisted)
    try:
        _update_slurm(job_ids, nodes, failed, first, config=config, slurm=slurm, log=log)
    except SlurmError as e:
        log.error("could not give the nodes back to Slurm", error=str(e))


def _telling(failed: dict[str, Failure]) -> Failure:
    """The failure that says most, for the Reason of the job's other nodes: a lasting one (an
    admin must act), else one with a container's own words, else the first."""
    return max(failed.values(), key=lambda f: (not f.transient, " said: " in f.cause))


def with_last_words(failure: Failure, pod: dict[str, Any] | None, *, kube: KubeClient) -> Failure:
    """``failure`` with its container's last meaningful log lines, where it names a container and
    the log can be read (best effort: without them the cause still stands)."""
    if failure.container is None or pod is None or not _has_run(pod, failure.container):
        return failure
    try:
        text = kube.pod_log(pod["metadata"]["name"], failure.container, LOG_LINES)
    except KubernetesError:
        return failure
    words = last_words(text, container=failure.container)
    return replace(failure, cause=f"{failure.cause}; {failure.container} said: {words}") if words else failure


def _has_run(pod: dict[str, Any], container: str) -> bool:
    """Whether the container has started at least once: before that it has no log to read."""
    status = pod.get("status") or {}
    for each in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if each.get("name") == container:
            state = each.get("state") or {}
            return bool(state.get("running") or state.get("terminated") or (each.get("lastState") or {}).get("terminated"))
    return False


def last_words(log: str, *, container: str = "", lines: int = 2) -> str:
    """What a log says went wrong: from its first line that reports an error (slurmd's
    ``error:``/``fatal:``; later ones are mostly consequences), up to ``lines`` distinct ones
    (a retry loop repeats itself); else its last line (the entrypoint's own message before it
    exits) unless that is chatter. The program's own ``<container>: `` prefix is dropped."""
    text = [_unprefixed(line.strip(), container) for line in log.splitlines() if line.strip()]
    errors = [line for line in text if _ERROR.search(line)]
    if not errors:
        return text[-1] if text and not _CHATTER.search(text[-1]) else ""
    distinct: list[str] = []
    for line in errors:
        if line not in distinct:
            distinct.append(line)
    return " | ".join(distinct[:lines])


def _unprefixed(line: str, container: str) -> str:
    return line[len(container) + 2:] if container and line.startswith(f"{container}: ") else line


def _delete(pods: dict[str, dict], groups: set[naming.Ref], *, kube: KubeClient, log: Any,
            by_name: list[str] = ()) -> None:
    names = sorted({p["metadata"]["name"] for p in pods.values()} | set(by_name))
    errors = kube.delete_pods(names) if names else {}
    left = {name: str(error) for name, error in errors.items() if error is not None}
    if left:
        log.error("pods of failed job not deleted", pods=left)
    elif names:
        log.info("pods of failed job deleted", pods=names)
    refs = groups | {ref for p in pods.values() if (ref := naming.group_of(p))}
    if refs:
        kube.delete_objects(sorted(refs))


def _update_slurm(job_ids: tuple[int, ...], nodes: list[str], failed: dict[str, Failure], first: Failure, *,
                  config: Config, slurm: SlurmClient, log: Any) -> None:
    # Each update on its own: one Slurm refuses (e.g. a node it does not know) must not keep
    # the job's other nodes from being given back.
    lasting = {n: f for n, f in failed.items() if not f.transient}
    registered = {n: f for n, f in failed.items() if f.transient and f.registered}
    for cause, down in _by_cause(lasting | registered).items():
        _update(log, slurm.set_down, down, cause)
    for node, failure in lasting.items():
        causes.remember(config.resume.state_dir, node, failure.cause, log=log)
    released = [n for n in nodes if n not in lasting]
    if released and job_ids:
        jobs = ", ".join(str(j) for j in job_ids)
        _update(log, slurm.power_down, released, f"job {jobs} could not start: {first.cause}")
    elif released:  # nodes powered up without a job: each with its own cause
        for cause, down in _by_cause({n: failed[n] for n in released}).items():
            _update(log, slurm.power_down, down, cause)
    for job_id in job_ids:
        _requeue_or_hold(job_id, first, config=config, slurm=slurm, log=log.bind(job=job_id))


def _update(log: Any, update: Any, nodes: list[str], cause: str) -> None:
    try:
        update(nodes, cause)
    except SlurmError as e:
        log.error("could not give the nodes back to Slurm", nodes=nodes, error=str(e))


def _by_cause(failed: dict[str, Failure]) -> dict[str, list[str]]:
    nodes: dict[str, list[str]] = {}
    for node, failure in failed.items():
        nodes.setdefault(failure.cause, []).append(node)
    return nodes


def _requeue_or_hold(job_id: int, failure: Failure, *, config: Config, slurm: SlurmClient, log: Any) -> None:
    """Slurm has requeued the job (a batch job) or ended it (srun, --no-requeue): only a
    pending job can be delayed or held. slurmctld requeues inside the node update call, so
    Restarts already counts this attempt."""
    job = slurm.job_state(job_id)
    if job is None or job[0] != "PENDING":
        log.warning("job not requeued by Slurm", state=job[0] if job else "gone")
        return
    restarts = job[1]
    if restarts >= config.resume.max_attempts:
        slurm.hold(job_id, f"held after {restarts} failed resumes: {failure.cause}")
        log.error("job held", attempts=restarts, cause=failure.cause)
    elif failure.transient:
        slurm.delay(job_id, config.resume.cooldown)
        log.warning("job requeued", attempts=restarts, cooldown=config.resume.cooldown)
    else:
        log.warning("job requeued", attempts=restarts)
