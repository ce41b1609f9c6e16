"""A slow SuspendProgram and a node resumed again before its deletes go out (real Slurm 22.05).

slurmctld calls SuspendProgram, counts the node powered down once SuspendTimeout has passed,
whether or not the program has finished, and may then resume it for the next job. Pod names
are stable per node, so a suspend whose deletes go out after that would delete the new job's
pod. Here SuspendProgram is held back by the test (a wrapper waiting for a file) until the
next job runs on the node: the suspend must leave that job's pod alone.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.e2e.conftest import bridge_pods, job_field, sbatch, wait_for


def test_a_suspend_held_back_past_suspend_timeout_keeps_the_pod_of_the_job_that_resumed_the_node(make_env):
    gate = Path(tempfile.mkdtemp(prefix="suspend-gate-", dir="/tmp"))
    gate.chmod(0o777)  # the hooks run as SlurmUser
    try:
        # The first call waits (at most 120 s) until the test opens the gate; later calls go through.
        env = make_env(before_suspend=f"touch {gate}/called; i=0\n"
                                      f"while [ ! -e {gate}/open ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done")
        first = sbatch(env, "-N1", "-w", "elastic1", "--wrap", "true")
        wait_for(lambda: env.slurm.job_state(first) == "COMPLETED", timeout=60, what="first job completed")
        wait_for(lambda: (gate / "called").exists(), timeout=30, what="SuspendProgram called after SuspendTime")
        wait_for(lambda: env.slurm.node_states().get("elastic1") == "idle~", timeout=30,
                 what="elastic1 powered down at SuspendTimeout, its suspend still held back")
        old_uid = bridge_pods(env)["elastic1"].metadata.uid  # the suspend has deleted nothing yet

        second = sbatch(env, "-N1", "-w", "elastic1", "--wrap", "sleep 8")
        wait_for(lambda: env.slurm.job_state(second) == "RUNNING", timeout=60, what="second job running")
        new_uid = bridge_pods(env)["elastic1"].metadata.uid
        assert new_uid != old_uid  # the resume replaced the first job's pod

        (gate / "open").touch()  # the slow suspend goes on now, its node in use again
        done = wait_for(lambda: [r for r in env.bridge_log_records() if r.get("event") == "suspend done"],
                        timeout=30, what="the held-back suspend done")
        wait_for(lambda: env.slurm.job_state(second) not in ("RUNNING", "COMPLETING"), timeout=30,
                 what="second job ended")
        assert (env.slurm.job_state(second), job_field(env, second, "Restarts")) == ("COMPLETED", "0")
        assert (done[0]["deleted"], done[0]["kept"]) == (0, 1)
        assert bridge_pods(env)["elastic1"].metadata.uid == new_uid
        # Its own suspend, later, deletes the pod as usual.
        wait_for(lambda: not bridge_pods(env), timeout=40, what="pod deleted after the second job's SuspendTime")
    finally:
        (gate / "open").touch()
        shutil.rmtree(gate, ignore_errors=True)
