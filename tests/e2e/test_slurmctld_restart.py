"""Issue 12, end to end: slurmctld killed mid-resume (its hook has made the pods, the nodes have
not registered yet) and restarted, as systemd's ``Restart=always`` would. Nothing may be left
stuck: the job runs (or is requeued and runs), every node ends with a pod if and only if Slurm
counts it powered up, and no node stays POWERING_UP without a pod.

Runs in both follow modes (--follow-mode); prints the seconds from the restart to clean."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import bridge_pods, job_field, job_output, node_field, sbatch, wait_for
from testenv.env import IMAGE_ENTRYPOINT

pytestmark = pytest.mark.follows  # testenv/test.sh runs it in both follow modes

NODES = [f"elastic{i}" for i in range(1, 5)]
# slurmd starts 4 s after its pod does: a window in which the pods exist and the nodes have not
# registered, wide enough to kill slurmctld in it every time.
SLOW = {"slow-slurmd:1": {"entrypoint": [*IMAGE_ENTRYPOINT[:2], "/bin/sh", "-c", 'sleep 4; exec "$@"', "sh",
                                         *IMAGE_ENTRYPOINT[2:]]}}
DOWN_FOR = 8.0
"""Seconds slurmctld stays dead (systemd's RestartSec=5 and a start-up): slurmd starts meanwhile
and cannot reach it."""


def _scontrols_reading_nodes() -> list[int]:
    """Pids of the scontrol processes running ``show node`` (the held hook's read)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and argv[0] == b"/usr/bin/scontrol" and b"show" in argv and b"node" in argv:
            pids.append(int(proc.name))
    return pids


def _unread_requests_of(pids: list[int], port: int) -> bool:
    """One of ``pids`` has a TCP connection to ``port`` whose request waits unread on the
    listener's side (its receive queue is not empty): what a stopped slurmctld leaves."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue  # gone
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    rows = [line.split() for name in ("tcp", "tcp6") for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]]
    # The client's ends (its sockets, to the port) and the listener's ends holding unread bytes.
    ports = {int(row[1].rsplit(":", 1)[1], 16) for row in rows
             if row[9] in inodes and int(row[2].rsplit(":", 1)[1], 16) == port}
    return any(int(row[1].rsplit(":", 1)[1], 16) == port and int(row[2].rsplit(":", 1)[1], 16) in ports
               and int(row[4].split(":")[1], 16) > 0 for row in rows)


def _stuck(env) -> list[str]:
    """What is out of line now: a node POWERING_UP without its pod, or a pod whose node Slurm
    counts powered down (an orphan)."""
    pods = bridge_pods(env)
    wrong = []
    for node in NODES:
        state = node_field(env, node, "State")
        if "POWERING_UP" in state and node not in pods:
            wrong.append(f"{node} {state} without a pod")
        if "POWERED_DOWN" in state and node in pods and pods[node].metadata.deletionTimestamp is None:
            wrong.append(f"{node} {state} with pod {pods[node].metadata.name}")
    return wrong


def test_slurmctld_killed_mid_resume_and_restarted_leaves_nothing_stuck(make_env):
    env = make_env(images=SLOW, nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": "slow-slurmd:1"}])
    job = sbatch(env, "-N2", "--wrap", "hostname")
    # The pods exist (made by the prolog's early start or the resume hook) and slurmctld called
    # ResumeProgram (POWERING_UP); slurmd has not registered yet (it waits 4 s).
    wait_for(lambda: len(bridge_pods(env)) == 2, timeout=30, what="the job's two pods")
    wait_for(lambda: len([n for n in NODES if "POWERING_UP" in node_field(env, n, "State")]) == 2, timeout=3,
             what="both nodes POWERING_UP before they register")
    env.slurm.kill_slurmctld()
    time.sleep(DOWN_FOR)  # slurmctld is down: nothing to wait for, its restart is the event
    env.slurm.restart_slurmctld()
    restarted = time.monotonic()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=150, what="the job completed")
    assert job_output(job) == f"{job_field(env, job, 'BatchHost')}\n"  # alice's output, in her directory
    wait_for(lambda: not _stuck(env), timeout=30, what="no node stuck, no orphan pod")
    clean = time.monotonic() - restarted
    print(f"\nslurmctld SIGKILLed mid-resume, restarted → job completed, nothing stuck: {clean:.1f} s "
          f"after the restart (mode: {env.follow_mode}; job restarts: {job_field(env, job, 'Restarts')}; Slurm alone: ResumeTimeout, 120 s here)")
    assert clean < 60
    # Every node ends where it belongs: the job's back to idle (then powered down with no pod).
    wait_for(lambda: all("POWERED_DOWN" in node_field(env, n, "State") for n in NODES) and not bridge_pods(env),
             timeout=60, what="every node powered down, no pod left")



@pytest.fixture
def gate() -> Iterator[Path]:
    """A directory SlurmUser can read (not under pytest's 0700 base), removed whatever happens."""
    directory = Path(tempfile.mkdtemp(prefix="slurmctld-restart-gate-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_resume_hook_that_outlived_its_slurmctld_reads_the_jobs_from_the_restarted_one(make_env, gate):
    """slurmctld dies after calling ResumeProgram and before the hook read $SLURM_RESUME_FILE (a
    memfd of the dead slurmctld: gone with it). The hook asks the restarted slurmctld which jobs
    the nodes are for and makes their pods: the job runs without a requeue, instead of its nodes
    going DOWN and the job waiting out a requeue."""
    go = gate / "go"
    # Early start off: the pods must come from the hook (with it on, the prolog makes them first).
    env = make_env(bridge={"resume": {"early_start": False}},
                   before_resume=f"while [ ! -e {go} ]; do sleep 0.05; done")
    job = sbatch(env, "-N2", "--wrap", "hostname")
    wait_for(lambda: len([n for n in NODES if "POWERING_UP" in node_field(env, n, "State")]) == 2, timeout=30,
             what="ResumeProgram called for the job's two nodes (held before the bridge's hook)")
    assert bridge_pods(env) == {}
    env.slurm.kill_slurmctld()
    env.slurm.restart_slurmctld()
    go.touch()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="the job completed")
    assert job_output(job) == f"{job_field(env, job, 'BatchHost')}\n"  # alice's output, in her directory
    assert job_field(env, job, "Restarts") == "0"
    gone = [r for r in env.bridge_log_records() if r.get("event", "").startswith("resume file gone")]
    assert gone and gone[0]["jobs"] == [int(job)], gone
    assert not [r for r in env.bridge_log_records() if r.get("event") == "resume failed"]


def test_a_hook_whose_slurm_read_loses_slurmctld_waits_for_the_restarted_one(make_env, gate):
    """slurmctld dies while the resume hook reads the job's nodes (it had read its resume file):
    the read waits for the restarted slurmctld, the pods are made and the job runs without a
    requeue. Before, the failed read gave the nodes back DOWN and the job waited out Slurm's
    2-minute requeue hold (seen once in CI: "Zero Bytes were transmitted or received")."""
    gate.chmod(0o777)
    bin_dir = gate / "bin"
    bin_dir.mkdir(mode=0o755)
    for command in ("sinfo", "squeue"):
        (bin_dir / command).symlink_to(f"/usr/bin/{command}")
    # scontrol as Slurm's, except that while "armed" exists a node read first waits for "go".
    (bin_dir / "scontrol").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in *"show node"*)
            if [ -e {gate}/armed ]; then
                touch {gate}/held
                while [ ! -e {gate}/go ]; do sleep 0.05; done
            fi ;;
        esac
        exec /usr/bin/scontrol "$@"
        """))
    (bin_dir / "scontrol").chmod(0o755)
    start = gate / "start"
    # Early start off: the pods must come from the hook's own read.
    env = make_env(bridge={"resume": {"early_start": False}, "slurm": {"bin_dir": str(bin_dir)}},
                   before_resume=f"while [ ! -e {start} ]; do sleep 0.05; done")
    job = sbatch(env, "-N2", "--wrap", "hostname")
    wait_for(lambda: len([n for n in NODES if "POWERING_UP" in node_field(env, n, "State")]) == 2, timeout=30,
             what="ResumeProgram called for the job's two nodes (held before the bridge's hook)")
    (gate / "armed").touch()
    start.touch()  # the hook reads its resume file, then its node read waits at the gate
    wait_for(lambda: (gate / "held").exists(), timeout=30, what="a node read held at the gate")
    # The read must be in flight when slurmctld dies: stopped, slurmctld still accepts the
    # connection (the kernel's backlog) and never answers; killed, it closes it under the read.
    os.kill(env.slurm.pids["slurmctld"], signal.SIGSTOP)
    (gate / "armed").unlink()
    (gate / "go").touch()
    wait_for(lambda: _unread_requests_of(_scontrols_reading_nodes(), env.slurm.slurmctld_port), timeout=30,
             what="the held node read's request unread in the stopped slurmctld's queue")
    env.slurm.kill_slurmctld()
    time.sleep(DOWN_FOR)  # slurmctld is down: nothing to wait for, its restart is the event
    env.slurm.restart_slurmctld()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=90, what="the job completed")
    assert job_output(job) == f"{job_field(env, job, 'BatchHost')}\n"  # alice's output, in her directory
    assert job_field(env, job, "Restarts") == "0"
    assert not [r for r in env.bridge_log_records() if r.get("event") == "resume failed"]
