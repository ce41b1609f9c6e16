"""The programs slurm.conf names: ResumeProgram, SuspendProgram, ResumeFailProgram.

slurmctld runs them with the hostlist as argv[1], no PATH, and only ``SLURM_CONF`` (and
``SLURM_RESUME_FILE``) in the environment; every elastic job waits on the resume hook, so
this module imports nothing heavy until it knows it has work, and reads the resume file
before anything else (it is a descriptor of slurmctld's that does not outlive the hook).

Every expected failure ends as one line on stderr, one JSON log line and a sysexits code
(:mod:`bridge.errors`); when resume fails, its nodes are set DOWN with the cause so Slurm
requeues the jobs rather than losing them.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bridge.errors import BridgeError, PartialFailure, ResumeFileError, ResumeFileGone, SlurmError, UsageError


def ensure_stdio() -> None:
    """slurmctld (slurmscriptd) starts hooks with stdin, stdout and stderr closed; Python then
    has ``sys.stderr = None`` and the first print fails. Point the three at /dev/null."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))


EX_IOERR = 74
_OUTPUT_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EBADF})


def output_failed(prog: str, error: BaseException) -> int | None:
    """``error`` is the output's (a reader that went away, a full disk): say so in one line
    where stderr still works, keep Python's exit-time flush quiet, and return EX_IOERR;
    None for any other error."""
    if not isinstance(error, OSError) or error.errno not in _OUTPUT_ERRNOS:
        return None
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())  # what is still buffered goes nowhere, without a second error
        os.close(null)
    except (OSError, ValueError):
        pass
    try:
        print(f"{prog}: output: cannot write: {error.strerror}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return EX_IOERR


def resume_main() -> None:
    from bridge import resumefile

    started = time.monotonic()
    ensure_stdio()
    try:
        request = resumefile.read_env()
    except BridgeError as e:
        request, early = None, e
    else:
        early = None
    jobs = [job.job_id for job in request.jobs] if request is not None else []
    sys.exit(run_hook("resume", lambda ctx: _resume(ctx, request, early), started=started, jobs=jobs))


def suspend_main() -> None:
    ensure_stdio()
    sys.exit(run_hook("suspend", _suspend, started=time.monotonic()))


def resume_fail_main() -> None:
    ensure_stdio()
    sys.exit(run_hook("resume-fail", _resume_fail, started=time.monotonic()))


class HookContext:
    """What every hook has once its arguments and config are read."""

    def __init__(self, hook: str, nodes: list[str], config: Any, log: Any) -> None:
        self.hook, self.nodes, self.config, self.log = hook, nodes, config, log

    def slurm(self) -> Any:
        from bridge.slurm import CommandSlurm

        return CommandSlurm(self.config.slurm.bin_dir)

    def kube(self) -> Any:
        from bridge.kube import LightkubeApi

        return LightkubeApi(self.config.kubernetes)


USAGE = {
    "resume": "ResumeProgram: create a slurmd pod for each node of HOSTLIST; reads $SLURM_RESUME_FILE",
    "suspend": "SuspendProgram: delete the bridge's pods of the nodes of HOSTLIST",
    "resume-fail": "ResumeFailProgram: clean up the pods of nodes that hit ResumeTimeout",
}
EXIT_CODES = ("exit codes: 0 done, 64 usage (malformed hostlist), 65 template or resume file, "
              "68 a node Slurm does not know, 69 Slurm or Kubernetes unavailable, 74 output not written, "
              "75 some nodes failed (they were given back to Slurm), 77 forbidden, 78 config")


def _usage(hook: str) -> str:
    return (f"usage: slurm-k8s-{hook} HOSTLIST\n{USAGE[hook]}.\nHOSTLIST is a Slurm hostlist, e.g. "
            f"'elastic[1-4],gpu01'. Config: $SLURM_K8S_BRIDGE_CONFIG, else k8s-bridge.yaml "
            f"beside $SLURM_CONF, else /etc/slurm/k8s-bridge.yaml.\n{EXIT_CODES}.")


def run_hook(hook: str, body: Callable[[HookContext], None], *, argv: list[str] | None = None,
             started: float | None = None, **context: Any) -> int:
    """Run one hook call; return its exit code. Expected errors never show a traceback.
    ``context`` (e.g. the job ids) is bound to every log line of the call."""
    from bridge import config as config_module, hostlist, log as log_module

    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        try:
            print(_usage(hook), flush=True)
        except OSError as e:
            if (code := output_failed(f"slurm-k8s-{hook}", e)) is None:
                raise
            return code
        return 0
    started = time.monotonic() if started is None else started
    log = None
    cfg = None
    nodes: list[str] = []
    try:
        _check_arguments(argv)
        nodes = hostlist.expand(argv[0])
        cfg = config_module.load(None)
        log = log_module.configure(cfg.log, hook=hook, nodes=argv[0], **context)
        body(HookContext(hook, nodes, cfg, log))
    except BridgeError as e:
        log = log or _error_log(hook, argv, context)
        _report(hook, e, log, nodes)
        if hook == "resume" and nodes and not isinstance(e, PartialFailure):
            _down_after_error(nodes, e, log, cfg)
        return e.exit_code
    except Exception as e:
        # A bug: it keeps its traceback, but the jobs waiting on these nodes are not left to
        # ResumeTimeout.
        if log is not None:
            log.exception("hook crashed", outcome="bug")
        if hook == "resume" and nodes:
            bug = BridgeError(f"internal error, see the bridge's log: {type(e).__name__}: {e}")
            _down_after_error(nodes, bug, log, cfg)
        raise
    if log is not None:
        log.info("hook finished", outcome="ok", seconds=round(time.monotonic() - started, 3))
    return 0


def _check_arguments(argv: list[str]) -> None:
    if len(argv) != 1:
        raise UsageError(f"expected one argument, a Slurm hostlist; got {len(argv)} (see --help)")
    if argv[0].startswith("-"):
        raise UsageError(f"unknown option {argv[0][:40]!r} (see --help)")


def _error_log(hook: str, argv: list[str], context: dict[str, Any]) -> Any:
    """A logger for an error found before the config was read (a malformed hostlist): the
    config's log settings if it can be read, else the defaults, so the error has its JSON line."""
    from bridge import config as config_module, log as log_module

    try:
        settings = config_module.load(None).log
    except BridgeError:
        settings = None
    return log_module.configure(settings, hook=hook, nodes=argv[0] if argv else "", **context)


def _report(hook: str, error: BridgeError, log: Any, nodes: list[str]) -> None:
    print(f"slurm-k8s-{hook}: {error.kind}: {error}", file=sys.stderr)
    if log is not None:
        log.error("hook failed", outcome="error", kind=error.kind, error=str(error), exit_code=error.exit_code)


def _down_after_error(nodes: list[str], error: BridgeError, log: Any, cfg: Any) -> None:
    """The whole resume failed before any pod could be planned (no config, API down...):
    give the nodes back to Slurm so their jobs are requeued now, not after ResumeTimeout —
    powered down if the cause may pass, DOWN with the cause if an admin must act. Without a
    usable config, scontrol is looked for where its slurm.bin_dir says, else in Debian's place."""
    from bridge import config as config_module
    from bridge.failure import classify
    from bridge.slurm import CommandSlurm

    failure = classify(error)
    slurm = CommandSlurm(cfg.slurm.bin_dir if cfg else config_module.slurm_bin_dir_anyway())
    try:
        if failure.transient:
            slurm.power_down(nodes, failure.cause)
        else:
            slurm.set_down(nodes, failure.cause)
    except BridgeError as e:
        print(f"slurm-k8s-resume: slurm: could not mark nodes down: {e}", file=sys.stderr)
        if log is not None:
            log.error("could not mark nodes down", error=str(e))


def _resume(ctx: HookContext, request: Any, early: BridgeError | None) -> None:
    from bridge import resume

    if isinstance(early, ResumeFileGone):
        request = _request_from_slurm(ctx, early)
    elif early is not None:
        raise early
    with ctx.kube() as kube:
        outcome = resume.resume(ctx.nodes, config=ctx.config, slurm=ctx.slurm(), kube=kube,
                                request=request, log=ctx.log)
        follow_created(outcome, request, config=ctx.config, kube=kube, log=ctx.log)
    if outcome.failed:
        every = not outcome.created and not outcome.existing
        raise PartialFailure(f"{'all ' if every else ''}{len(outcome.failed)} of {len(ctx.nodes)} node(s) failed: "
                             + "; ".join(f"{_short(n)}: {c}" for n, c in list(outcome.failed.items())[:3]),
                             failed=outcome.failed, exit_code=outcome.exit_code())


GONE_WAIT = 60.0
"""How long a hook whose slurmctld died asks the restarted one which jobs its nodes are for."""


def _request_from_slurm(ctx: HookContext, gone: ResumeFileGone) -> Any:
    """The jobs of this call from Slurm's queue, when the slurmctld that called the hook died
    before the hook read its file: the restarted slurmctld still counts the nodes POWERING_UP
    for those jobs, and failing them would requeue jobs that can run."""
    from bridge import resumefile

    import stamina

    try:
        # slurmctld may still be down (systemd restarts it within seconds): ask for a while.
        for attempt in stamina.retry_context(on=SlurmError, attempts=None, timeout=GONE_WAIT, wait_initial=0.5,
                                             wait_max=5.0):
            with attempt:
                jobs = ctx.slurm().jobs_on(ctx.nodes)
    except SlurmError as e:
        raise ResumeFileError(f"{gone}; and Slurm could not say which jobs the nodes are for: {e}") from None
    request = resumefile.from_slurm(ctx.nodes, jobs)
    ctx.log.warning("resume file gone with the slurmctld that wrote it; jobs read from Slurm",
                    error=str(gone), jobs=[job.job_id for job in request.jobs])
    return request


def follow_created(outcome: Any, request: Any, *, config: Any, kube: Any, log: Any) -> None:
    """Follow the pods this call created, until their nodes register or the job is released:
    hand them to the daemon while it follows jobs, else start a follower. Pods the call found
    already made for the job (``outcome.existing``) are followed by the call that made them, e.g.
    the prolog's early start (:mod:`bridge.early`): a job's pods made there and registered before
    ResumeProgram ran are not in the hook's call at all, so the prolog's follower, which has the
    whole job, is the one that can release all of it."""
    nodes = [n for n in outcome.up() if n not in outcome.existing]
    if not config.resume.follow or not nodes:
        return
    if by := _daemon_follows(config, kube):
        log.info("following left to the daemon", by=by)
        return
    from bridge import follow, hostlist
    from bridge.resumefile import groups

    try:
        follow.spawn(config.path, groups(nodes, request))
    except OSError as e:  # no process to be had now: the pods stand, and ResumeTimeout still covers them
        log.warning("cannot start the follower; a pod that fails is found at ResumeTimeout",
                    nodes=hostlist.fold(nodes), error=str(e))


def _daemon_follows(config: Any, kube: Any) -> str:
    """Where the hook learnt that a daemon follows its jobs ("" if none does): the daemon's
    Lease when it runs in the cluster (one GET), else its heartbeat file (one stat)."""
    daemon = config.daemon
    if daemon.in_cluster:
        from bridge import lease

        name = lease.lease_name(config.slurm.cluster_name)
        return f"lease {kube.namespace}/{name}" if lease.hand_over(kube, name) else ""
    from bridge import heartbeat

    state_dir = config.resume.state_dir
    return f"heartbeat {heartbeat.path(state_dir)}" if heartbeat.hand_over(state_dir, daemon.heartbeat_fresh) else ""


def _short(node: str) -> str:
    """A node name as one line shows it: a 10,000-character name stays readable."""
    return node if len(node) <= 60 else f"{node[:40]}... ({len(node)} characters)"


def _owing_kube(ctx: HookContext) -> Any:
    """The Kubernetes client of a hook whose nodes Slurm counts off whatever it does (suspend,
    resume-fail): if there can be none (a kubeconfig error), their pods are owed, not forgotten,
    and resume-fail still puts back the causes the bridge had given."""
    from bridge import suspend

    try:
        return ctx.kube()
    except BridgeError:
        suspend.owe(ctx.nodes, config=ctx.config, log=ctx.log)
        if ctx.hook == "resume-fail":
            suspend.restore_causes(ctx.nodes, config=ctx.config, slurm=ctx.slurm(), log=ctx.log)
        raise


def _suspend(ctx: HookContext) -> None:
    from bridge import suspend

    with _owing_kube(ctx) as kube:
        outcome = suspend.suspend(ctx.nodes, config=ctx.config, kube=kube, log=ctx.log, slurm=ctx.slurm())
    if outcome.failed:
        raise PartialFailure(f"{len(outcome.failed)} pod(s) not deleted", failed=outcome.failed)


def _resume_fail(ctx: HookContext) -> None:
    from bridge import suspend

    with _owing_kube(ctx) as kube:
        outcome = suspend.resume_failed(ctx.nodes, config=ctx.config, slurm=ctx.slurm(), kube=kube, log=ctx.log)
    if outcome.failed:
        raise PartialFailure(f"{len(outcome.failed)} pod(s) not deleted", failed=outcome.failed)
