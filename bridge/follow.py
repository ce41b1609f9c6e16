"""After resume returns: follow each job's pods until its nodes register, or fail it fast.

slurmctld runs one ResumeProgram at a time per call and every job waits on it, so the hook
creates the pods and hands the rest to this process, started in its own session. It looks at
the pods and the Slurm nodes every ``resume.poll`` seconds; a job is done when all its nodes
have registered, and released (:func:`bridge.failure.release_job`) as soon as one pod is
Unschedulable, cannot pull its image, crash-loops or fails, or when ``resume.deadline`` passes:
seconds instead of Slurm's ResumeTimeout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bridge import hostlist, naming
from bridge.config import Config
from bridge.failure import Failure, release_job
from bridge.kube import KubeClient
from bridge.slurm import NodeFacts, SlurmClient

# Container waiting reasons that will not go away by waiting: the job fails now.
LASTING_WAITS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
NOT_REGISTERED = {"POWERING_UP", "NOT_RESPONDING"}
GONE = {"POWERED_DOWN", "POWERING_DOWN", "DOWN"}

Group = tuple[int | None, list[str]]


def spawn(config_path: str, groups: list[Group]) -> None:
    """Start the follower for ``groups`` and return at once."""
    payload = json.dumps([[job, hostlist.fold(nodes)] for job, nodes in groups])
    subprocess.Popen(
        [sys.executable, "-m", "bridge.follow", config_path, payload],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/",
        # slurmctld starts hooks with SIGTERM/SIGINT/SIGHUP blocked; a follower must be stoppable.
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, set()),
    )


def follow(groups: list[Group], *, config: Config, slurm: SlurmClient, kube: KubeClient, log: Any,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[int | None, str]:
    """Follow until every group is up, failed or gone; return each group's end ("up", "failed",
    "gone"), keyed by job id (None for nodes resumed without a job)."""
    deadline = clock() + config.resume.deadline
    pending = {_key(g): g for g in groups}
    ends: dict[Any, str] = {}
    unschedulable_since: dict[str, float] = {}
    while pending:
        pods, facts = _look(pending, config=config, slurm=slurm, kube=kube)
        for key, (job_id, nodes) in list(pending.items()):
            end = _judge(nodes, pods, facts, config=config, now=clock(), since=unschedulable_since)
            if isinstance(end, dict):
                release_job(job_id, nodes, end, config=config, slurm=slurm, kube=kube, log=log)
                end = "failed"
            if end is not None:
                log.info("job followed", job=job_id, nodes=hostlist.fold(nodes), end=end)
                ends[key] = end
                del pending[key]
        if pending and clock() >= deadline:
            for key, (job_id, nodes) in pending.items():
                release_job(job_id, nodes, _late(nodes, pods, config), config=config, slurm=slurm, kube=kube, log=log)
                ends[key] = "failed"
            break
        if pending:
            sleep(config.resume.poll)
    return {key[0]: end for key, end in ends.items()}


def _key(group: Group) -> tuple[int | None, str]:
    return group[0], hostlist.fold(group[1])


def _look(pending: dict[Any, Group], *, config: Config, slurm: SlurmClient,
          kube: KubeClient) -> tuple[dict[str, dict], dict[str, NodeFacts]]:
    nodes = {n for _, group in pending.values() for n in group}
    cluster = config.slurm.cluster_name
    pods = {naming.node_of(p): p for p in kube.list_pods(naming.owner_labels(cluster))
            if naming.node_of(p) in nodes and naming.is_ours(p, cluster=cluster)}
    return pods, slurm.node_facts(sorted(nodes))


def _judge(nodes: list[str], pods: dict[str, dict], facts: dict[str, NodeFacts], *, config: Config,
           now: float, since: dict[str, float]) -> str | dict[str, Failure] | None:
    """"up", "gone", the failures that end the job, or None to keep following."""
    states = {n: set(facts[n].state) if n in facts else {"DOWN"} for n in nodes}
    if all(not (s & (NOT_REGISTERED | GONE)) for s in states.values()):
        return "up"
    if any(s & GONE and not s & NOT_REGISTERED for s in states.values()):
        return "gone"  # Slurm or an admin already took the nodes back
    failures = {}
    for node in nodes:
        if not states[node] & NOT_REGISTERED:
            continue
        pod = pods.get(node)
        failure = (Failure("its pod was deleted before the node registered", transient=True) if pod is None
                   else pod_failure(pod, now=now, since=since, patience=config.resume.unschedulable_after))
        if failure:
            failures[node] = failure
    return failures or None


def pod_failure(pod: dict[str, Any], *, now: float, since: dict[str, float], patience: float) -> Failure | None:
    """Why ``pod`` will not run, if its status already says so."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return Failure(f"pod {name} failed: {status.get('reason', '')} {status.get('message', '')}".strip(), False)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            first = since.setdefault(name, now)
            if now - first >= patience:
                return Failure(f"pod {name} unschedulable: {condition.get('message', '')}".strip(), True)
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in LASTING_WAITS:
            return Failure(f"pod {name}: {container.get('name')}: {waiting['reason']}: "
                           f"{waiting.get('message', '')}".strip(), False)
    return None


def _late(nodes: list[str], pods: dict[str, dict], config: Config) -> dict[str, Failure]:
    from bridge.suspend import pod_problem

    return {n: Failure(f"node did not register within {config.resume.deadline:.0f} s: "
                       + (pod_problem(pods[n]) if n in pods else "no pod"), transient=True) for n in nodes}


def main() -> None:
    """``python -m bridge.follow CONFIG PAYLOAD``, as :func:`spawn` starts it."""
    from bridge import config as config_module, log as log_module
    from bridge.errors import BridgeError
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    config_path, payload = sys.argv[1], sys.argv[2]
    config = config_module.load(config_path)
    groups = [(job, hostlist.expand(nodes)) for job, nodes in json.loads(payload)]
    log = log_module.configure(config.log, hook="follow", pid=os.getpid(),
                               jobs=[job for job, _ in groups], started=dt.datetime.now(dt.timezone.utc).isoformat())
    try:
        with LightkubeApi(config.kubernetes) as kube:
            follow(groups, config=config, slurm=CommandSlurm(config.slurm.bin_dir), kube=kube, log=log)
    except BridgeError as e:
        log.error("follow failed", kind=e.kind, error=str(e))
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
