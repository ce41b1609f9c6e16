"""PrologSlurmctld: hold a job's start until its resumed nodes have registered.

In Slurm 22.05 a batch job on freshly resumed nodes stays CONFIGURING until a periodic pass
that runs every 30 s, however fast the nodes come up; srun does not wait. A PrologSlurmctld
that returns the moment the nodes are up ends CONFIGURING at once: sbatch → running drops from
a median 26.6 s to 2.0 s (measured here; see README). For jobs on nodes that are already up
it returns after one Slurm read, and for a job on nodes no nodeset names (a static partition's:
PrologSlurmctld runs for every job of the cluster) without any.

slurmctld gives PrologSlurmctld no ``SLURM_CONF``; the prolog takes it from the command line
of the slurmctld that started it (``-f``), so a slurm.conf outside /etc/slurm needs no wrapper.

It never fails a job: on timeout, or when the job left CONFIGURING/RUNNING (cancelled,
requeued), it exits 0 and leaves the decision to Slurm's own ResumeTimeout.

Many jobs resumed at once run as many prologs. Each polling Slurm on its own (a node read every
0.2 s, a job read every second), 93 prologs waiting for their pods cost slurmctld 203 reads/s
and saturated it (benchmarks/concurrent_jobs.py --kube-cpus 8; README, Many jobs at once). So after its first look the prologs share their looks
through a :class:`Board` in the bridge's state dir: whichever prolog finds the board older than
``POLL`` takes its lock and reads, in one call, the nodes of every waiting prolog and, every
``JOB_POLL`` seconds, the jobs still CONFIGURING; the others wait for its answer and read the
file. Slurm then answers ~6 reads/s however many jobs wait, and each prolog still sees its
nodes within ``POLL`` of the look that found them up. Without a writable state dir a prolog polls alone, backing off from
``POLL`` to ``MAX_POLL``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NOT_READY = {"POWERING_UP", "POWERED_DOWN", "POWER_DOWN", "NOT_RESPONDING", "POWERING_DOWN"}
POLL = 0.2
"""Seconds between two looks at the waiting jobs' nodes (one look for all the prologs)."""
JOB_POLL = 1.0
"""Seconds between two looks at which jobs still wait (cancelled or requeued ones let go)."""
MAX_POLL = 2.0
"""A prolog polling alone (no board) backs off from ``POLL`` to this."""
BOARD = "prolog-board"
_HELD: list[object] = []
"""The early start guard's pipe: never closed by this process, so it closes when the process ends."""


def main() -> None:
    from bridge.hooks import ensure_stdio

    ensure_stdio()
    if sys.argv[1:] in (["-h"], ["--help"]):  # a person; slurmctld passes no arguments (others are ignored:
        # a prolog that failed on them would fail every job)
        print("usage: slurm-k8s-prolog\nPrologSlurmctld: create a job's pods on powered-down nodes (early start) "
              "and hold its start until they registered; reads SLURM_JOB_ID and SLURM_JOB_NODELIST from the "
              "environment slurmctld gives it. Never fails a job: exit 0.")
        sys.exit(0)
    if not os.environ.get("SLURM_CONF"):
        conf = controller_slurm_conf(os.getppid())
        if conf:
            os.environ["SLURM_CONF"] = conf  # for scontrol, and the bridge config beside it
    try:
        code = run(os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_JOB_NODELIST", ""))
    except Exception as e:  # a bug: one line in slurmctld's log, and the job still starts
        print(f"slurm-k8s-prolog: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        code = 0
    sys.exit(code)


def run(job_id: str, nodelist: str, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> int:
    """The prolog of one job: exit status 0 once its elastic nodes are up (or on timeout, or when
    the job no longer waits). PrologSlurmctld runs for every job of the cluster, and a job
    waits for it: a job on no nodeset's nodes costs no Slurm read, one on elastic nodes already
    up (a warm pool's) one read, shared by the early start and the wait."""
    from bridge import config as config_module, hostlist
    from bridge.errors import BridgeError
    from bridge.slurm import CommandSlurm

    if not nodelist:
        return 0
    try:
        config = config_module.load(None)
    except BridgeError as e:  # waits for every node of the job, with the defaults
        print(f"slurm-k8s-prolog: {e.kind}: {e}", file=sys.stderr)
        config = None
    try:
        nodes = hostlist.expand(nodelist)
    except BridgeError as e:
        print(f"slurm-k8s-prolog: {e.kind}: {e}", file=sys.stderr)
        return 0
    # Only the bridge's ResumeProgram powers nodes up, and only a nodeset's: the others are up.
    elastic = [n for n in nodes if config.is_elastic(n)] if config is not None else nodes
    if not elastic:
        return 0
    slurm = CommandSlurm(config.slurm.bin_dir if config else "/usr/bin")
    try:
        facts = slurm.node_facts(elastic)
    except BridgeError as e:
        print(f"slurm-k8s-prolog: {e.kind}: {e}", file=sys.stderr)
        return 0
    if ready(facts):
        return 0
    guard = start_early(job_id, nodes, facts, config, slurm) if config else None
    if guard is not None:
        _HELD.append(guard)  # open until this process ends, however it ends (see bridge.early)
    timeout = config.slurm.prolog_timeout if config else 300.0
    return wait_for_nodes(job_id, elastic, slurm, timeout=timeout, state_dir=config.resume.state_dir if config else "",
                          clock=clock, sleep=sleep)


def start_early(job_id: str, nodes: list[str], facts: dict[str, Any], config: Any, slurm: Any) -> object | None:
    """Create the job's pods now if its nodes are still powered down (``resume.early_start``);
    returns the guard's pipe, to be held open until the prolog exits, or None. Never fails the
    job: an error is logged, and the resume hook that follows tries again."""
    from bridge import early, log as log_module
    from bridge.errors import BridgeError

    if not job_id.isdigit() or not config.resume.early_start \
            or not any(early.cold(f.state) for f in facts.values()):
        return None
    log = None
    try:
        log = log_module.configure(config.log, hook="prolog", jobs=[int(job_id)])

        def kube_factory() -> object:
            from bridge.kube import LightkubeApi

            return LightkubeApi(config.kubernetes)

        created = early.start(int(job_id), nodes, config=config, slurm=slurm, kube_factory=kube_factory,
                              log=log, facts=facts)
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


def wait_for_nodes(job_id: str, nodes: list[str], slurm: Any, *, timeout: float, state_dir: str,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until ``nodes`` are up, the job no longer waits, or ``timeout`` s passed; always 0."""
    from bridge import hostlist
    from bridge.errors import BridgeError

    deadline = clock() + timeout
    try:
        board = Board.open(state_dir, slurm, timeout)
        if board is None:
            return _wait_alone(slurm, job_id, nodes, deadline, clock=clock, sleep=sleep)
        with board.waiting(job_id, hostlist.fold(nodes)):
            checked_job = clock()
            while clock() < deadline:
                sleep(POLL)
                states, configuring = board.look(nodes)
                if all_up(states, nodes):
                    return 0
                # The shared list says the job left CONFIGURING: its own read says whether it
                # was cancelled or requeued (or only runs already), at most once per JOB_POLL.
                if job_id and configuring is not None and job_id not in configuring \
                        and clock() - checked_job >= JOB_POLL:
                    if not slurm.job_waiting(job_id):
                        return 0
                    checked_job = clock()
    except BridgeError as e:
        print(f"slurm-k8s-prolog: {e.kind}: {e}", file=sys.stderr)
    except OSError as e:  # the board's files: the job only starts at Slurm's own next pass
        print(f"slurm-k8s-prolog: state dir: {e}", file=sys.stderr)
    return 0


def ready(facts: dict[str, Any]) -> bool:
    return not any(NOT_READY & set(f.state) for f in facts.values())


def all_up(states: dict[str, list[str]], nodes: list[str]) -> bool:
    return not any(NOT_READY & set(states.get(n, ())) for n in nodes)


def _wait_alone(slurm: Any, job_id: str, nodes: list[str], deadline: float, *,
                clock: Callable[[], float], sleep: Callable[[float], None]) -> int:
    """Poll this job's nodes alone, the pause growing from POLL to MAX_POLL."""
    pause, checked_job = POLL, clock()
    while clock() < deadline:
        sleep(pause)
        pause = min(MAX_POLL, pause * 1.25)
        if ready(slurm.node_facts(nodes)):
            return 0
        if job_id and clock() - checked_job >= JOB_POLL:
            if not slurm.job_waiting(job_id):
                return 0
            checked_job = clock()
    return 0


class Board:
    """The waiting prologs' shared look at Slurm: ``<state_dir>/prolog-board/``, holding

    * ``waiting/<job>``: the nodes a waiting prolog waits for (removed when it returns; one older
      than its timeout is a killed prolog's and is ignored);
    * ``look.json``: the last look, ``{"time", "states": {node: [state, flag, ...]},
      "jobs_time", "configuring": [job, ...]}``, replaced whole (a reader never sees half);
    * ``lock``: held by the one prolog reading Slurm.
    """

    def __init__(self, directory: Path, slurm: Any, timeout: float, *,
                 now: Callable[[], float] = time.time) -> None:
        self.dir = directory
        self._slurm = slurm
        self._timeout = timeout
        self._now = now

    @classmethod
    def open(cls, state_dir: str, slurm: Any, timeout: float, **kwargs: Any) -> Board | None:
        """The board in ``state_dir``; None when it cannot be written there."""
        if not state_dir:
            return None
        directory = Path(state_dir) / BOARD
        try:
            (directory / "waiting").mkdir(parents=True, exist_ok=True)
            if not os.access(directory / "waiting", os.W_OK):
                return None
        except OSError:
            return None
        return cls(directory, slurm, timeout, **kwargs)

    @contextlib.contextmanager
    def waiting(self, job_id: str, nodelist: str) -> Iterator[None]:
        """Name this prolog's nodes on the board while it waits."""
        name = self.dir / "waiting" / (job_id or f"pid-{os.getpid()}")
        name.write_text(nodelist)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                name.unlink()

    def look(self, nodes: list[str]) -> tuple[dict[str, list[str]], set[str] | None]:
        """The nodes' states and the jobs still CONFIGURING (None if not known now), from a look
        begun at most POLL before this call: the board's, or this prolog's own."""
        asked = self._now()
        last = self._last()
        if not self._fresh(last, nodes, asked):
            with open(self.dir / "lock", "a") as lock:
                # While another prolog reads Slurm, wait for its answer rather than ask again.
                fcntl.flock(lock, fcntl.LOCK_EX)
                last = self._last()
                if not self._fresh(last, nodes, asked):
                    last = self._read_slurm(last, nodes)
        return last["states"], self._configuring(last)

    def _fresh(self, last: dict[str, Any], nodes: list[str], asked: float) -> bool:
        states = last.get("states")
        return (isinstance(states, dict) and asked - last.get("time", 0) < POLL
                and all(n in states for n in nodes))

    def _configuring(self, last: dict[str, Any]) -> set[str] | None:
        jobs = last.get("configuring")
        if not isinstance(jobs, list) or self._now() - last.get("jobs_time", 0) > 2 * JOB_POLL + POLL:
            return None
        return set(jobs)

    def _last(self) -> dict[str, Any]:
        try:
            last = json.loads((self.dir / "look.json").read_text())
        except (OSError, ValueError):
            return {}
        return last if isinstance(last, dict) else {}

    def _read_slurm(self, last: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
        wanted = set(nodes) | self._waiting_nodes()
        now = self._now()
        facts = self._slurm.node_facts(sorted(wanted))
        look = {"time": now, "states": {n: list(facts[n].state) if n in facts else [] for n in wanted},
                "jobs_time": last.get("jobs_time", 0), "configuring": last.get("configuring")}
        # The asking prolog's nodes up: it returns now, the jobs' list can wait for the next look.
        if now - look["jobs_time"] >= JOB_POLL and not all_up(look["states"], nodes):
            look["jobs_time"], look["configuring"] = now, sorted(self._slurm.configuring_jobs())
        tmp = self.dir / f".look.{os.getpid()}"
        tmp.write_text(json.dumps(look))
        tmp.replace(self.dir / "look.json")
        return look

    def _waiting_nodes(self) -> set[str]:
        from bridge import hostlist
        from bridge.errors import BridgeError

        nodes: set[str] = set()
        oldest = self._now() - self._timeout - 60
        for entry in (self.dir / "waiting").iterdir():
            try:
                if entry.stat().st_mtime >= oldest:
                    nodes.update(hostlist.expand(entry.read_text().strip()))
            except (OSError, ValueError, BridgeError):
                continue
        return nodes
