"""Slurm, read and updated through its own commands.

We do not link libslurm (pyslurm only installs against one Slurm release, and none that
Debian 12 ships): ``scontrol`` speaks every version's wire protocol for us. Hooks run with no
PATH, so the commands are called by absolute path from the configured ``bin_dir``.

Node facts come from Slurm's JSON, never from text split on ``Key=``: a feature may hold
spaces, ``Key=`` text or a newline (``fast CPUTot=64``, ``x\nNodeName=elastic1 ...``), and text
split on ``Key=`` then changes a node's CPUs or another node's facts. From 23.02
``scontrol --json show node NODES`` reads just the nodes asked for. 22.05 has no
``scontrol --json`` and its ``sinfo --json`` cannot be filtered (12.7 MB, 214 MiB in sinfo at
10,000 nodes), so a hook on 22.05 reads ``scontrol --oneliner show node NODES`` and keeps it only
where every line has exactly the shape Slurm prints (:func:`nodes_from_text`); anything else
(a ``Key=`` inside a value, a newline, a comment, a name Slurm does not know) sends it to
``sinfo --json``, read and filtered here.
The version comes with the answer (:mod:`bridge.slurmversion`): no extra process on 23.02+,
one failed 5 ms ``scontrol --json`` on 22.05. A long-running reader on 22.05 (the daemon, every
few seconds) reads the whole JSON only when sinfo's one-line-per-state summary has changed or
``reread`` seconds have passed (:meth:`CommandSlurm._every_node`). A job's state comes from ``squeue -O``, whose
columns (state, restart count) a user cannot write into, unlike a job's name or comment.

:class:`SlurmClient` is the small protocol the flows use; :class:`CommandSlurm` implements it
with the commands, and tests pass in-memory fakes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from bridge import NAME, hostlist, nodestate
from bridge.errors import SlurmError, UsageError
from bridge.slurmversion import SlurmVersion

REASON_PREFIX = f"{NAME}: "
DRAIN_REASON = f"{REASON_PREFIX}Kubernetes node "
"""The bridge's drain of a node whose Kubernetes host is cordoned or leaving (bridge.reconcile)."""
BREAKER_REASON = f"{REASON_PREFIX}capacity breaker open until "
"""The bridge's drain of a nodeset's powered-down nodes while its capacity breaker is open (bridge.breaker)."""
_REASON_MAX = 200  # slurmctld keeps longer reasons, but sinfo -R columns and admins do not
SUMMARY = ("--all", "--noheader", "--Format=NodeList:|,StateComplete:|,Reason:")
"""22.05's cheap look at what changed: sinfo puts nodes of one partition, state and reason on a
line, hidden partitions included (at 10,000 CLOUD nodes, 0.03-0.13 s and a few hundred bytes;
``sinfo --json`` takes 0.4-0.6 s and 12.7 MB; ``sinfo -N``, one line a node, 2.7 s). It is
compared whole, never parsed: a reason is free text that may hold ``|``, tabs or newlines. A
node in no partition is not in it: its changes wait for the next whole read."""
_ARGUMENT_MAX = 100_000
"""Longest hostlist one command gets: Linux refuses a single argument over 128 KiB."""


@dataclass(frozen=True)
class NodeFacts:
    """What Slurm says a node is: the shape its pod must have."""

    name: str
    cpus: int
    real_memory_mb: int
    gres: tuple[str, ...] = ()
    """``gpu:h100:8`` style entries, socket suffixes removed."""
    features: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    """Base state and flags, e.g. ``("IDLE", "CLOUD", "POWERED_DOWN")``."""
    reason: str = ""

    def gres_count(self, name: str, type_: str | None = None) -> int:
        """How many of a generic resource (``gpu``, optionally of one type) the node has."""
        total = 0
        for entry in self.gres:
            gres_name, gres_type, count = split_gres(entry)
            if gres_name == name and (type_ is None or gres_type == type_):
                total += count
        return total


def given_back(fact: NodeFacts) -> bool:
    """DOWN with the bridge's own cause: the bridge gave the node back after a failure and
    requeued its job (not a node the bridge drained that Slurm later set DOWN, not responding:
    Slurm keeps the drain's reason). Slurm runs nothing on it, so no pod of the bridge belongs there (a resume
    that raced the failure may have made one again); it keeps its cause until an admin resumes
    it (which clears DOWN) or ResumeTimeout hands it to ResumeFailProgram."""
    return nodestate.is_down(fact.state) and fact.reason.startswith(REASON_PREFIX) \
        and not fact.reason.startswith((DRAIN_REASON, BREAKER_REASON))  # drains Slurm then set DOWN


def split_gres(entry: str) -> tuple[str, str | None, int]:
    """``gpu:h100:8`` → ``("gpu", "h100", 8)``; ``gpu:2`` → ``("gpu", None, 2)``; ``gpu`` → 1."""
    parts = entry.split(":")
    count = int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    kinds = [p for p in parts[1:] if not p.isdigit()]
    return parts[0], (kinds[0] if kinds else None), count


class SlurmClient(Protocol):
    def node_facts(self, nodes: list[str]) -> dict[str, NodeFacts]:
        """Facts of each named node that Slurm knows; unknown nodes are left out."""
        ...

    def set_down(self, nodes: list[str], reason: str) -> None:
        """Mark nodes DOWN with ``reason`` (prefixed with the bridge's name): Slurm requeues
        their batch jobs. They stay DOWN until an admin resumes them."""
        ...

    def power_down(self, nodes: list[str], reason: str) -> None:
        """Power nodes down now (POWER_DOWN_FORCE): their jobs are requeued and the nodes
        are back in service, powered down, after SuspendTimeout."""
        ...

    def power_up(self, nodes: list[str]) -> None:
        """Power idle nodes up with no job (a warm pool): Slurm calls ResumeProgram for them."""
        ...

    def power_down_idle(self, nodes: list[str]) -> None:
        """Power nodes down once they are idle (POWER_DOWN, not forced: a job that landed on
        one meanwhile finishes first)."""
        ...

    def job_state(self, job_id: int) -> tuple[str, int] | None:
        """The job's state (PENDING, RUNNING, ...) and how often Slurm requeued it; None if gone."""
        ...

    def hold(self, job_id: int, comment: str) -> None:
        """Hold a pending job and say why in its AdminComment."""
        ...

    def delay(self, job_id: int, seconds: float) -> None:
        """Let a pending job start no sooner than ``seconds`` from now."""
        ...

    def set_drained(self, nodes: list[str], reason: str | None) -> None:
        """DRAIN nodes with ``reason`` (running jobs finish, no new ones start); with None,
        lift the drain (UNDRAIN: the node's base state, DOWN say, is left as it is)."""
        ...

    def planned_starts(self) -> list[tuple[float, tuple[str, ...]]]:
        """(expected start as Unix time, the nodes Slurm means to give it) of each pending job the
        scheduler has placed; jobs it has not placed are left out."""
        ...


def reason(text: str) -> str:
    """A node Reason that starts with the bridge's name, on one line, of bounded length."""
    text = " ".join(text.split())
    if not text.startswith(REASON_PREFIX):
        text = REASON_PREFIX + text
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


class CommandSlurm:
    """:class:`SlurmClient` through ``scontrol``, ``sinfo`` and ``squeue``."""

    def __init__(self, bin_dir: str = "/usr/bin", *, timeout: float = 10.0, reread: float | None = None,
                 lost_controller: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``reread``: for a caller that reads every node again and again (the daemon), on 22.05:
        the longest a JSON read is reused while sinfo's summary (:data:`SUMMARY`) stays
        the same. None (the hooks): every read is a JSON read.

        ``lost_controller``: seconds a read keeps trying, once a second, while slurmctld cannot
        be reached or went away in the middle of the call (killed and restarted by systemd):
        a hook then waits for it rather than give the job's nodes back. 0: one try (the
        daemon, which looks again at its next tick). Updates are never repeated."""
        self._bin = Path(bin_dir)
        self._timeout = timeout
        self._reread = reread
        self._lost_controller = lost_controller
        self._clock = clock
        self._sleep = sleep
        self._last: tuple[str | None, float, dict[str, NodeFacts]] | None = None
        """(summary read before it, when, every node's facts) of the last JSON read of every node."""
        self._busy = False
        self.version: SlurmVersion | None = None
        """The Slurm version, once a JSON answer has said it (:meth:`learn_version` asks)."""
        self._no_json = False
        """scontrol has refused ``--json`` (22.05): not asked again."""

    def node_facts(self, nodes: list[str]) -> dict[str, NodeFacts]:
        if not nodes:
            return {}
        wanted = set(nodes)
        if not self._no_json and (self.version is None or self.version.supports("json_node_read")):
            try:
                records = [r for batch in _batches(nodes) for r in self._scontrol_nodes(batch)]
                return {f.name: f for f in map(node_from_json, records) if f.name in wanted}
            except _NoJson:
                self._no_json = True  # 22.05: a JSON answer, if one is read, says which exactly
        if self._reread is None:
            # A hook on 22.05: the nodes asked, as text, where the answer can be trusted whole.
            if (facts := self._text_facts(nodes)) is not None:
                return facts
        return {name: f for name, f in self._every_node().items() if name in wanted}

    def _text_facts(self, nodes: list[str]) -> dict[str, NodeFacts] | None:
        """22.05: the facts of ``nodes`` from ``scontrol -o show node NODES``, which reads only
        those (``sinfo --json`` reads every node of the cluster: 12.7 MB and 214 MiB in sinfo at
        10,000 nodes). None when any answer is not one a strict reading can trust (see
        :func:`nodes_from_text`) or names a node Slurm does not know: the caller reads the JSON."""
        try:
            out = "".join(self._run("scontrol", "--oneliner", "show", "node", batch) for batch in _batches(nodes))
        except _Missing:
            return None
        return nodes_from_text(out, set(nodes))

    def learn_version(self) -> SlurmVersion | None:
        """The Slurm version: from a JSON answer read already, else ``scontrol --version`` (a
        22.05 hook reads text, which does not say it). None where scontrol's answer is not one."""
        if self.version is None:
            try:
                self.version = SlurmVersion.parse(self._run("scontrol", "--version").strip())
            except ValueError:
                return None
        return self.version

    def _every_node(self) -> dict[str, NodeFacts]:
        """22.05: every node's facts from ``sinfo --json`` (its node filter is ignored).

        With ``reread``, a quiet cluster costs sinfo's summary alone: the last JSON read is
        reused while the summary is unchanged and younger than ``reread``. The summary is read
        before the JSON, so a change between the two makes the next summary differ; a change
        it cannot show (a node's CPUs, memory, GRES or features after ``scontrol reconfigure``)
        waits ``reread`` at most. Once the summary changed, the following reads go straight to
        the JSON (nodes resuming change at every look: the summary would only add its cost)
        until two JSON reads in a row agree."""
        if self._reread is None:
            return self._json_facts()
        now = self._clock()
        if self._busy and self._last is not None:
            facts = self._json_facts()
            self._busy = facts != self._last[2]
            self._last = (None, now, facts)  # no summary to compare with: the next quiet read reads the JSON
            return facts
        summary = self._run("sinfo", *SUMMARY)
        if self._last is not None and self._last[0] == summary and now - self._last[1] < self._reread:
            return self._last[2]
        facts = self._json_facts()
        self._busy = self._last is not None and self._last[0] not in (None, summary)
        self._last = (summary, now, facts)
        return facts

    def _json_facts(self) -> dict[str, NodeFacts]:
        records = self._nodes_of(self._json("sinfo", "--json", node_fields=True), "sinfo --json")
        return {f.name: f for f in map(node_from_json, records)}

    def _scontrol_nodes(self, expression: str) -> list[dict[str, Any]]:
        try:
            data = self._json("scontrol", "--json", "show", "node", expression, no_json_ok=True, node_fields=True)
        except _Missing:
            # Recent scontrol skips unknown names in JSON mode (src/scontrol/info_node.c); should
            # a version fail the whole read on one instead, read every node and keep ours.
            data = self._json("scontrol", "--json", "show", "node", node_fields=True)
        return self._nodes_of(data, "scontrol --json show node")

    def _nodes_of(self, data: dict[str, Any], what: str) -> list[dict[str, Any]]:
        nodes = data.get("nodes")
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise SlurmError(f"{what}: no list of nodes in its answer")
        return nodes

    def set_down(self, nodes: list[str], reason_text: str) -> None:
        for batch in _batches(nodes):
            self._run("scontrol", "update", f"NodeName={batch}", "State=DOWN", f"Reason={reason(reason_text)}")

    def power_down(self, nodes: list[str], reason_text: str) -> None:
        # Where the version has it (25.05+), Slurm's own power command with a Reason; the node
        # update it replaces still works on every supported version, and is all 22.05-24.11 have.
        modern = self.version is not None and self.version.supports("power_reason")
        for batch in _batches(nodes):
            if modern:
                self._run("scontrol", "power", "down", "force", batch, f"Reason={reason(reason_text)}")
            else:
                self._run("scontrol", "update", f"NodeName={batch}", "State=POWER_DOWN_FORCE",
                          f"Reason={reason(reason_text)}")

    def power_up(self, nodes: list[str]) -> None:
        self._power(nodes, "up", "POWER_UP")

    def power_down_idle(self, nodes: list[str]) -> None:
        self._power(nodes, "down", "POWER_DOWN")

    def _power(self, nodes: list[str], word: str, state: str) -> None:
        """``scontrol power up|down`` where the version has it, else the update every version takes."""
        new = self.version is not None and self.version.supports("power_commands")
        for batch in _batches(nodes):
            if new:
                self._run("scontrol", "power", word, batch)
            else:
                self._run("scontrol", "update", f"NodeName={batch}", f"State={state}")

    def job_state(self, job_id: int) -> tuple[str, int] | None:
        try:
            out = self._run("squeue", "--noheader", "--states=all", f"--jobs={job_id}",
                            "--Format=State,RestartCnt")
        except _Missing:
            return None
        words = out.split()
        if not words:
            return None
        if len(words) != 2 or not words[1].isdigit():
            raise SlurmError(f"squeue: unexpected answer for job {job_id}: {_short(out)}")
        return words[0], int(words[1])

    def hold(self, job_id: int, comment: str) -> None:
        self._run("scontrol", "hold", str(job_id))
        self._run("scontrol", "update", f"JobId={job_id}", f"AdminComment={reason(comment)}")

    def delay(self, job_id: int, seconds: float) -> None:
        self._run("scontrol", "update", f"JobId={job_id}", f"StartTime=now+{max(0, round(seconds))}")

    def set_drained(self, nodes: list[str], reason_text: str | None) -> None:
        if nodes and reason_text is not None:
            self._run("scontrol", "update", f"NodeName={hostlist.fold(nodes)}", "State=DRAIN",
                      f"Reason={reason(reason_text)}")
        elif nodes:
            self._run("scontrol", "update", f"NodeName={hostlist.fold(nodes)}", "State=UNDRAIN")

    def job_waiting(self, job_id: str) -> bool:
        """Whether a job is still CONFIGURING or RUNNING (not cancelled, requeued or done)."""
        job = self.job_state(int(job_id))
        return job is not None and job[0] in ("CONFIGURING", "RUNNING")

    def jobs_on(self, nodes: list[str]) -> list[tuple[int, tuple[str, ...]]]:
        """(job id, all of its nodes) of each job CONFIGURING or RUNNING on any of ``nodes``."""
        out = self._run("squeue", "--noheader", "--states=CONFIGURING,RUNNING",
                        f"--nodelist={hostlist.fold(nodes)}", "--format=%A %N")
        jobs = []
        for line in out.splitlines():
            words = line.split()
            if len(words) != 2 or not words[0].isdigit():
                raise SlurmError(f"squeue: unexpected answer for the jobs on {hostlist.fold(nodes)}: {_short(line)}")
            jobs.append((int(words[0]), tuple(hostlist.expand(words[1]))))
        return jobs

    def planned_starts(self) -> list[tuple[float, tuple[str, ...]]]:
        """squeue's StartTime and SchedNodes of the pending jobs: the backfill scheduler sets
        both when it places a job that waits for nodes other jobs hold. Times are in squeue's
        local time, read here in the same (the daemon and squeue share a time zone)."""
        # A site's SLURM_TIME_FORMAT (relative, or its own strftime) would change the times' shape.
        out = self._run("squeue", "--noheader", "--states=PENDING", "--format=%A %S %Y",
                        env={"SLURM_TIME_FORMAT": "standard"})
        return planned_from_text(out)

    def configuring_jobs(self) -> set[str]:
        """Ids of the jobs CONFIGURING (their nodes resuming, their PrologSlurmctld running): one
        read for every waiting prolog (``%A``: an array task's own id, as SLURM_JOB_ID)."""
        return set(self._run("squeue", "--noheader", "--states=CONFIGURING", "--format=%A").split())

    def _json(self, command: str, *args: str, no_json_ok: bool = False,
              node_fields: bool = False) -> dict[str, Any]:
        """The answer as a dict; with ``node_fields``, only the fields of nodes the bridge reads."""
        out = self._run(command, *args, no_json_ok=no_json_ok)
        try:
            data = _node_answer(out) if node_fields else json.loads(out)
        except (ValueError, msgspec.DecodeError):
            raise SlurmError(f"{command} {' '.join(args[:2])}: answer is not JSON: {_short(out)}") from None
        if not isinstance(data, dict):
            raise SlurmError(f"{command} {' '.join(args[:2])}: answer is not a JSON object")
        self.version = SlurmVersion.from_meta(data.get("meta")) or self.version
        return data

    def _run(self, command: str, *args: str, no_json_ok: bool = False, env: dict[str, str] | None = None) -> str:
        read = command != "scontrol" or args[0] == "--version" or "show" in args[:3]
        deadline = self._clock() + self._lost_controller
        while True:
            try:
                return self._run_once(command, *args, no_json_ok=no_json_ok, env=env)
            except _LostController:
                if not read or self._clock() >= deadline:
                    raise
                self._sleep(1.0)

    def _run_once(self, command: str, *args: str, no_json_ok: bool, env: dict[str, str] | None) -> str:
        if command == "scontrol" and args[0] in ("update", "power"):
            self._last = None  # our own change: the next read is a JSON read, whatever sinfo says
        path = str(self._bin / command)
        try:
            done = subprocess.run([path, *args], capture_output=True, text=True, errors="replace",
                                  timeout=self._timeout, env={**os.environ, **env} if env else None)
        except FileNotFoundError:
            raise SlurmError(f"{path} not found (set slurm.bin_dir in the config)") from None
        except OSError as e:  # bin_dir names a file, or scontrol is not executable
            raise SlurmError(f"cannot run {path}: {e.strerror} (set slurm.bin_dir in the config to the "
                             f"directory of Slurm's commands)") from None
        except subprocess.TimeoutExpired:
            raise _LostController(f"{command} {args[0]} did not answer in {self._timeout:.0f} s") from None
        if done.returncode == 0:
            return done.stdout
        # scontrol 22.05 says "Node X not found" on stdout, other errors on stderr.
        whole = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
        message = _short(whole)  # the checks read it whole: a 10,000-character name is cut short
        if no_json_ok and "unrecognized option" in whole and "--json" in whole:
            raise _NoJson(message)
        if "not found" in whole.lower() or "invalid job id" in whole.lower():
            raise _Missing(f"{command} {' '.join(args[:2])}: {message}")
        if any(words in whole.lower() for words in LOST_CONTROLLER):
            raise _LostController(f"{command} {' '.join(args[:2])} failed: {message}")
        raise SlurmError(f"{command} {' '.join(args[:2])} failed: {message}")


class _NodeRecord(msgspec.Struct):
    """The fields of a node that :func:`node_from_json` reads. msgspec skips the others
    without building them: 22.05's ``sinfo --json`` cannot be filtered and carries ~50 fields
    a node (12.7 MB at 10,000 nodes), which ``json.loads`` turns into ~200 MiB of dicts."""

    name: Any = None
    cpus: Any = None
    real_memory: Any = None
    gres: Any = None
    features: Any = None
    state: Any = None
    state_flags: Any = None
    reason: Any = None


class _NodeAnswer(msgspec.Struct):
    meta: Any = None
    nodes: list[_NodeRecord] | None = None


_node_decoder = msgspec.json.Decoder(_NodeAnswer)


def _node_answer(out: str) -> Any:
    """A node answer, only the fields :class:`_NodeRecord` names built; an answer of another
    shape whole, for the checks that follow to name what is wrong with it."""
    try:
        answer = _node_decoder.decode(out)
    except msgspec.ValidationError:
        return json.loads(out)
    nodes = None if answer.nodes is None else [msgspec.structs.asdict(n) for n in answer.nodes]
    return {"meta": answer.meta, "nodes": nodes}


class _NoJson(SlurmError):
    """This Slurm has no ``--json`` for the command (22.05's scontrol)."""


class _Missing(SlurmError):
    """Slurm does not know a node or job that was named."""


class _LostController(SlurmError):
    """slurmctld could not be reached, or went away in the middle of the call."""


LOST_CONTROLLER = ("zero bytes were transmitted or received", "unable to contact slurm controller",
                   "socket timed out on send/recv", "communication connection failure",
                   "communication send failure", "communication receive failure",
                   "connection reset by peer", "connection refused")
"""Slurm's own messages (slurm_errno.c) for a controller lost during a call, lower-cased."""


def _short(text: str) -> str:
    """First line of a command's message, bounded: an error stays one readable line."""
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _batches(nodes: list[str]) -> list[str]:
    """Hostlists of ``nodes``, each short enough to be one command-line argument."""
    if not nodes:
        return []
    folded = hostlist.fold(nodes)
    if len(folded) <= _ARGUMENT_MAX or len(nodes) == 1:
        return [folded]
    ordered = sorted(nodes)
    half = len(ordered) // 2
    return _batches(ordered[:half]) + _batches(ordered[half:])


_KEY = re.compile(r"(?:^| )([A-Za-z_]+)=")
_STAMPED = re.compile(r"(.*) \[[^\[\]@ ]*@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\]")
_STATE = re.compile(r"[A-Z_]+(?:\+[A-Z_]+)*")
_NEXT_KEY = {
    "NodeName": ("Arch", "CoresPerSocket"),
    "CPUTot": ("CPULoad",),
    "AvailableFeatures": ("ActiveFeatures",),
    "Gres": ("NodeAddr", "GresDrain", "GresUsed"),
    "RealMemory": ("AllocMem",),
    "State": ("ThreadsPerCore",),
}
"""The fields read from 22.05's ``scontrol --oneliner show node`` text, each with the keys Slurm
prints right after it (captured from the real 22.05.8:
``tests/samples/scontrol-show-node-22.05-text.txt``)."""
_LAST_KEY = "ExtSensorsTemp"
"""The last key 22.05 prints before the free text that may follow: ``Reason=`` (then its
``[user@time]``), ``Comment=`` and ``Extra=``."""


def planned_from_text(out: str) -> list[tuple[float, tuple[str, ...]]]:
    """``squeue --format=%A %S %Y`` of pending jobs: (expected start, planned nodes) of each job
    the scheduler placed; ``N/A`` or ``(null)``: not placed, left out. Raises SlurmError on any
    other shape."""
    planned = []
    for line in out.splitlines():
        words = line.split()
        if len(words) != 3 or not words[0].isdigit():
            raise SlurmError(f"squeue: unexpected answer for the pending jobs: {_short(line)}")
        _, start, nodes = words
        if nodes == "(null)" or start in ("N/A", "Unknown", "None"):
            continue  # not placed (yet): nothing to start ahead
        try:
            when = time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))
            planned.append((when, tuple(hostlist.expand(nodes))))
        except (ValueError, UsageError):
            raise SlurmError(f"squeue: unexpected answer for the pending jobs: {_short(line)}") from None
    return planned


def nodes_from_text(out: str, wanted: set[str]) -> dict[str, NodeFacts] | None:
    """The facts of ``wanted`` in Slurm 22.05's ``scontrol --oneliner show node`` text, or None
    where the text is not one to trust whole; the caller then reads the JSON (slower, never
    misread). Values are printed unquoted and a feature, reason, comment or partition name may
    hold spaces, ``Key=`` text or a newline, so a line is read only when it has exactly the
    shape Slurm gives it:

    - it starts with ``NodeName=`` (lines of nodes not wanted are skipped); up to the first
      `` Reason=`` every key appears once, the last is ``ExtSensorsTemp`` (no ``Comment=``/``Extra=`` text), and each field read is
      followed by the key Slurm prints after it (a feature ``fast Zed=1`` or ``a CPUTot=64``
      breaks that);
    - a reason is the rest of the line, ending in Slurm's ``[user@time]`` and holding no
      `` Comment=`` or `` Extra=`` (which Slurm prints after it);
    - the state is ``BASE+FLAG...`` in capitals, CPUs and memory are digits;
    - every wanted node appears exactly once (a newline in a value starting a line
      ``NodeName=elastic1 ...`` makes a second elastic1).
    """
    facts: dict[str, NodeFacts] = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith("NodeName="):
            return None  # a newline inside some value
        if line[len("NodeName="):].partition(" ")[0] not in wanted:
            continue  # another node's line: its values cannot reach ours
        head, found, tail = line.partition(" Reason=")
        keys = [(m.group(1), m.start(1), m.end()) for m in _KEY.finditer(head)]
        names = [key for key, _, _ in keys]
        if names[-1] != _LAST_KEY or len(set(names)) != len(names):
            return None
        fields: dict[str, str] = {}
        for i, (key, _, end) in enumerate(keys):
            if key in _NEXT_KEY:
                if i + 1 == len(keys) or names[i + 1] not in _NEXT_KEY[key]:
                    return None
                fields[key] = head[end:keys[i + 1][1] - 1].strip()
        if len(fields) != len(_NEXT_KEY) or not fields["CPUTot"].isdigit() \
                or not fields["RealMemory"].isdigit() or not _STATE.fullmatch(fields["State"]):
            return None
        reason = ""
        if found:
            stamped = _STAMPED.fullmatch(tail)
            if stamped is None or " Comment=" in tail or " Extra=" in tail:
                return None
            reason = stamped.group(1)
        name = fields["NodeName"]
        if name in facts:
            return None
        facts[name] = NodeFacts(
            name=name, cpus=int(fields["CPUTot"]), real_memory_mb=int(fields["RealMemory"]),
            gres=_gres(fields["Gres"]), features=_words(fields["AvailableFeatures"]),
            state=tuple(fields["State"].split("+")), reason=reason)
    return facts if set(facts) == wanted else None


def node_from_json(record: dict[str, Any]) -> NodeFacts:
    """One node of ``sinfo --json`` (22.05: ``state`` + ``state_flags``, comma-separated
    ``features``) or ``scontrol --json show node`` (23.02+: ``state`` and ``features`` are
    lists; numbers may be ``{set, infinite, number}``). Strings are taken whole: nothing in a
    value can reach another field.

    Raises:
        SlurmError: the record has no node name.
    """
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise SlurmError(f"Slurm node without a name in JSON: {_short(json.dumps(record))}")
    state = record.get("state")
    if isinstance(state, list):
        states = tuple(str(s).upper() for s in state)
    else:
        states = (str(state or "").upper(), *(str(f).upper() for f in record.get("state_flags") or ()))
    return NodeFacts(
        name=name,
        cpus=_number(record.get("cpus")),
        real_memory_mb=_number(record.get("real_memory")),
        gres=_gres(_text(record.get("gres"))),
        features=_words(record.get("features")),
        state=tuple(s for s in states if s),
        reason=_text(record.get("reason")),
    )


def _number(value: Any) -> int:
    """A JSON count: a number, or 23.02+'s ``{"set": true, "infinite": false, "number": 4}``."""
    if isinstance(value, dict):
        value = value.get("number") if value.get("set", True) and not value.get("infinite") else 0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value != "(null)" else ""


def _words(value: Any) -> tuple[str, ...]:
    """Features: a list (23.02+) or one comma-separated string (22.05)."""
    items = value if isinstance(value, list) else _text(value).split(",")
    return tuple(x for x in (_text(i) for i in items) if x)


def _gres(text: str) -> tuple[str, ...]:
    """``gpu:h100:8(S:0-1),mps:100`` → ``("gpu:h100:8", "mps:100")``."""
    return tuple(re.sub(r"\(.*?\)", "", x) for x in _words(re.sub(r"\(S:[^)]*\)", "", text)))
