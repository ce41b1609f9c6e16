"""Issue 13, item 1, end to end on real Slurm: a job's pods are created from PrologSlurmctld the
moment slurmctld allocates its powered-down nodes, before the power-save thread calls
ResumeProgram; the resume hook that follows creates nothing twice; a job cancelled in between
leaves no pod."""

from __future__ import annotations

import datetime as dt

from testenv import site
from testenv.env import IMAGE_ENTRYPOINT
from testenv.slurm.config import Timeouts
from tests.e2e.conftest import bridge_pods, sbatch, wait_for
from tests.e2e.test_researchers import alice_run, sbatch_as  # noqa: F401 (alice_run is a fixture)


def _events(env, event, hook=None):
    return [r for r in env.bridge_log_records() if r.get("event") == event and (hook is None or r.get("hook") == hook)]


def _epoch(record) -> float:
    return dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def test_pods_are_created_at_allocation_before_resume_program_and_never_twice(make_env, alice_run):
    # Resume calls at most every 10 s (power_save_min_interval, which sites raise to batch them):
    # the window early start closes.
    # slurmd waits for a gate (in alice's directory, which the pods mount) the test opens once
    # ResumeProgram has run: so the hook is certainly called while the nodes are still powering up.
    gate = alice_run / "slurmd-may-start"
    gated = {"gated-slurmd:1": {"entrypoint": [*IMAGE_ENTRYPOINT[:2], "/bin/sh", "-c",
                                               f'while [ ! -e {gate} ]; do sleep 0.1; done; exec "$@"', "sh",
                                               *IMAGE_ENTRYPOINT[2:]]}}
    env = make_env(timeouts=Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2,
                                     power_save_min_interval=10),
                   images=gated, nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": "gated-slurmd:1"}])
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "--wrap", "srun hostname")
    hooks = wait_for(lambda: _events(env, "resume done", hook="resume"), timeout=30, what="ResumeProgram's hook done")
    gate.touch()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job completed")
    assert sorted((alice_run / f"slurm-{job}.out").read_text().split()) == ["elastic1", "elastic2"]
    early = [r for r in _events(env, "resume done", hook="prolog") if r.get("jobs") == [int(job)]]
    assert [r["created"] for r in early] == [2], early
    # ResumeProgram's hook found the job's pods and created none.
    hooks = _events(env, "resume done", hook="resume")
    assert hooks and all(r["created"] == 0 for r in hooks) and sum(r["existing"] for r in hooks) == 2, hooks
    for record in hooks:
        assert _epoch(record) > _epoch(early[0])
    wait_for(lambda: not bridge_pods(env), timeout=60, what="pods deleted after SuspendTime")


def test_a_job_cancelled_before_its_nodes_register_leaves_no_pod(make_env):
    # No scheduler binds the pods, so slurmd never registers; the power-save thread scans only at
    # start-up (power_save_min_interval), so ResumeProgram is never called: the pods are early
    # start's alone.
    env = make_env(scheduler=False, timeouts=Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2,
                                                      power_save_interval=3600, power_save_min_interval=3600))
    job = sbatch(env, "-N2", "--wrap", "hostname")
    pods = wait_for(lambda: bridge_pods(env) if len(bridge_pods(env)) == 2 else None, timeout=20,
                    what="the job's two pods, created by the prolog")
    assert {p.metadata.labels["slurm-k8s-bridge/job-id"] for p in pods.values()} == {job}
    env.slurm.run("scancel", job)
    wait_for(lambda: not bridge_pods(env), timeout=20, what="no pod left after scancel")
    # Whichever looks first deletes them: the guard when the prolog ends, or the prolog's
    # follower, which sees the nodes taken back (powered down, no longer allocated).
    cleaned = wait_for(lambda: sorted({
        *[n for r in _events(env, "early start cleaned up") for n in r["deleted"]],
        *[p.removeprefix("testenv-") for r in _events(env, "pods made for a job on nodes Slurm took back deleted")
          for p in r["pods"]]}) or None, timeout=10, what="the guard's or the follower's log line")
    assert cleaned == ["elastic1", "elastic2"]
    assert not _events(env, "resume done", hook="resume")
