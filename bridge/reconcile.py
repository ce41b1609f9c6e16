"""What should change so Slurm and Kubernetes agree: the reconcile plan, as data.

:func:`plan` is pure: it takes what Slurm says of the elastic nodes, the bridge's pods, the
Kubernetes nodes and PodGroups, the time and what earlier looks saw (:class:`Memory`), and returns
:class:`Action` values; the daemon carries them out (or, with ``--dry-run``, only says them) and
``slurm-k8s-bridge status`` shows them. It covers what happens between two hooks:

* an orphan pod: a bridge pod whose Slurm node has been powered down, unknown to Slurm, or
  given back DOWN by the bridge (:func:`bridge.slurm.given_back`) for ``daemon.orphan_grace`` →
  :class:`DeletePod`;
* a node Slurm counts on (up or allocated) whose pod is gone, Failed, evicted, being deleted or
  on a Kubernetes node that is NotReady or gone → :class:`ReleaseNode` at once with the cause, so
  the job is requeued now instead of after SlurmdTimeout (300 s by default);
* a node POWERING_UP with no pod for ``daemon.stuck_grace`` (slurmctld or the hook killed
  mid-resume) → :class:`ReleaseNode`;
* a PodGroup of the bridge's with none of its pods → :class:`DeletePodGroup`;
* a Kubernetes node cordoned or tainted NoExecute while it hosts slurmd pods → :class:`DrainNode`
  on those Slurm nodes (jobs finish, no new ones); once it is schedulable again
  :class:`UndrainNode`, only for drains whose reason says the bridge set them;
* a nodeset whose pods keep failing for lack of capacity → its circuit breaker
  (:mod:`bridge.breaker`): :class:`~bridge.breaker.OpenBreaker` / :class:`~bridge.breaker.CloseBreaker`;
* with ``daemon.follow``, what :mod:`bridge.follow` does for each resumed job, from the state on
  the pods alone (the job id label, the creation time for the deadline, the PodScheduled
  condition's lastTransitionTime for "unschedulable since"), so a restarted daemon loses nothing:
  a pod Unschedulable, unable to pull its image, crash-looping or failed, or the deadline passed
  before the nodes registered → :class:`ReleaseJob` (all the job's nodes, all or nothing).

Nothing is planned for a pod :func:`bridge.naming.is_ours` rejects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge import breaker, naming, nodestate
from bridge.config import Config
from bridge.failure import Failure
from bridge.follow import pod_failure
from bridge.lease import parse_time
from bridge.slurm import DRAIN_REASON, NodeFacts, given_back

"""How every drain the bridge sets begins: the bridge lifts only drains with this reason."""


class _OneNode:
    """An action on one Slurm node (``node``)."""

    node: str

    @property
    def nodes(self) -> tuple[str, ...]:
        """The Slurm nodes it changes (every action has them)."""
        return (self.node,)


@dataclass(frozen=True)
class DeletePod(_OneNode):
    node: str
    pod: str
    cause: str
    rule: str = field(default="", compare=False)
    """The short name of the rule that planned it (metrics, status): orphan, vanished, ..."""
    kind = "delete_pod"


@dataclass(frozen=True)
class ReleaseNode(_OneNode):
    """Give the node back to Slurm through :func:`bridge.failure.release_job` (its pod deleted,
    the node powered down, or set DOWN for a lasting cause): its job is requeued now."""

    node: str
    cause: str
    transient: bool = True
    registered: bool = True
    """Its slurmd had registered (the node was up): see :attr:`bridge.failure.Failure.registered`."""
    rule: str = field(default="", compare=False)
    """The short name of the rule that planned it (metrics, status): orphan, vanished, ..."""
    kind = "release_node"

    @property
    def failure(self) -> Failure:
        return Failure(self.cause, self.transient, registered=self.registered)


@dataclass(frozen=True)
class DrainNode(_OneNode):
    node: str
    reason: str
    rule: str = field(default="", compare=False)
    """The short name of the rule that planned it (metrics, status): orphan, vanished, ..."""
    kind = "drain_node"

    @property
    def cause(self) -> str:
        return self.reason


@dataclass(frozen=True)
class UndrainNode(_OneNode):
    node: str
    cause: str
    rule: str = field(default="", compare=False)
    """The short name of the rule that planned it (metrics, status): orphan, vanished, ..."""
    kind = "undrain_node"


@dataclass(frozen=True)
class DeletePodGroup:
    ref: naming.Ref
    cause: str
    rule: str = field(default="", compare=False)
    """The short name of the rule that planned it (metrics, status): orphan, vanished, ..."""
    kind = "delete_pod_group"

    @property
    def node(self) -> str:
        return ""

    @property
    def nodes(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class ReleaseJob:
    """A resumed job whose pods will not all come up: :func:`bridge.failure.release_job` on all
    its powering-up nodes, as the hook's follower would."""

    job_ids: tuple[int, ...]
    nodes: tuple[str, ...]
    failed: tuple[tuple[str, Failure], ...]
    rule: str = field(default="", compare=False)
    kind = "release_job"

    @property
    def node(self) -> str:
        return ",".join(self.nodes)

    @property
    def cause(self) -> str:
        return self.failed[0][1].cause


Action = DeletePod | ReleaseNode | DrainNode | UndrainNode | DeletePodGroup | ReleaseJob | breaker.OpenBreaker \
    | breaker.CloseBreaker


@dataclass
class Memory:
    """When each condition that needs a grace period was first seen, by (condition, subject).
    Only the daemon's own patience lives here: a restarted daemon waits the grace again,
    it never acts sooner."""

    since: dict[tuple[str, str], float] = field(default_factory=dict)
    impatient: bool = False
    """Treat every condition as having lasted forever: what ``status`` shows as a disagreement."""
    breakers: breaker.Breakers = field(default_factory=breaker.Breakers)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def lasted(self, condition: str, subject: str, now: float) -> float:
        """Seconds ``condition`` has held for ``subject`` (0 the first time)."""
        key = (condition, subject)
        self._seen.add(key)
        return float("inf") if self.impatient else now - self.since.setdefault(key, now)

    def next_due(self, now: float, config: Config) -> float | None:
        """Seconds until the first remembered condition reaches its grace period, if any."""
        graces = {"orphan": config.daemon.orphan_grace, "stuck": config.daemon.stuck_grace,
                  "vanished": config.daemon.confirm, "group": config.daemon.group_grace}
        due = [since + graces[condition] - now for (condition, _), since in self.since.items()]
        return max(0.0, min(due)) if due else None

    def forget(self) -> None:
        """Drop every clock (a replica standing by sees nothing: each grace starts again)."""
        self.since, self._seen = {}, set()

    def forget_the_rest(self) -> None:
        """Conditions not seen in this look are over: their clocks restart if they return."""
        self.since = {k: v for k, v in self.since.items() if k in self._seen}
        self._seen = set()


def plan(facts: dict[str, NodeFacts], pods: Iterable[dict[str, Any]], k8s_nodes: Iterable[dict[str, Any]] | None,
         now: float, config: Config, memory: Memory, *, groups: Iterable[dict[str, Any]] = ()) -> list[Action]:
    """The actions that bring Slurm and Kubernetes back in line.

    ``facts``: every elastic node (and every node one of our pods names) as Slurm reports it;
    ``pods``: the pods carrying the bridge's labels (foreign look-alikes are skipped here);
    ``k8s_nodes``: the Kubernetes nodes, None when they cannot be read (no node rule then);
    ``now``: seconds since the epoch; ``groups``: PodGroups carrying the bridge's labels."""
    cluster = config.slurm.cluster_name
    ours = [p for p in pods if naming.is_ours(p, cluster=cluster)]
    by_node = _pods_by_node(ours)
    hosts = {n["metadata"]["name"]: n for n in k8s_nodes} if k8s_nodes is not None else None
    actions: list[Action] = []
    for node in sorted(set(facts) | set(by_node)):
        actions += _node_actions(node, facts.get(node), by_node.get(node), hosts, now=now, config=config,
                                 memory=memory)
    actions += _group_actions(ours, groups, now=now, config=config, memory=memory)
    if config.daemon.follow:
        actions += _follow_actions(facts, by_node, now=now, config=config)
    actions += breaker.plan(facts, now, config, memory.breakers)
    memory.forget_the_rest()
    return actions


def _node_actions(node: str, fact: NodeFacts | None, pod: dict[str, Any] | None, hosts: dict[str, dict] | None, *,
                  now: float, config: Config, memory: Memory) -> list[Action]:
    settings = config.daemon
    if fact is None or nodestate.is_powered_down(fact.state):
        if fact is not None and nodestate.is_drained(fact.state) and fact.reason.startswith(DRAIN_REASON):
            # Drained for its pod's cordoned host, then powered down: the next pod goes to a
            # schedulable host, so that drain means nothing any more and would hold it forever.
            return [UndrainNode(node, "powered down: its pod and the cordoned Kubernetes node are behind it",
                                rule="host_back")]
        if pod is None or deleting(pod) or (fact is not None and nodestate.is_allocated(fact.state)):
            # Allocated while still powered down: the prolog's early start made its pods before
            # ResumeProgram (Slurm's ResumeRate may hold a large job there for minutes).
            return []
        where = "unknown to Slurm" if fact is None else "powered down"
        if memory.lasted("orphan", node, now) < settings.orphan_grace:
            return []
        return [DeletePod(node, pod["metadata"]["name"], f"orphan pod: Slurm node {node} is {where}",
                          rule="orphan")]
    if given_back(fact):
        # The release deleted its pod before it set the node DOWN; a resume that raced it made
        # one again. Slurm runs nothing here until an admin resumes the node or ResumeTimeout
        # (an hour by default) hands it to ResumeFailProgram: the pod would hold its share of
        # Kubernetes until then.
        if pod is None or deleting(pod) or memory.lasted("orphan", node, now) < settings.orphan_grace:
            return []
        return [DeletePod(node, pod["metadata"]["name"],
                          f"orphan pod: Slurm node {node} was given back DOWN ({fact.reason})", rule="orphan")]
    state = fact.state
    if nodestate.is_powering_up(state) and not nodestate.is_down(state):
        if pod is None and memory.lasted("stuck", node, now) >= settings.stuck_grace:
            return [ReleaseNode(node, f"no pod after {settings.stuck_grace:.0f} s of powering up",
                                registered=False, rule="stuck")]
        return []
    if not nodestate.is_up(state):
        return []
    trouble = _pod_trouble(node, pod, hosts, now=now, config=config, memory=memory)
    if trouble is not None:
        return [trouble]
    return _drain_actions(node, fact, pod, hosts)


def _pod_trouble(node: str, pod: dict[str, Any] | None, hosts: dict[str, dict] | None, *, now: float,
                 config: Config, memory: Memory) -> ReleaseNode | None:
    """Why the pod of an up node no longer runs its slurmd, if it does not."""
    if pod is None:
        if memory.lasted("vanished", node, now) < config.daemon.confirm:
            return None
        return ReleaseNode(node, "its pod is gone", rule="vanished")
    name = pod["metadata"]["name"]
    if deleting(pod):
        return ReleaseNode(node, f"pod {name} is being deleted", rule="deleting")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Failed", "Succeeded"):
        failure = pod_failure(pod, now=now, since={}, patience=0) or Failure(f"pod {name} ended: {phase}", True)
        return ReleaseNode(node, failure.cause, failure.transient, rule="pod_ended")
    host_name = (pod.get("spec") or {}).get("nodeName")
    if hosts is None or not host_name:
        return None
    host = hosts.get(host_name)
    if host is None:
        return ReleaseNode(node, f"pod {name}: Kubernetes node {host_name} is gone", rule="host_gone")
    if not _ready(host):
        return ReleaseNode(node, f"pod {name}: Kubernetes node {host_name} is NotReady", rule="host_not_ready")
    return None


def _drain_actions(node: str, fact: NodeFacts, pod: dict[str, Any] | None,
                   hosts: dict[str, dict] | None) -> list[Action]:
    host_name = ((pod or {}).get("spec") or {}).get("nodeName")
    if hosts is None or not host_name or host_name not in hosts:
        return []
    why = _leaving(hosts[host_name])
    drained = nodestate.is_drained(fact.state)
    if why and not drained:
        return [DrainNode(node, f"{DRAIN_REASON}{host_name} {why}", rule="host_leaving")]
    if not why and drained and fact.reason.startswith(DRAIN_REASON):
        return [UndrainNode(node, f"Kubernetes node {host_name} is schedulable again", rule="host_back")]
    return []


def _group_actions(ours: list[dict[str, Any]], groups: Iterable[dict[str, Any]], *, now: float, config: Config,
                   memory: Memory) -> list[Action]:
    used = {ref for p in ours if (ref := naming.group_of(p))}
    owner = naming.owner_labels(config.slurm.cluster_name)
    actions: list[Action] = []
    for group in groups:
        meta = group.get("metadata") or {}
        if any((meta.get("labels") or {}).get(k) != v for k, v in owner.items()):
            continue  # not the bridge's: never touched
        ref = (group["apiVersion"], group["kind"], meta["name"])
        if ref in used or meta.get("deletionTimestamp"):
            continue
        created = parse_time(meta.get("creationTimestamp")) or now
        if max(now - created, memory.lasted("group", "/".join(ref), now)) >= config.daemon.group_grace:
            actions.append(DeletePodGroup(ref, f"{ref[1]} {ref[2]} has no pod left", rule="empty_group"))
    return actions


def _follow_actions(facts: dict[str, NodeFacts], pods: dict[str, dict[str, Any]], *, now: float,
                    config: Config) -> list[Action]:
    """The resumed jobs that cannot start: their nodes are powering up, their pods say why."""
    from bridge.suspend import pod_problem

    jobs: dict[str, list[str]] = {}
    for node, pod in pods.items():
        fact = facts.get(node)
        if fact is not None and nodestate.is_powering_up(fact.state) and not nodestate.is_down(fact.state) \
                and not deleting(pod):
            jobs.setdefault(((pod["metadata"].get("labels") or {}).get(naming.JOB_LABEL) or ""), []).append(node)
    actions: list[Action] = []
    for job, nodes in sorted(jobs.items()):
        groups = [nodes] if job else [[n] for n in nodes]  # nodes powered up by hand fail alone
        for group in groups:
            failed = {n: f for n in group if (f := pod_failure(pods[n], now=now, since=_unschedulable_since(pods[n]),
                                                               patience=config.resume.unschedulable_after))}
            rule = "pod_failed"
            started = min(parse_time(pods[n]["metadata"].get("creationTimestamp")) or now for n in group)
            if not failed and now - started >= config.resume.deadline:
                failed = {n: Failure(f"node did not register within {config.resume.deadline:.0f} s: "
                                     f"{pod_problem(pods[n])}", transient=True) for n in group}
                rule = "deadline"
            if failed:
                job_ids = (int(job),) if job.isdigit() else ()
                actions.append(ReleaseJob(job_ids, tuple(sorted(group)), tuple(sorted(failed.items())), rule=rule))
    return actions


def _unschedulable_since(pod: dict[str, Any]) -> dict[str, float]:
    """"Unschedulable since", from the pod itself: its PodScheduled condition's lastTransitionTime."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            since = parse_time(condition.get("lastTransitionTime"))
            if since is not None:
                return {pod["metadata"]["name"]: since}
    return {}


def _pods_by_node(pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One pod per node; where a node has two (one being deleted, one new), the live one."""
    out: dict[str, dict[str, Any]] = {}
    for pod in pods:
        node = naming.node_of(pod)
        if node is not None and (node not in out or deleting(out[node])):
            out[node] = pod
    return out


def deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def host_view(host: dict[str, Any]) -> tuple[bool, str | None]:
    """All the plan reads of a Kubernetes node: whether it is Ready, and why it is being emptied."""
    return _ready(host), _leaving(host)


def _ready(host: dict[str, Any]) -> bool:
    conditions = (host.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _leaving(host: dict[str, Any]) -> str | None:
    """Why no new job should start on this Kubernetes node's pods, if it is being emptied."""
    spec = host.get("spec") or {}
    if spec.get("unschedulable"):
        return "is cordoned"
    for taint in spec.get("taints") or []:
        if taint.get("effect") == "NoExecute":
            return f"is tainted {taint.get('key')}:NoExecute"
    return None


