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

from bridge import hostlist, naming, nodestate
from bridge.config import Config
from bridge.errors import BridgeError
from bridge.failure import Failure, release_job
from bridge.resumefile import Group
from bridge.kube import KubeClient
from bridge.slurm import NodeFacts, SlurmClient, given_back

# Container waiting reasons that will not go away by waiting: the job fails now. The kubelet
# never pulls an image whose policy is Never: a missing one stays missing (ErrImageNeverPull).
LASTING_WAITS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
NOT_REGISTERED = {"POWERING_UP", "NOT_RESPONDING"}
GONE = {"POWERED_DOWN", "POWERING_DOWN", "DOWN"}

# Unschedulable only because the gang's other pods are not there yet (scheduler-plugins
# coscheduling says so when it sees one pod of a group before its siblings): not a failure.
GANG_FORMING = ("cannot find enough sibling pods",)
# Pod failures that say nothing about the pod itself: another try may well work.
PASSING_FAILURES = {"Evicted", "NodeShutdown", "Terminated", "NodeAffinity", "OutOfcpu", "OutOfmemory",
                    "OutOfpods", "Preempting", "UnexpectedAdmissionError"}


def spawn(config_path: str, groups: list[Group]) -> None:
    """Start the follower for ``groups`` (from :func:`bridge.resumefile.groups`), return at once."""
    payload = json.dumps([[list(jobs), hostlist.fold(nodes)] for jobs, nodes in groups])
    subprocess.Popen(
        [sys.executable, "-m", "bridge.follow", os.path.abspath(config_path), payload],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/",
    )


def follow(groups: list[Group], *, config: Config, slurm: SlurmClient, kube: KubeClient, log: Any,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[Any, str]:
    """Follow until every group is up, failed or gone; return each group's end ("up", "failed",
    "gone"), keyed by its first job id (None for a node resumed without a job). A look that
    fails (scontrol slow, the API briefly away) is tried again at the next poll."""
    deadline = clock() + config.resume.deadline
    pending = {_key(g): g for g in groups}
    ends: dict[Any, str] = {}
    unschedulable_since: dict[str, float] = {}
    pods: dict[str, dict] = {}
    while pending:
        try:
            pods, facts = _look(pending, config=config, slurm=slurm, kube=kube)
        except BridgeError as e:
            log.warning("cannot look at the pods and nodes now", error=str(e))
        else:
            for key, (job_ids, nodes) in list(pending.items()):
                ends[key] = _settle(job_ids, nodes, pods, facts, config=config, slurm=slurm, kube=kube, log=log,
                                    now=clock(), since=unschedulable_since)
                if ends[key] is None:
                    del ends[key]
                else:
                    del pending[key]
        if pending and clock() >= deadline:
            for key, (job_ids, nodes) in pending.items():
                release_job(job_ids, nodes, _late(nodes, pods, config), config=config, slurm=slurm, kube=kube, log=log)
                ends[key] = "failed"
            break
        if pending:
            sleep(config.resume.poll)
    return {(key[0][0] if key[0] else None): end for key, end in ends.items()}


def _settle(job_ids: tuple[int, ...], nodes: list[str], pods: dict[str, dict], facts: dict[str, NodeFacts], *,
            config: Config, slurm: SlurmClient, kube: KubeClient, log: Any, now: float,
            since: dict[str, float]) -> str | None:
    end = _judge(nodes, pods, facts, config=config, now=now, since=since)
    if isinstance(end, dict):
        release_job(job_ids, nodes, end, config=config, slurm=slurm, kube=kube, log=log)
        end = "failed"
    if end == "gone" and (left := leftovers(job_ids, nodes, pods, facts)):
        errors = kube.delete_pods(left)
        log.warning("pods made for a job on nodes Slurm took back deleted", jobs=list(job_ids), pods=left,
                    errors={n: str(e) for n, e in errors.items() if e is not None} or None)
    if end is not None:
        log.info("job followed", jobs=list(job_ids), nodes=hostlist.fold(nodes), end=end)
    return end


def leftovers(job_ids: tuple[int, ...], nodes: list[str], pods: dict[str, dict],
              facts: dict[str, NodeFacts]) -> list[str]:
    """Pods the bridge made for ``job_ids`` that stand on nodes Slurm has taken back (powering
    down, or powered down and not allocated) or that the bridge gave back DOWN with its cause. A
    resume that raced its job's failure makes them: the job failed, its pods were deleted (the
    release deletes them before it tells Slurm) and SuspendProgram ran while the resume was
    creating them again; Slurm will not call SuspendProgram for those nodes again, and a DOWN
    node only at ResumeTimeout."""
    if not job_ids:
        return []
    wanted = {str(j) for j in job_ids}
    left = []
    for node in nodes:
        pod, fact = pods.get(node), facts.get(node)
        if pod is None or fact is None or pod["metadata"].get("deletionTimestamp"):
            continue
        taken_back = nodestate.is_powering_down(fact.state) or given_back(fact) or (
            nodestate.is_powered_down(fact.state) and not nodestate.is_allocated(fact.state))
        if taken_back and (pod["metadata"].get("labels") or {}).get(naming.JOB_LABEL) in wanted:
            left.append(pod["metadata"]["name"])
    return sorted(left)


def _key(group: Group) -> tuple[tuple[int, ...], str]:
    return tuple(group[0]), hostlist.fold(group[1])


def _look(pending: dict[Any, Group], *, config: Config, slurm: SlurmClient,
          kube: KubeClient) -> tuple[dict[str, dict], dict[str, NodeFacts]]:
    nodes = {n for _, group in pending.values() for n in group}
    cluster = config.slurm.cluster_name
    pods = naming.pods_of(kube, cluster=cluster, nodes=nodes)
    return pods, slurm.node_facts(sorted(nodes))


def _followed_state(state: tuple[str, ...]) -> set[str]:
    """The node's state flags, with a node allocated while still powered down (its pods made by
    the prolog's early start, ResumeProgram not called yet) counted as powering up: Slurm will
    power it up, it is not gone."""
    from bridge import early

    flags = set(state)
    return (flags - {"POWERED_DOWN"}) | {"POWERING_UP"} if early.cold(tuple(state)) else flags


def _taken_back(state: set[str]) -> bool:
    """Powered down or going there, or DOWN and not on its way up. Slurm 22.05 leaves a node it
    gave up on at ResumeTimeout ``DOWN+CLOUD+POWERED_DOWN+NOT_RESPONDING``: NOT_RESPONDING there
    is no registration to wait for (ResumeFailProgram deletes its pod; the job is requeued)."""
    return bool(state & (GONE - {"DOWN"})) or ("DOWN" in state and not state & NOT_REGISTERED)


def _judge(nodes: list[str], pods: dict[str, dict], facts: dict[str, NodeFacts], *, config: Config,
           now: float, since: dict[str, float]) -> str | dict[str, Failure] | None:
    """"up", "gone", the failures that end the job, or None to keep following."""
    states = {n: _followed_state(facts[n].state) if n in facts else {"DOWN"} for n in nodes}
    if all(not (s & (NOT_REGISTERED | GONE)) for s in states.values()):
        return "up"
    if any(_taken_back(s) for s in states.values()):
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
        why = f"pod {name} failed: {status.get('reason', '')} {status.get('message', '')}".strip()
        return Failure(why, transient=status.get("reason") in PASSING_FAILURES)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable" \
                and not any(w in condition.get("message", "") for w in GANG_FORMING):
            first = since.setdefault(name, now)
            if now - first >= patience:
                return Failure(f"pod {name} unschedulable: {condition.get('message', '')}".strip(), True)
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if crash := crash_loop(container):
            return Failure(f"pod {name}: {container.get('name')}: CrashLoopBackOff: {crash}", False,
                           container=container.get("name"))
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in LASTING_WAITS:
            return Failure(f"pod {name}: {container.get('name')}: {waiting['reason']}: "
                           f"{waiting.get('message', '')}".strip(), False)
    return None


def crash_loop(container: dict[str, Any]) -> str | None:
    """How a container is crash-looping, if its status says so: it exited non-zero twice in a row.

    A 1.36 kubelet shows ``waiting: CrashLoopBackOff`` only for ~80 ms before each restart and
    the exit (``state.terminated``) for the rest of the back-off, so the reason alone is seen
    by luck; restartCount and the exit codes hold for the whole back-off. Why two exits: the
    kubelet restarts at once after the first (it backs off from the second), so a slurmd that
    fails at start fails again within its start-up time; and Slurm 22.05's slurmd exits 1
    when it cannot fetch its config (measured: after ~9 s of connection attempts), which a
    slurmctld briefly away would heal on the second try."""
    restarts = container.get("restartCount") or 0
    state = container.get("state") or {}
    now, last = state.get("terminated") or {}, (container.get("lastState") or {}).get("terminated") or {}
    latest = now or last
    if restarts < 1 or not latest.get("exitCode"):
        return None
    twice = (now and last.get("exitCode")) or state.get("waiting") or restarts >= 2
    if not twice:  # the first restart, under way: it may yet register
        return None
    return f"exit code {latest['exitCode']}"


def _late(nodes: list[str], pods: dict[str, dict], config: Config) -> dict[str, Failure]:
    """The deadline passed: the cause is what the pod says, and slurmd's own last words (a
    slurmd that runs but cannot reach slurmctld says why only in its log; "phase Running"
    says nothing)."""
    from bridge.suspend import main_container, pod_problem

    late = f"node did not register within {config.resume.deadline:.0f} s"
    failures = {}
    for node in nodes:
        pod = pods.get(node)
        problem = pod_problem(pod) if pod else "no pod"
        running = pod and (pod.get("status") or {}).get("phase") == "Running"
        failures[node] = Failure(late if running else f"{late}: {problem}", transient=True,
                                 container=main_container(pod) if pod else None)
    return failures


def main() -> None:
    """``python -m bridge.follow CONFIG PAYLOAD``, as :func:`spawn` starts it."""
    from bridge import config as config_module, log as log_module
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    # slurmctld starts hooks with SIGTERM/SIGINT/SIGHUP blocked, and we inherit the mask:
    # a follower must stop when asked.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    config_path, payload = sys.argv[1], sys.argv[2]
    groups = [(tuple(jobs), hostlist.expand(nodes)) for jobs, nodes in json.loads(payload)]
    try:
        config = config_module.load(config_path)
    except BridgeError:
        return  # the hook that started us has just read it; nothing to report to here
    log = log_module.configure(config.log, hook="follow", pid=os.getpid(),
                               jobs=[j for jobs, _ in groups for j in jobs],
                               started=dt.datetime.now(dt.timezone.utc).isoformat())
    try:
        with LightkubeApi(config.kubernetes) as kube:
            follow(groups, config=config, slurm=CommandSlurm(config.slurm.bin_dir), kube=kube, log=log)
    except BridgeError as e:
        log.error("follow failed", kind=e.kind, error=str(e))
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
