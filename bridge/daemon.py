"""``slurm-k8s-bridge daemon``: one process per Slurm cluster that keeps Slurm and Kubernetes in line.

The hooks act when Slurm calls them; this acts in between. It watches the bridge's pods, the
Kubernetes nodes and the bridge's PodGroups (one list + watch each, :mod:`bridge.informer`, on an
asyncio loop in a background thread), reads every elastic node with one Slurm call per look
(:class:`bridge.slurm.SlurmClient`), asks :func:`bridge.reconcile.plan` what should change and carries it out through the paths the
hooks use (:func:`bridge.failure.release_job`, :mod:`bridge.kube`). A look happens at every change
of a pod or Kubernetes node, when a grace period ends, and every ``daemon.tick`` seconds.

Each action is a JSON log line, a Kubernetes Event on the pod and a metric; ``--dry-run`` only
logs. Nodesets with a warm pool (``warm.max > 0``) get their pool step after the plan
(:mod:`bridge.pool`). After every look the daemon touches its heartbeat (:mod:`bridge.heartbeat`).
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bridge import NAME, breaker, failure, heartbeat, hostlist, naming, nodestate
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError, CredentialsError, KubernetesError, SlurmError
from bridge.informer import API_ERRORS, DELETED, Informer
from bridge.kube import KubeClient
from bridge.metrics import Metrics
from bridge.pool import Pool
from bridge.reconcile import (Action, DeletePod, DeletePodGroup, DrainNode, Memory, ReleaseJob, ReleaseNode,
                              UndrainNode, deleting, host_view, plan)
from bridge.slurm import NodeFacts, SlurmClient

_EVENT_REASONS = {"delete_pod": "SlurmOrphanPod", "release_node": "SlurmNodeReleased",
                  "drain_node": "SlurmNodeDrained", "undrain_node": "SlurmNodeUndrained"}
MIN_GAP = 1.0
"""Seconds between two looks at least: a burst of pod events (a job's pods starting) makes one
look at Slurm, not one per event (measured: 0.2 s doubled slurmctld's node reads while 8 jobs
started, for no faster repair)."""

SLURM_REREAD = 60.0
"""On 22.05, seconds a look may reuse the last ``sinfo --json`` (0.6 s at 10,000 nodes) while
sinfo's summary of states and reasons is unchanged (0.13 s): :class:`bridge.slurm.CommandSlurm`."""


class Daemon:
    """One look at a time: Slurm's facts + the watched objects → plan → actions → metrics."""

    def __init__(self, config: Config, *, slurm: SlurmClient, kube: KubeClient, log: Any,
                 metrics: Metrics | None = None, dry_run: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.memory = Memory()
        self._slurm, self._kube, self._log = slurm, kube, log
        self._metrics = metrics or Metrics()
        self._dry_run = dry_run
        self._clock = clock
        self._elastic = {n for nodeset in config.nodesets for n in hostlist.expand(nodeset.nodes)}
        self._words: dict[str, str] = {}
        self._powering_up_since: dict[str, float] = {}
        self._nodeset_of: dict[str, str] = {}
        self.pool = Pool(config, slurm=slurm, log=log, metrics=self._metrics, dry_run=dry_run)

    def look(self, pods: list[dict[str, Any]], hosts: list[dict[str, Any]] | None,
             groups: list[dict[str, Any]] = (), *,
             again: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] | None = None,
             may_act: Callable[[], bool] | None = None) -> list[Action]:
        """One reconciliation; the actions planned (carried out unless dry-run).

        ``pods`` and ``hosts`` are taken before Slurm is read; ``again`` gives them once more
        after it: a pod made meanwhile counts for its node, and the Kubernetes nodes are the
        later ones (see ``daemon.confirm``). ``may_act``: whether this replica still leads,
        asked before it acts and before the warm pool's step (a look that lost the lead does
        nothing more, forgets what it had learned and returns what it did)."""
        started = time.monotonic()
        cluster = self.config.slurm.cluster_name
        named = {node for p in pods if (node := naming.node_of(p)) and naming.is_ours(p, cluster=cluster)}
        try:
            facts = self._slurm.node_facts(sorted(self._elastic | named))
        except SlurmError as e:
            self._metrics.api_errors.labels("slurm", "read").inc()
            self._log.warning("cannot read the Slurm nodes now", error=str(e))
            return []
        if again is not None:
            later_pods, later_hosts = again()
            pods = _with_pods_made_meanwhile(pods, later_pods, facts, cluster=cluster)
            hosts = later_hosts if later_hosts is not None else hosts
        if not facts.keys() & self._elastic:
            # Slurm knows every configured node: an answer with none of them is a reading gone
            # wrong, and would make every pod look like an orphan.
            self._metrics.api_errors.labels("slurm", "read").inc()
            self._log.warning("Slurm returned none of the elastic nodes; looking again later")
            return []
        now = self._clock()
        breakers = copy.deepcopy(self.memory.breakers) if may_act is not None else None
        actions = plan(facts, pods, hosts, now, self.config, self.memory, groups=groups)
        if may_act is not None and not may_act():
            self.memory.breakers = breakers  # the plan's drains were never made
            return self._stand_down(actions, [], started)
        self._observe(facts, pods, now)
        self._execute(actions, pods)
        if may_act is not None and not may_act():
            return self._stand_down(actions, actions, started)
        # Facts read before this look's actions: a node it just drained (a capacity breaker),
        # released or cleared of an orphan is not the pool's to count or power up until the
        # next look reads it again.
        changed = {n for a in actions if not isinstance(a, (UndrainNode, breaker.CloseBreaker))
                   for n in a.nodes}
        self.pool.step(facts, now, frozenset(changed))
        if not self._dry_run:
            try:
                heartbeat.beat(self.config.resume.state_dir, follows=self.config.daemon.follow, now=now)
            except OSError as e:  # disk full, read-only: the hooks then follow their jobs themselves
                self._metrics.api_errors.labels("state_dir", "heartbeat").inc()
                self._log.warning("cannot write the heartbeat", state_dir=self.config.resume.state_dir,
                                  error=e.strerror or str(e))
        self._metrics.heartbeat.set(now)
        self._metrics.tick_seconds.observe(time.monotonic() - started)
        return actions

    def _stand_down(self, planned: list[Action], done: list[Action], started: float) -> list[Action]:
        """This look lost the lead (its Slurm reads or its actions outlasted the Lease, or the
        Lease could not be renewed): the rest is left to the replica that leads now."""
        self._log.warning("no longer leading: the rest of this look is left to the replica that leads now",
                          planned=len(planned), done=len(done),
                          seconds=round(time.monotonic() - started, 3))
        self.memory.forget()
        self.pool.forget()
        self._metrics.tick_seconds.observe(time.monotonic() - started)
        return done

    def next_look(self) -> float:
        """Seconds until the next look is due, if nothing happens meanwhile."""
        due = self.memory.next_due(self._clock(), self.config)
        return self.config.daemon.tick if due is None else min(self.config.daemon.tick, due)

    # ---- carrying out ----------------------------------------------------------------------

    def _execute(self, actions: list[Action], pods: list[dict[str, Any]]) -> None:
        cluster = self.config.slurm.cluster_name
        by_node = {naming.node_of(p): p for p in pods if naming.is_ours(p, cluster=cluster)}
        for action in actions:
            self._record(action, by_node.get(action.node))
        if self._dry_run or not actions:
            return
        self._delete_pods([a for a in actions if isinstance(a, DeletePod)])
        self._release([a for a in actions if isinstance(a, ReleaseNode)])
        for job in (a for a in actions if isinstance(a, ReleaseJob)):
            failure.release_job(job.job_ids, self._whole_job(job, by_node), dict(job.failed), config=self.config,
                                slurm=self._slurm, kube=self._kube, log=self._log)
        self._drain([a for a in actions if isinstance(a, DrainNode)], [a for a in actions if isinstance(a, UndrainNode)])
        for action in actions:
            if isinstance(action, breaker.OpenBreaker):
                self._set_drained(list(action.nodes), action.cause)
            elif isinstance(action, breaker.CloseBreaker):
                self._set_drained(list(action.nodes), None)
        refs = [a.ref for a in actions if isinstance(a, DeletePodGroup)]
        if refs:
            self._kube_call("delete podgroups", lambda: self._report(self._kube.delete_objects(refs)))

    def _whole_job(self, job: ReleaseJob, by_node: dict[str | None, dict[str, Any]]) -> list[str]:
        """The nodes to give back for a failed job: its powering-up ones (the plan's) and those
        that registered already and wait for the others. A follower knows them from the resume
        call; the daemon asks Slurm (one squeue, only when a job fails) and takes a node only
        where Slurm allocates it to the job and its pod is the bridge's pod made for that job: a
        node the job's pod label names but another job now holds is never touched."""
        if not job.job_ids:
            return list(job.nodes)
        try:
            on_slurm = self._slurm.jobs_on(list(job.nodes))
        except SlurmError as e:
            self._log.warning("could not read the failed job's other nodes", jobs=list(job.job_ids), error=str(e))
            return list(job.nodes)
        labels = {str(j) for j in job.job_ids}
        registered = sorted({n for job_id, alloc in on_slurm if job_id in job.job_ids for n in alloc
                             if n not in job.nodes and n in by_node
                             and (by_node[n]["metadata"].get("labels") or {}).get(naming.JOB_LABEL) in labels})
        return list(job.nodes) + registered

    def _record(self, action: Action, pod: dict[str, Any] | None) -> None:
        self._log.info("reconcile", action=action.kind, rule=action.rule, node=action.node or None,
                       cause=action.cause, dry_run=self._dry_run,
                       **({"group": "/".join(action.ref)} if isinstance(action, DeletePodGroup) else {}),
                       **({"jobs": list(action.job_ids)} if isinstance(action, ReleaseJob) else {}))
        self._metrics.actions.labels(action.kind, action.rule, str(self._dry_run).lower()).inc()
        if isinstance(action, (ReleaseNode, ReleaseJob)):
            for node in action.nodes:
                self._metrics.failures.labels(self._nodeset(node), action.rule).inc()
        if pod is not None and not self._dry_run and action.kind in _EVENT_REASONS:
            self._kube.emit_event(pod, reason=_EVENT_REASONS[action.kind],
                                  message=f"Slurm node {action.node}: {action.cause}", warning=True)

    def _delete_pods(self, deletes: list[DeletePod]) -> None:
        if deletes:
            self._kube_call("delete pods", lambda: self._report(self._kube.delete_pods([a.pod for a in deletes])))

    def _release(self, releases: list[ReleaseNode]) -> None:
        """Through the one release path; nodes of one cause in one scontrol call."""
        if releases:
            failure.release_job((), [a.node for a in releases], {a.node: a.failure for a in releases},
                                config=self.config, slurm=self._slurm, kube=self._kube, log=self._log)

    def _drain(self, drains: list[DrainNode], undrains: list[UndrainNode]) -> None:
        by_reason: dict[str | None, list[str]] = {}
        for action in drains:
            by_reason.setdefault(action.reason, []).append(action.node)
        if undrains:
            by_reason[None] = [a.node for a in undrains]
        for reason, nodes in by_reason.items():
            self._set_drained(nodes, reason)

    def _set_drained(self, nodes: list[str], reason: str | None) -> None:
        try:
            self._slurm.set_drained(nodes, reason)
        except SlurmError as e:
            self._metrics.api_errors.labels("slurm", "drain").inc()
            self._log.error("cannot change the drain of nodes", nodes=hostlist.fold(nodes), error=str(e))

    def _kube_call(self, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except KubernetesError as e:
            self._metrics.api_errors.labels("kubernetes", what).inc()
            self._log.error(f"cannot {what}", error=str(e))

    def _report(self, errors: dict[str, KubernetesError | None]) -> None:
        left = {name: str(e) for name, e in errors.items() if e is not None}
        if left:
            self._metrics.api_errors.labels("kubernetes", "delete").inc(len(left))
            self._log.error("not deleted", objects=left)

    # ---- what the metrics say ---------------------------------------------------------------

    def _observe(self, facts: dict[str, NodeFacts], pods: list[dict[str, Any]], now: float) -> None:
        nodes: Counter[tuple[str, ...]] = Counter()
        for name, fact in facts.items():
            word = nodestate.word(fact.state)
            nodeset = self._nodeset(name)
            nodes[(nodeset, word)] += 1
            self._count_transition(name, nodeset, self._words.get(name), word, fact, now)
            self._words[name] = word
        self._metrics.set_gauge(self._metrics.nodes, nodes)
        open_sets = {self._nodeset(n) for n, f in facts.items() if breaker.open_until(f) is not None}
        self._metrics.set_gauge(self._metrics.breaker_open, {(ns.name,): int(ns.name in open_sets)
                                                             for ns in self.config.nodesets})
        phases: Counter[tuple[str, ...]] = Counter()
        for pod in pods:
            meta = pod.get("metadata") or {}
            phase = "Terminating" if meta.get("deletionTimestamp") else (pod.get("status") or {}).get("phase", "Unknown")
            phases[((meta.get("labels") or {}).get(naming.NODESET_LABEL, "none"), phase)] += 1
        self._metrics.set_gauge(self._metrics.pods, phases)
        starting = {(p["metadata"].get("labels") or {}).get(naming.JOB_LABEL) for p in pods
                    if (node := naming.node_of(p)) in facts and nodestate.is_powering_up(facts[node].state)}
        self._metrics.jobs_starting.set(len(starting - {None}))

    def _count_transition(self, node: str, nodeset: str, before: str | None, word: str, fact: NodeFacts,
                          now: float) -> None:
        if before is None or before == word:
            return
        if word == "powering_up":
            self._metrics.resumes.labels(nodeset).inc()
            self._powering_up_since[node] = now
        elif before == "powering_up" and nodestate.is_up(fact.state) and node in self._powering_up_since:
            self._metrics.resume_seconds.labels(nodeset).observe(now - self._powering_up_since.pop(node))
        if word in ("powering_down", "powered_down") and before not in ("powering_down", "powered_down"):
            self._metrics.suspends.labels(nodeset).inc()
            self._powering_up_since.pop(node, None)
        if word == "down" and fact.reason.startswith(f"{NAME}: "):
            self._metrics.failures.labels(nodeset, "down").inc()

    def _nodeset(self, node: str) -> str:
        # Matched once a node, not twice a look: 10,000 hostlist matches cost ~0.1 s a look.
        if node not in self._nodeset_of:
            try:
                self._nodeset_of[node] = self.config.nodeset_for(node).name
            except ConfigError:
                self._nodeset_of[node] = "none"
        return self._nodeset_of[node]


class Watch:
    """The informers, on their own asyncio loop in a background thread (lightkube's async
    client wants a loop it owns for as long as the watches run; the looks stay synchronous)."""

    def __init__(self, config: Config, *, on_change: Callable[[], None], log: Any, metrics: Metrics) -> None:
        self._config = config
        self._on_change = on_change
        self._log = log
        self._metrics = metrics
        self._loop = asyncio.new_event_loop()
        self.pods: Informer | None = None
        self.hosts: Informer | None = None
        self.groups: list[Informer] = []
        self._host_views: dict[str, Any] = {}
        self.list_errors: dict[str, BridgeError] = {}
        """Why an informer's first list failed, by kind, until it listed."""

    def start(self) -> Watch:
        import lightkube

        from bridge.kube import _kubeconfig, exec_command

        settings = self._config.kubernetes
        config = _kubeconfig(settings)
        self._exec = exec_command(config)
        client = lightkube.AsyncClient(config=config, namespace=settings.namespace, field_manager=NAME)
        owner = naming.owner_labels(self._config.slurm.cluster_name)
        self.pods = self._informer(client, _resource("v1", "Pod", "pods", namespaced=True), owner)
        self.hosts = self._informer(client, _resource("v1", "Node", "nodes", namespaced=False), None,
                                    handler=self._on_host)
        self.groups = [self._informer(client, _resource(api_version, kind, plural, namespaced=True), owner)
                       for api_version, kind, plural in _group_kinds(self._config)]
        threading.Thread(target=self._loop.run_forever, name="watch", daemon=True).start()
        for informer in (self.pods, self.hosts, *self.groups):
            asyncio.run_coroutine_threadsafe(self._keep(informer), self._loop)
        return self

    def _informer(self, client: Any, resource: Any, labels: dict[str, str] | None,
                  handler: Callable[[str, Any], None] | None = None) -> Informer:
        def error(stage: str, e: Exception) -> None:
            self._metrics.api_errors.labels("kubernetes", f"{stage} {resource.__name__.lower()}s").inc()

        return Informer(client, resource, handler or (lambda kind, obj: self._on_change()), labels=labels,
                        namespace=self._config.kubernetes.namespace, on_error=error)

    def _on_host(self, kind: str, host: Any) -> None:
        """A Kubernetes node's change matters only if it changes what the plan reads of it:
        kubelets update their node's status every few seconds on large clusters."""
        name = host.metadata.name
        view = None if kind == DELETED else host_view(host.to_dict())
        if self._host_views.get(name) != view:
            self._host_views[name] = view
            self._on_change()

    async def _keep(self, informer: Informer) -> None:
        """List until it works (backing off to a minute: a missing grant or CRD is not fixed
        in a second), then watch forever."""
        from bridge.kube import _credential_error

        wait = 1.0
        while True:
            try:
                await informer.sync()
                break
            except Exception as e:  # noqa: BLE001 - whatever it is, the list is tried again: never a dead informer
                # (a credential plugin failing may pass: a token service's hiccup)
                error = _credential_error(e, self._exec, self._config.kubernetes) or KubernetesError(
                    f"cannot list {informer.kind}s: {e}" if isinstance(e, API_ERRORS)
                    else f"cannot list {informer.kind}s: {type(e).__name__}: {e}")
                self.list_errors[informer.kind] = error
                self._metrics.api_errors.labels("kubernetes", "list").inc()
                self._log.warning("cannot list yet", resource=informer.kind, error=str(error), retry_in=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 60.0)
        self.list_errors.pop(informer.kind, None)
        self._on_change()
        await informer.run()

    def snapshot(self) -> tuple[list[dict] | None, list[dict] | None, list[dict]]:
        """Pods (None until listed), Kubernetes nodes (None until listed), PodGroups."""
        groups = [g for informer in self.groups for g in (_dicts(informer) or [])]
        return _dicts(self.pods), _dicts(self.hosts), groups

    def again(self) -> tuple[list[dict], list[dict] | None]:
        """Pods and Kubernetes nodes as they are now: a look takes them again after it read
        Slurm (the PodGroups are not: their rule waits ``daemon.group_grace``)."""
        return _dicts(self.pods) or [], _dicts(self.hosts)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def _dicts(informer: Informer | None) -> list[dict] | None:
    """What the informer holds, as dicts; None until it has listed."""
    if informer is None or not informer.synced.is_set():
        return None
    return [obj.to_dict() for obj in informer.snapshot()]


def _group_kinds(config: Config) -> list[tuple[str, str, str]]:
    from bridge.gang import POD_GROUP_KINDS

    kinds = {nodeset.gang.kind for nodeset in config.nodesets if nodeset.gang is not None}
    return sorted(POD_GROUP_KINDS[k] for k in kinds if k in POD_GROUP_KINDS)


def _resource(api_version: str, kind: str, plural: str, *, namespaced: bool) -> Any:
    """lightkube's dict-backed class for a kind (one per process; reuse the one registered)."""
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource, get_generic_resource

    found = get_generic_resource(api_version, kind)
    if found is not None:
        return found
    group, _, version = api_version.rpartition("/")
    create = create_namespaced_resource if namespaced else create_global_resource
    try:
        return create(group, version, kind, plural)
    except ValueError:  # a typed class of this kind is registered: use it
        import lightkube.resources.core_v1 as typed

        return getattr(typed, kind)


def run(config: Config, *, log: Any, dry_run: bool = False, once: bool = False,
        slurm: SlurmClient | None = None) -> list[Action]:
    """Run until SIGTERM/SIGINT (or one look with ``once``); the last look's actions."""
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    metrics = Metrics()
    wake, stop = threading.Event(), threading.Event()
    if config.daemon.metrics_address and not once:
        try:
            host, port = metrics.serve(config.daemon.metrics_address)
        except OSError as e:  # the port is taken, the host is not one of this machine's
            raise ConfigError(f"daemon.metrics_address {config.daemon.metrics_address}: cannot listen: "
                              f"{e.strerror or e}") from None
        log.info("metrics served", address=f"{host}:{port}")
    watch = Watch(config, on_change=wake.set, log=log, metrics=metrics).start()
    if not once:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: (stop.set(), wake.set()))
    log.info("daemon started", pid=os.getpid(), dry_run=dry_run)
    actions: list[Action] = []
    try:
        _wait_listed(watch, stop, once=once, timeout=config.kubernetes.timeout * 3)
        with LightkubeApi(config.kubernetes) as kube:
            # A look that fails is tried again at the next tick: no waiting for a lost slurmctld.
            slurm = slurm or CommandSlurm(config.slurm.bin_dir, reread=SLURM_REREAD, lost_controller=0)
            daemon = Daemon(config, slurm=slurm,
                            kube=kube, log=log, metrics=metrics, dry_run=dry_run)
            elector = _elector(config, kube) if config.daemon.in_cluster and not (dry_run or once) else None
            try:
                actions = _loop(daemon, watch, elector, stop=stop, wake=wake, log=log, metrics=metrics, once=once)
            finally:
                if elector is not None:
                    elector.release()
    finally:
        watch.stop()
        if not dry_run and not once:
            heartbeat.stop(config.resume.state_dir)
        log.info("daemon stopped")
    return actions


def _with_pods_made_meanwhile(before: list[dict[str, Any]], after: list[dict[str, Any]],
                              facts: dict[str, NodeFacts], *, cluster: str) -> list[dict[str, Any]]:
    """``before`` and the pods of ``after`` made for a node that had no live pod in ``before``
    and that Slurm showed up or powering up. A Slurm read slower than a pod's start (slurmctld
    busy or just restarted: up to 10 s a call) may see that pod's slurmd registered: with
    ``before`` alone the node would look up without its pod and be given back, requeueing
    its job. A pod deleted meanwhile still counts (from ``before``): a suspend powers its node
    down before it deletes the pod. A pod made for a node Slurm showed powered down is left to
    the next look (it would look like an orphan)."""
    live = {node for p in before if (node := naming.node_of(p)) and naming.is_ours(p, cluster=cluster)
            and not deleting(p)}
    known = {(p.get("metadata") or {}).get("uid") for p in before}
    new = [p for p in after if naming.is_ours(p, cluster=cluster) and (node := naming.node_of(p)) not in live
           and node in facts and nodestate.needs_pod(facts[node].state)
           and (p.get("metadata") or {}).get("uid") not in known]
    return [*before, *new] if new else before


def _loop(daemon: Daemon, watch: Any, elector: Any, *, stop: threading.Event, wake: threading.Event, log: Any,
          metrics: Metrics, once: bool, min_gap: float = MIN_GAP) -> list[Action]:
    """The looks, until ``stop`` is set (one with ``once``): at most one per ``min_gap`` however
    many events wake it, and, with an elector, only while this replica leads. The last look's
    actions."""
    actions: list[Action] = []
    last = -min_gap
    said: bool | None = None

    def still_leads() -> bool:  # asked by the look before it acts
        nonlocal said
        said = _leads(elector, log, metrics, said, still=True)
        return said

    while not stop.is_set():
        gap = min_gap - (time.monotonic() - last)
        if gap > 0 and stop.wait(gap):  # a burst of events: one look, not one per event
            break
        wake.clear()
        if elector is not None and not (said := _leads(elector, log, metrics, said)):
            daemon.pool.forget()  # what another replica does meanwhile is not seen here
            daemon.memory.forget()  # nor how long a condition lasted: a grace restarts, never shortens
            stop.wait(elector.renew_every)  # a standby: another replica acts
            continue
        pods, hosts, groups = watch.snapshot()  # before Slurm's facts, and again after: see daemon.confirm
        try:
            actions = daemon.look(pods or [], hosts, groups, again=watch.again,
                                  may_act=still_leads if elector is not None else None)
        except CredentialsError as e:  # the credentials failed mid-look: a token service's hiccup
            if once:
                raise
            metrics.api_errors.labels("kubernetes", "credentials").inc()
            log.error("look failed: the Kubernetes credentials did not work; trying again", error=str(e))
        last = time.monotonic()
        if once:
            break
        wake.wait(min(daemon.next_look(), elector.renew_every) if elector else daemon.next_look())
    return actions


def _elector(config: Config, kube: Any) -> Any:
    """This replica's side of the Lease (``daemon.in_cluster``); its identity is the pod's name
    (the Deployment gives POD_NAME), else host and pid."""
    import socket

    from bridge import lease

    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"
    return lease.Elector(kube, name=lease.lease_name(config.slurm.cluster_name), namespace=kube.namespace,
                         identity=identity, duration=config.daemon.lease_duration, follows=config.daemon.follow)


def _leads(elector: Any, log: Any, metrics: Metrics, was: bool | None, *, still: bool = False) -> bool:
    """Whether this replica acts now (``still``: on the look it has just made); says so at
    first and when that changes."""
    try:
        leads = elector.still_leads() if still else elector.leads()
    except KubernetesError as e:
        metrics.api_errors.labels("kubernetes", "lease").inc()
        log.warning("cannot renew the lease", lease=elector.name, error=str(e))
        leads = False
    if leads != was:
        log.info("leading" if leads else "standing by", lease=elector.name, identity=elector.identity)
    return leads


def _wait_listed(watch: Watch, stop: threading.Event, *, once: bool, timeout: float) -> None:
    """Until the pods are listed: without them every node would look pod-less. One look
    (``once``) also waits a little for the Kubernetes nodes, and gives up after ``timeout``."""
    assert watch.pods is not None and watch.hosts is not None
    deadline = time.monotonic() + timeout
    while not watch.pods.synced.wait(0.5):
        if stop.is_set():
            return
        if once and time.monotonic() > deadline:
            raise watch.list_errors.get("Pod") or KubernetesError("cannot list the bridge's pods (see the log)")
    if once:
        watch.hosts.synced.wait(max(0.0, deadline - time.monotonic()))


def main(config: Config, *, dry_run: bool, once: bool) -> list[Action]:
    from bridge import log as log_module

    log = log_module.configure(config.log, hook="daemon", pid=os.getpid())
    try:
        return run(config, log=log, dry_run=dry_run, once=once)
    except BridgeError as e:
        log.error("daemon failed", kind=e.kind, error=str(e))
        raise
