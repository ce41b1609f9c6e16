"""ResumeProgram's flow: Slurm nodes in, one slurmd pod per node out.

Nodes are planned (Slurm facts → nodeset → gang groups), then their pods are rendered and
created ``CHUNK`` at a time, so a hook resuming thousands of nodes holds one chunk's manifests,
not all of them (5,000 rendered pods are ~30 MiB of dicts). A job is all or nothing: if any of
its nodes cannot get a pod, the job's other pods are deleted too and Slurm requeues it at once
(:mod:`bridge.failure`), instead of waiting ResumeTimeout. A repeated resume creates nothing
twice. The jobs that did get their pods are then followed in the background
(:mod:`bridge.follow`) until their nodes register, so the hook returns promptly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bridge import causes, gang, naming, nodestate, owed
from bridge.config import Config
from bridge.errors import BridgeError, Conflict, KubernetesError, NotServed, UnknownNode
from bridge.failure import Failure, classify, release_job
from bridge.kube import KubeClient
from bridge.render import PodPlan, render_pod
from bridge.resumefile import ResumeRequest, groups
from bridge.slurm import NodeFacts, SlurmClient, given_back

# How long to wait for the previous incarnation of a node's pod to finish terminating
# (a node resumed again right after a suspend) before calling the node failed.
TERMINATING_WAIT = 30.0

CHUNK = 500
"""Pods rendered and created per round: large enough to keep ``concurrency`` requests in flight,
small enough that the hook's memory does not grow with the job."""

UNKNOWN = "Slurm does not know this node"
UNSETTLED = "the bridge made no pod for this node (a bug, see the bridge's log)"


@dataclass
class Outcome:
    """What a resume did, node by node."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    """Nodes whose pod the bridge had already created (a repeated resume)."""
    failures: dict[str, Failure] = field(default_factory=dict)
    """Node → why it failed, as set in the node's Reason."""
    released: list[str] = field(default_factory=list)
    """Nodes that got a pod but were released because another node of their job failed."""
    errors: list[BridgeError] = field(default_factory=list)
    foreign_groups: set[naming.Ref] = field(default_factory=set)
    """PodGroups named like a job's but not the bridge's: a release must leave them alone."""
    given_back: list[str] = field(default_factory=list)
    """Nodes the bridge had already given back to Slurm (DOWN with the bridge's cause) before this
    call: they get no pod (see :func:`given_back`)."""

    @property
    def failed(self) -> dict[str, str]:
        return {node: failure.cause for node, failure in self.failures.items()}

    def up(self) -> list[str]:
        """Nodes whose pods stand: created now or before, and not released."""
        return [n for n in self.created + self.existing if n not in self.released]

    def exit_code(self) -> int | None:
        """When every node failed for one kind of reason (e.g. the API is unreachable), that
        kind's exit code; None when some nodes went ahead or the causes differ."""
        if self.up():
            return None
        codes = {e.exit_code for e in self.errors}
        return codes.pop() if len(codes) == 1 and len(self.errors) == len(self.failures) else None


def resume(nodes: list[str], *, config: Config, slurm: SlurmClient, kube: KubeClient,
           request: ResumeRequest | None = None, log: Any) -> Outcome:
    """Create the pods of ``nodes``; release the jobs that cannot have all of theirs.

    Every node asked for ends with a pod or in ``outcome.failures`` (and so released, with
    its cause as Reason): an error part-way fails the nodes it left unsettled, and a node
    that no step accounted for is failed rather than left to wait out ResumeTimeout."""
    outcome = Outcome()
    groups: list[gang.Group] = []
    try:
        facts = slurm.node_facts(nodes)
        members = _members(nodes, facts, config=config, outcome=outcome)
        groups = _create_groups(members, request, config=config, kube=kube, outcome=outcome)
        _create(members, facts, groups, request, config=config, slurm=slurm, kube=kube, outcome=outcome)
    except BridgeError as e:
        outcome.errors += [e for _ in _fail_unsettled(nodes, outcome, classify(e))]
    if unsettled := _fail_unsettled(nodes, outcome, Failure(UNSETTLED, transient=False)):
        log.error("nodes left without pod or failure", nodes=unsettled)
    if outcome.failures:
        _release(nodes, request, outcome, groups, config=config, slurm=slurm, kube=kube, log=log)
    causes.forget(config.resume.state_dir, outcome.up())
    if outcome.given_back:
        log.warning("nodes already given back to Slurm get no pod", nodes=outcome.given_back)
    log.info("resume done", created=len(outcome.created), existing=len(outcome.existing),
             failed=len(outcome.failures), released=len(outcome.released))
    return outcome


def _create(members: list[tuple[str, str]], facts: dict[str, NodeFacts], groups: list[gang.Group],
            request: ResumeRequest | None, *, config: Config, slurm: SlurmClient, kube: KubeClient,
            outcome: Outcome) -> None:
    """Render and create the pods ``CHUNK`` at a time. A failure in one chunk does not stop
    the next: the failed job is released afterwards as a whole (pods of earlier chunks
    included), and other jobs go ahead, as when every pod was created at once."""
    group_of = {node: group for group in groups for node in group.nodes}
    conflicts: list[PodPlan] = []
    for start in range(0, len(members), CHUNK):
        plans = _render([n for n, _ in members[start:start + CHUNK] if n not in outcome.failures], facts,
                        request, group_of, config=config, outcome=outcome)
        errors = kube.create_pods([p.manifest for p in plans]) if plans else {}
        conflicts += [p for p in plans if _already_exists(errors[p.name])]
        for plan in plans:
            _record(plan, errors[plan.name], outcome)
    if conflicts:
        _settle_conflicts(conflicts, config=config, slurm=slurm, kube=kube, outcome=outcome)


def _fail_unsettled(nodes: list[str], outcome: Outcome, failure: Failure) -> list[str]:
    """Fail every node of ``nodes`` that has neither a pod nor a failure; return them."""
    settled = set(outcome.created) | set(outcome.existing) | set(outcome.failures) | set(outcome.given_back)
    unsettled = [n for n in nodes if n not in settled]
    for node in unsettled:
        outcome.failures[node] = failure
    return unsettled


def _members(nodes: list[str], facts: dict[str, NodeFacts], *, config: Config,
             outcome: Outcome) -> list[tuple[str, str]]:
    """(node, nodeset) of every node that can have a pod; the others fail here."""
    members = []
    for node in nodes:
        if node not in facts:
            outcome.failures[node] = Failure(UNKNOWN, transient=False)
            outcome.errors.append(UnknownNode(UNKNOWN))
            continue
        if given_back(facts[node]):
            outcome.given_back.append(node)
            continue
        try:
            members.append((node, config.nodeset_for(node).name))
        except BridgeError as e:
            outcome.failures[node] = classify(e)
            outcome.errors.append(e)
    return members


def _render(nodes: list[str], facts: dict[str, NodeFacts], request: ResumeRequest | None,
            group_of: dict[str, gang.Group], *, config: Config, outcome: Outcome) -> list[PodPlan]:
    plans = []
    for node in nodes:
        job = request.job_of(node) if request else None
        try:
            plan = render_pod(config, facts[node], job_id=job.job_id if job else None)
        except BridgeError as e:
            outcome.failures[node] = classify(e)
            outcome.errors.append(e)
            continue
        if node in group_of:
            group_of[node].mark(plan.manifest)
        plans.append(plan)
    return plans


def _create_groups(members: list[tuple[str, str]], request: ResumeRequest | None, *, config: Config,
                   kube: KubeClient, outcome: Outcome) -> list[gang.Group]:
    """Gang groups go first: a pod of a gang must never wait for a group that is not there."""
    groups = gang.plan(members, request, config)
    objects = [o for g in groups for o in g.objects]
    if not objects:
        return groups
    errors = kube.create_objects(objects)
    for group in groups:
        for obj in group.objects:
            error = errors[obj["metadata"]["name"]]
            if _already_exists(error):
                error = _settle_group(obj, kube=kube, outcome=outcome)
            if error is not None:
                failure = error if isinstance(error, Failure) else classify(error)
                if isinstance(error, NotServed):
                    failure = Failure(gang.not_served(error.api_version), transient=False)
                for node in group.nodes:
                    outcome.failures[node] = Failure(f"pod group {group.name}: {failure.cause}", failure.transient)
                if isinstance(error, KubernetesError):
                    outcome.errors.append(error)
    return groups


def _settle_group(wanted: dict[str, Any], *, kube: KubeClient,
                  outcome: Outcome) -> Failure | KubernetesError | None:
    """A PodGroup of that name exists: the job's own from an earlier resume (kept if it still
    says the same, replaced if the job's size changed, e.g. requeued with fewer nodes), or
    somebody else's (never touched; the job fails)."""
    meta = wanted["metadata"]
    ref = (wanted["apiVersion"], wanted["kind"], meta["name"])
    try:
        found = kube.get_object(ref)
    except KubernetesError as e:
        return e
    if found is not None:
        labels = (found.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in meta["labels"].items()):
            outcome.foreign_groups.add(ref)
            return Failure(f"{wanted['kind']} {meta['name']} exists and was not created by the bridge "
                           f"for job {meta['labels'][naming.JOB_LABEL]}", transient=False)
        spec = found.get("spec") or {}  # with what the gang scheduler's webhooks added: compare ours only
        if all(spec.get(k) == v for k, v in wanted["spec"].items()) and not found["metadata"].get("deletionTimestamp"):
            return None
        if error := kube.delete_objects([ref])[ref[2]]:
            return error
    error = kube.create_objects([wanted])[meta["name"]]
    if error is None:
        return None
    if _already_exists(error):
        return Failure(f"{wanted['kind']} {meta['name']} from an earlier resume is still being deleted", True)
    return error


def _record(plan: PodPlan, error: KubernetesError | None, outcome: Outcome) -> None:
    if error is None:
        outcome.created.append(plan.node)
    elif not _already_exists(error):
        failure = classify(error)
        outcome.failures[plan.node] = Failure(f"pod {plan.name}: {failure.cause}", failure.transient)
        outcome.errors.append(error)


def _release(nodes: list[str], request: ResumeRequest | None, outcome: Outcome, gang_groups: list[gang.Group], *,
             config: Config, slurm: SlurmClient, kube: KubeClient, log: Any) -> None:
    """All or nothing per job: a job with a failed node gives back all of its nodes. Nodes
    powered up without a job (``scontrol power_up``) fail alone, but are released together:
    one pod listing and one scontrol call per cause, however many there are."""
    refs = {node: ref for g in gang_groups for o in g.objects
            if (ref := (o["apiVersion"], o["kind"], o["metadata"]["name"])) not in outcome.foreign_groups
            for node in g.nodes}
    jobless: list[str] = []
    for job_ids, group in groups(nodes, request):
        failed = {n: outcome.failures[n] for n in group if n in outcome.failures}
        if failed and not job_ids:
            jobless += [n for n in failed if failed[n].cause != UNKNOWN]  # Slurm would refuse to update it
        elif failed:
            release_job(job_ids, group, failed, config=config, slurm=slurm, kube=kube, log=log,
                        groups={refs[n] for n in group if n in refs}, created=outcome.created)
            outcome.released += [n for n in group if n not in failed]
    if jobless:
        release_job((), jobless, {n: outcome.failures[n] for n in jobless}, config=config, slurm=slurm,
                    kube=kube, log=log, created=outcome.created)


def _already_exists(error: KubernetesError | None) -> bool:
    return isinstance(error, Conflict)


def _settle_conflicts(conflicts: list[PodPlan], *, config: Config, slurm: SlurmClient, kube: KubeClient,
                      outcome: Outcome) -> None:
    """A pod of that name exists. Ours and alive: nothing to do. Ours and on its way out
    (a suspend just deleted it, or it ended): wait for it to go, then create it again, unless
    Slurm has taken the node back meanwhile. Not ours: never touched; the node fails."""
    deadline = time.monotonic() + TERMINATING_WAIT
    pending = conflicts
    while True:
        retry = [plan for plan in pending if _needs_retry(plan, config=config, kube=kube, outcome=outcome)]
        if not retry:
            return
        if time.monotonic() > deadline:
            for plan in retry:
                outcome.failures[plan.node] = Failure(f"pod {plan.name} from an earlier resume is still terminating",
                                                      transient=True)
            return
        time.sleep(0.5)
        # Asked right before each try: the failure that deleted the old pod gives the node back
        # to Slurm a moment after the deletion.
        if not (retry := _still_wanted(retry, slurm=slurm, outcome=outcome)):
            return
        errors = kube.create_pods([p.manifest for p in retry])
        for plan in retry:
            _record(plan, errors[plan.name], outcome)
        owed.paid(config.resume.state_dir, [p.node for p in retry if errors[p.name] is None])
        pending = [p for p in retry if _already_exists(errors[p.name])]


def _still_wanted(plans: list[PodPlan], *, slurm: SlurmClient, outcome: Outcome) -> list[PodPlan]:
    """The plans whose node Slurm still wants up. The pod in the way may be one a suspend is
    deleting because the node's job failed to start and was requeued while this call ran (the
    prolog's early start gives the job's nodes back at once): that node is powering down, DOWN
    with the bridge's cause, or already powered down again with no job on it (SuspendTimeout
    passed while this call waited), and a pod made for it now would outlive its job: Slurm calls
    SuspendProgram only for nodes it powered up. (Powered down alone is not enough: the prolog's
    early start makes pods for nodes allocated while still powered down.)"""
    if not plans:
        return plans
    facts = slurm.node_facts([p.node for p in plans])
    wanted = []
    for plan in plans:
        fact = facts.get(plan.node)
        if fact is not None and (given_back(fact) or nodestate.is_powering_down(fact.state)
                                 or _powered_down_idle(fact.state)):
            outcome.given_back.append(plan.node)
        else:
            wanted.append(plan)
    return wanted


def _powered_down_idle(state: tuple[str, ...]) -> bool:
    return (nodestate.is_powered_down(state) and not nodestate.is_powering_up(state)
            and not nodestate.is_allocated(state))


def _job_label(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(naming.JOB_LABEL)


def _needs_retry(plan: PodPlan, *, config: Config, kube: KubeClient, outcome: Outcome) -> bool:
    """Sort one conflict; True when the old pod is going away and create must be tried again."""
    pod = kube.get_pod(plan.name)
    if pod is None:
        return True  # gone since the conflict
    if not naming.is_ours(pod, cluster=config.slurm.cluster_name, node=plan.node):
        outcome.failures[plan.node] = Failure(
            f"pod {plan.name} exists and was not created by the bridge for this node", transient=False)
        return False
    terminating = pod["metadata"].get("deletionTimestamp") is not None
    finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    # Slurm resumes a node only when it considers it powered down: a live pod of ours made
    # for another job (or none) is a leftover, e.g. of a suspend still under way, and so is
    # the very pod a suspend owes (killed mid-way, or refused by the API).
    owing = owed.owed(config.resume.state_dir, {plan.node}).get(plan.node)
    stale = _job_label(pod) != _job_label(plan.manifest) or (owing is not None and owed.matches(owing, pod))
    if not terminating and not finished and not stale:
        outcome.existing.append(plan.node)
        return False
    if not terminating:
        kube.delete_pods([plan.name])
    return True
