"""PrologSlurmctld: hold a job's start until its resumed nodes have registered.

In Slurm 22.05 a batch job on freshly resumed nodes stays CONFIGURING until a periodic pass
that runs every 30 s, however fast the nodes come up; srun does not wait. A PrologSlurmctld
that returns the moment the nodes are up ends CONFIGURING at once: sbatch → running drops from
a median 26.6 s to 2.0 s (measured here; see README). For jobs on nodes that are already up
it returns after one ``scontrol`` call.

slurmctld gives PrologSlurmctld no ``SLURM_CONF``; the prolog takes it from the command line
of the slurmctld that started it (``-f``), so a slurm.conf outside /etc/slurm needs no wrapper.

It never fails a job: on timeout, or when the job left CONFIGURING/RUNNING (cancelled,
requeued), it exits 0 and leaves the decision to Slurm's own ResumeTimeout.
"""

from __future__ import annotations

import os
import sys
import time

NOT_READY = {"POWERING_UP", "POWERED_DOWN", "POWER_DOWN", "NOT_RESPONDING", "POWERING_DOWN"}
POLL = 0.2


def main() -> None:
    from bridge.hooks import ensure_stdio

    ensure_stdio()
    if not os.environ.get("SLURM_CONF"):
        conf = controller_slurm_conf(os.getppid())
        if conf:
            os.environ["SLURM_CONF"] = conf  # for scontrol, and the bridge config beside it
    job_id, nodelist = os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_JOB_NODELIST", "")
    guard = start_early(job_id, nodelist)  # noqa: F841 (open until this process ends: see bridge.early)
    sys.exit(wait_for_nodes(job_id, nodelist))


def start_early(job_id: str, nodelist: str) -> object | None:
    """Create the job's pods now if its nodes are still powered down (``resume.early_start``);
    returns the guard's pipe, to be held open until the prolog exits, or None. Never fails the
    job: an error is logged, and the resume hook that follows tries again."""
    from bridge import config as config_module, early, hostlist, log as log_module
    from bridge.errors import BridgeError
    from bridge.slurm import CommandSlurm

    if not job_id.isdigit() or not nodelist:
        return None
    log = None
    try:
        config = config_module.load(None)
        if not config.resume.early_start:
            return None
        log = log_module.configure(config.log, hook="prolog", jobs=[int(job_id)])

        def kube_factory() -> object:
            from bridge.kube import LightkubeApi

            return LightkubeApi(config.kubernetes)

        created = early.start(int(job_id), hostlist.expand(nodelist), config=config,
                              slurm=CommandSlurm(config.slurm.bin_dir), kube_factory=kube_factory, log=log)
        return early.spawn_guard(int(job_id), created) if created else None
    except BridgeError as e:
        print(f"slurm-k8s-prolog: early start: {e.kind}: {e}", file=sys.stderr)
        if log is not None:
            log.error("early start failed", kind=e.kind, error=str(e))
    except Exception as e:  # a bug: logged with its traceback, the job still starts (resume creates)
        print(f"slurm-k8s-prolog: early start: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        if log is not None:
            log.exception("early start crashed", outcome="bug")
    return None


def controller_slurm_conf(pid: int, proc: str = "/proc") -> str | None:
    """The ``-f FILE`` of the slurmctld among ``pid`` and its ancestors (the prolog's parent is
    slurmctld, or slurmscriptd, a fork of it with its command line); None when there is none,
    and Slurm's commands then read their default slurm.conf, as slurmctld did."""
    for _ in range(4):
        try:
            argv = open(f"{proc}/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
            status = open(f"{proc}/{pid}/status").read()
        except OSError:
            return None
        if "slurmscriptd" not in argv[0] and os.path.basename(argv[0]).startswith("slurmctld"):
            for i, arg in enumerate(argv):
                if arg == "-f" and i + 1 < len(argv):
                    return argv[i + 1]
                if arg.startswith("-f") and len(arg) > 2:
                    return arg[2:]
            return None
        # slurmscriptd renames itself ("slurmctld: slurmscriptd"), losing -f: ask its parent.
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "0")
        pid = int(ppid)
        if pid <= 1:
            return None
    return None


def wait_for_nodes(job_id: str, nodelist: str) -> int:
    from bridge import config as config_module, hostlist
    from bridge.errors import BridgeError
    from bridge.slurm import CommandSlurm

    if not nodelist:
        return 0
    try:
        settings = config_module.load(None).slurm
        bin_dir, timeout = settings.bin_dir, settings.prolog_timeout
    except BridgeError:
        bin_dir, timeout = "/usr/bin", 300.0
    slurm = CommandSlurm(bin_dir)
    nodes = hostlist.expand(nodelist)
    deadline = time.monotonic() + timeout
    checked_job = time.monotonic()
    try:
        while time.monotonic() < deadline:
            facts = slurm.node_facts(nodes)
            if not any(NOT_READY & set(f.state) for f in facts.values()):
                return 0
            if time.monotonic() - checked_job > 1.0:
                if job_id and not slurm.job_waiting(job_id):
                    return 0
                checked_job = time.monotonic()
            time.sleep(POLL)
    except BridgeError as e:
        print(f"slurm-k8s-prolog: {e.kind}: {e}", file=sys.stderr)
    return 0
