"""``slurm-k8s-bridge status``: Slurm's nodes and the bridge's pods in one table.

One row per elastic node that is not simply powered down with no pod and no reason (a failed
resume's cause, a capacity breaker's drain): Slurm's state and reason,
the pod, its phase, its Kubernetes node and age, and a mark ``!`` with what the daemon would do
where the two disagree. The mark comes from the daemon's own plan (:func:`bridge.reconcile.plan`)
with every grace period taken as spent: the table and the daemon cannot tell two stories.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridge import naming, nodestate
from bridge.config import Config
from bridge.reconcile import Memory, plan
from bridge.slurm import NodeFacts


@dataclass(frozen=True)
class Row:
    node: str
    state: str
    reason: str
    pod: str
    phase: str
    k8s_node: str
    age: str
    disagree: str
    """What the daemon would do about it; empty where Slurm and Kubernetes agree."""


def rows(facts: dict[str, NodeFacts], pods: list[dict[str, Any]], hosts: list[dict[str, Any]] | None, *,
         now: float, config: Config, everything: bool = False) -> list[Row]:
    cluster = config.slurm.cluster_name
    ours = {naming.node_of(p): p for p in pods if naming.is_ours(p, cluster=cluster)}
    marks = {a.node: f"{a.kind.replace('_', ' ')}: {a.cause}"
             for a in plan(facts, pods, hosts, now, config, Memory(impatient=True))}
    out = []
    for node in sorted(set(facts) | set(ours)):
        fact, pod = facts.get(node), ours.get(node)
        state = nodestate.word(fact.state) if fact else "unknown"
        if not everything and pod is None and state == "powered_down" and node not in marks and not fact.reason:
            continue  # nothing to say: the usual state of an elastic node
        meta, status = (pod or {}).get("metadata") or {}, (pod or {}).get("status") or {}
        phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
        out.append(Row(node, "+".join(fact.state) if fact else "unknown", fact.reason if fact else "",
                       meta.get("name", ""), phase, ((pod or {}).get("spec") or {}).get("nodeName") or "",
                       _age(meta.get("creationTimestamp"), now), marks.get(node, "")))
    return out


def table(found: list[Row]) -> str:
    header = ("NODE", "STATE", "POD", "PHASE", "K8S NODE", "AGE", "", "REASON / DISAGREEMENT")
    lines = [header] + [(r.node, r.state, r.pod or "-", r.phase or "-", r.k8s_node or "-", r.age or "-",
                         "!" if r.disagree else "", r.disagree or r.reason) for r in found]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in lines).rstrip()


def as_json(found: list[Row]) -> str:
    return json.dumps([asdict(r) for r in found], indent=2)


def _age(stamp: str | None, now: float) -> str:
    if not stamp:
        return ""
    try:
        seconds = now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    return _duration(seconds)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


# ---- warm pools ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolRow:
    pool: str
    nodesets: list[str]
    """Cheapest capacity first: the order the pool powers them up in."""
    min: int
    max: int
    target: int
    """Idle nodes the daemon aims at now, from what it learned (its state file) and this look."""
    idle: int
    starting: int
    busy: int
    powered_down: int
    unusable: int
    """No job, and DOWN, DRAIN, NOT_RESPONDING or held by the capacity breaker: never counted nor
    powered up (a busy node is BUSY whatever its flags)."""
    would_power_up: str
    """The nodes the daemon's next look powers up to reach its target or for a planned job (a
    hostlist). Power-downs and the swap of an idle dearer node for a cheaper one depend on how
    long each node has idled, which only the running daemon knows: not shown."""
    planned: str
    """Powered-down nodes Slurm plans for a pending job due within the horizon (kept up)."""
    idle_hours_last_day: float
    idle_hours_cap: float | None
    capped: bool
    learned: str
    """When the daemon last looked (``12s ago``), ``never`` without a state file, or why it is
    unreadable (the daemon then learns afresh too)."""


def pool_rows(facts: dict[str, NodeFacts], *, now: float, config: Config, slurm: Any) -> list[PoolRow]:
    """The daemon's own warm-pool step (:class:`bridge.pool.Pool`), dry run, from its state files:
    the table and the daemon cannot tell two stories."""
    from bridge import hostlist
    from bridge.config import warm_pools
    from bridge.metrics import Metrics
    from bridge.pool import Pool, free_and_off, usable

    pools = warm_pools(config.nodesets)
    pool = Pool(config, slurm=slurm, log=_Quiet(), metrics=Metrics(), dry_run=True)
    learned = {name: _learned(pool.path(name), now) for name in pools}  # before the step reads them
    out = []
    for decision in pool.step(facts, now):
        members = pools[decision.nodeset]
        mine = [facts[n] for ns in members for n in hostlist.expand(ns.nodes) if n in facts]
        off = [f for f in mine if usable(f) and free_and_off(f)]
        warm = members[0].warm
        out.append(PoolRow(decision.nodeset, [ns.name for ns in members], warm.min, warm.max, decision.target,
                           len(decision.idle), len(decision.starting),
                           sum(nodestate.is_allocated(f.state) for f in mine), len(off),
                           sum(not usable(f) and not nodestate.is_allocated(f.state) for f in mine),
                           hostlist.fold(list(decision.power_up)) if decision.power_up else "",
                           hostlist.fold(list(decision.planned)) if decision.planned else "",
                           round(decision.idle_hours, 2), warm.idle_hours_per_day, decision.capped,
                           learned[decision.nodeset]))
    return out


def pool_nodes(config: Config) -> list[str]:
    from bridge import hostlist
    from bridge.config import warm_pools

    return [n for members in warm_pools(config.nodesets).values() for ns in members for n in hostlist.expand(ns.nodes)]


def pool_table(found: list[PoolRow]) -> str:
    if not found:
        return "no warm pool: no nodeset has warm.max above 0"
    header = ("POOL", "NODESETS", "MIN-MAX", "TARGET", "IDLE", "STARTING", "BUSY", "OFF", "UNUSABLE",
              "IDLE H/24H", "LEARNED", "WOULD POWER UP")
    lines = [header] + [(r.pool, ",".join(r.nodesets), f"{r.min}-{r.max}", str(r.target), str(r.idle),
                         str(r.starting), str(r.busy), str(r.powered_down), str(r.unusable),
                         f"{r.idle_hours_last_day:.1f}" + (f"/{r.idle_hours_cap:g}" if r.idle_hours_cap else "")
                         + (" capped" if r.capped else ""), r.learned,
                         (r.would_power_up or "-") + (f" (planned jobs: {r.planned})" if r.planned else ""))
                        for r in found]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in lines).rstrip()


def pools_as_json(found: list[PoolRow]) -> str:
    return json.dumps([asdict(r) for r in found], indent=2)


def _learned(path: Path, now: float) -> str:
    from bridge.pool import read_state

    try:
        looked = read_state(path).looked  # what the daemon reads, and refuses
    except FileNotFoundError:
        return "never"
    except OSError as e:
        return f"unreadable: {e.strerror}"
    except ValueError:
        return "unreadable: not a state file of this version (the daemon learns afresh)"
    return "never" if looked is None else f"{_duration(now - looked)} ago"


class _Quiet:
    """The pool's logger here: a dry-run look logs nothing (the log file is the daemon's)."""

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = warning = error = _nothing


def read(config: Config) -> tuple[dict[str, NodeFacts], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Slurm's facts of the elastic nodes, the bridge's pods and the Kubernetes nodes (None when
    they cannot be read: cluster-scoped, granted only to the daemon)."""
    import lightkube

    from bridge import hostlist
    from bridge.daemon import _resource
    from bridge.informer import API_ERRORS
    from bridge.kube import LightkubeApi, _kubeconfig
    from bridge.slurm import CommandSlurm

    with LightkubeApi(config.kubernetes) as kube:
        pods = kube.list_pods(naming.owner_labels(config.slurm.cluster_name))
    hosts: list[dict[str, Any]] | None
    try:
        client = lightkube.Client(config=_kubeconfig(config.kubernetes), timeout=config.kubernetes.timeout)
        hosts = [n.to_dict() for n in client.list(_resource("v1", "Node", "nodes", namespaced=False))]
    except (*API_ERRORS, OSError):  # the table is still worth having without the hosts
        hosts = None
    nodes = {n for nodeset in config.nodesets for n in hostlist.expand(nodeset.nodes)}
    nodes |= {n for p in pods if (n := naming.node_of(p))}
    return CommandSlurm(config.slurm.bin_dir).node_facts(sorted(nodes)), pods, hosts
