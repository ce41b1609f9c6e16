"""Early start: a job's pods from the moment slurmctld allocates its powered-down nodes.

Slurm allocates powered-down CLOUD nodes to a job (``MIXED+CLOUD+POWERED_DOWN``) and starts
PrologSlurmctld at once; its power-save thread calls ResumeProgram only at its next tick
(``power_save_interval``: 10 s by default, 1 s in the README's slurm.conf). slurm-k8s-prolog
therefore creates the job's pods itself, through the same flow as the resume hook
(:func:`bridge.resume.resume`) and follows them as the hook does (a follower, or the daemon);
the hook that follows finds them (a repeated resume creates nothing twice) and leaves them to
that follower, which has all of the job's nodes (the hook may be called for only the nodes that
did not register first). A failure here takes the resume hook's own path: the job's nodes are
given back to Slurm with the cause and the job is requeued.

Nothing may be left behind by a job that goes away in between (scancel before ResumeProgram
ran: Slurm then never powers the nodes up, and so never calls SuspendProgram for them).
slurmctld kills a cancelled job's PrologSlurmctld with SIGKILL, so the clean-up cannot live in
the prolog: a small guard process in a session of its own holds the read end of a pipe whose
write end only the prolog has. When the prolog ends, however it ends, the guard takes one look:
a node this early start gave a pod that Slurm still has powered down (not POWERING_UP: once
ResumeProgram ran, Slurm owns the node and suspends it as usual) while the job is no longer
CONFIGURING or RUNNING gets its pod deleted — only the bridge's own pod made for that job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO, Any

from bridge import nodestate

GUARD_STARTED = "early start guard"


def cold(state: tuple[str, ...]) -> bool:
    """Allocated while still powered down, ResumeProgram not yet called: the node's pod may be
    created now. A node powering down (SuspendProgram under way) is left to the resume hook,
    which waits for the old pod to go."""
    return (nodestate.is_powered_down(state) and nodestate.is_allocated(state)
            and not nodestate.is_powering_up(state) and not nodestate.is_powering_down(state))


def forgotten(state: tuple[str, ...]) -> bool:
    """Powered down with no power-up under way: Slurm will not call SuspendProgram for it."""
    return nodestate.is_powered_down(state) and not nodestate.is_powering_up(state)


def start(job_id: int, nodes: list[str], *, config: Any, slurm: Any, kube_factory: Any, log: Any,
          facts: dict[str, Any] | None = None) -> list[str]:
    """Create the pods of the job's cold elastic nodes; return the nodes whose pods this call
    created (the guard's to clean up). Nodes already up, or that no nodeset names (static nodes
    of a mixed job), cost one Slurm read and nothing else: the API client is not even built.
    ``facts``: the nodes' facts as the caller has just read them (the prolog), else read here."""
    if facts is None:
        facts = slurm.node_facts(nodes)
    wanted = [n for n in nodes if n in facts and cold(facts[n].state) and config.is_elastic(n)]
    if not wanted:
        return []
    from bridge import resume
    from bridge.resumefile import JobRequest, ResumeRequest

    from bridge.hooks import follow_created

    request = ResumeRequest(nodes=tuple(wanted), jobs=(JobRequest(job_id, tuple(wanted), tuple(nodes)),))
    with kube_factory() as kube:
        outcome = resume.resume(wanted, config=config, slurm=slurm, kube=kube, request=request, log=log)
        log.info("early start", created=outcome.created, existing=outcome.existing, failed=sorted(outcome.failed))
        follow_created(outcome, request, config=config, kube=kube, log=log)
    return [n for n in outcome.created if n in outcome.up()]


def clean_up(job_id: int, nodes: list[str], *, config: Any, slurm: Any, kube_factory: Any, log: Any) -> list[str]:
    """After the prolog ended: delete the pods this job's early start made for nodes Slurm has
    forgotten while the job went away. Returns the nodes whose pods were deleted."""
    from bridge import naming

    facts = slurm.node_facts(nodes)
    left = [n for n in nodes if n in facts and forgotten(facts[n].state)]
    if not left:
        return []
    job = slurm.job_state(job_id)
    if job is not None and job[0] in ("CONFIGURING", "RUNNING"):
        return []
    cluster = config.slurm.cluster_name
    deleted = []
    with kube_factory() as kube:
        for node in left:
            name = naming.pod_name(cluster, node)
            pod = kube.get_pod(name)
            labels = ((pod or {}).get("metadata") or {}).get("labels") or {}
            if pod is None or not naming.is_ours(pod, cluster=cluster, node=node) \
                    or labels.get(naming.JOB_LABEL) != str(job_id):
                continue
            if kube.delete_pods([name])[name] is None:
                deleted.append(node)
    log.info("early start cleaned up", job_state=job[0] if job else None, deleted=deleted)
    return deleted


def spawn_guard(job_id: int, nodes: list[str]) -> IO[bytes]:
    """Start the guard for ``nodes``; return the pipe end the prolog keeps open until it exits
    (it is never written to: the guard waits for end of file)."""
    guard = subprocess.Popen(
        [sys.executable, "-m", "bridge.early", str(job_id), ",".join(nodes)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, env=os.environ.copy())
    assert guard.stdin is not None
    return guard.stdin


def guard_main(argv: list[str]) -> int:
    """``python -m bridge.early JOB NODE,NODE...``: wait for the prolog, then clean up."""
    from bridge import config as config_module, log as log_module
    from bridge.errors import BridgeError
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    job_id, nodes = int(argv[0]), argv[1].split(",")
    while sys.stdin.buffer.read(4096):
        pass
    log = None
    try:
        config = config_module.load(None)
        log = log_module.configure(config.log, hook="early-start", jobs=[job_id])
        clean_up(job_id, nodes, config=config, slurm=CommandSlurm(config.slurm.bin_dir),
                 kube_factory=lambda: LightkubeApi(config.kubernetes), log=log)
    except BridgeError as e:
        if log is not None:
            log.error("early start clean-up failed", kind=e.kind, error=str(e))
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(guard_main(sys.argv[1:]))
