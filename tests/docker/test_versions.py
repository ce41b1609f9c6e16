"""The scenarios that matter, against every Slurm release the project supports: slurmctld of that
release runs the bridge's hooks, the pods run slurmd of the same release (Docker runtime).

22.05 is the host's own slurmctld with this checkout's bridge (the path every other e2e test
takes); 24.11 and 26.05 run slurmctld in a container of their image, with the bridge installed
in it as the compose file's image installs it (testenv/ctld_container.py). Everything else (the
Kubernetes API stand-in, its scheduler, the pod runner) is the same for all.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge import hostlist, nodestate, pool
from bridge.slurm import NodeFacts, node_from_json, nodes_from_text, planned_from_text
from testenv import docker as engine
from testenv import site
from testenv.env import Environment
from testenv.slurm import Timeouts
from testenv.slurm_versions import release
from tests import waiting
from tests.e2e.conftest import bridge_pods, job_field, node_field, sbatch
from tests.e2e.test_researchers import alice_run, as_user, sbatch_as  # noqa: F401 (alice_run is a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

VERSIONS = list(engine.SLURM_RELEASES)
wait_for = functools.partial(waiting.wait_for, interval=0.25)  # each look is a `docker exec`


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_env(request: pytest.FixtureRequest, docker_host: str, version: str) -> Iterator[Callable[..., Environment]]:
    """Environments of the test's Slurm release; on a failure the report carries their state."""
    started: list[Environment] = []
    request.node._environments = started
    containerised = version != engine.release_of(engine.slurm_version())

    def make(**kwargs: Any) -> Environment:
        env = Environment(runtime="docker", slurm_version=version if containerised else None, **kwargs).start()
        started.append(env)
        env.slurm.wait_for_first_scheduling_pass()
        return env

    yield make
    for env in started:
        env.stop()


def image(version: str) -> str:
    return engine.slurmd_image(version if version != engine.release_of(engine.slurm_version()) else None)


def bridge_events(env: Environment, event: str) -> list[dict[str, Any]]:
    return [r for r in env.bridge_log_records() if r.get("event") == event]


def test_batch_job_and_srun_run_on_pods_of_that_release_then_suspend_leaves_zero_pods(make_env, version, alice_run):
    env = make_env()
    # Every release's slurmctld runs as SlurmUser slurm, as a site's does: so do its hooks.
    assert re.search(r"^SlurmUser\s+= slurm\(64030\)$", env.slurm.run("scontrol", "show", "config").stdout, re.M)
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "--wrap",
                    'test "$(srun hostname | sort | xargs)" = "elastic1 elastic2"')
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="batch job completed")
    assert job_field(env, job, "ExitCode") == "0:0"
    # srun's output comes back to alice: both pods, each with slurmd of this release.
    lines = as_user(env, site.ALICE, "srun", "-N2", "sh", "-c", "echo $(hostname) $(dpkg-query -W -f='${Version}' slurmd)",
                    cwd=alice_run).stdout.splitlines()
    assert [line.split()[0] for line in sorted(lines)] == ["elastic1", "elastic2"]
    assert all(line.split()[1].startswith(f"{version}.") for line in lines), lines
    assert {p.spec.containers[0].image for p in bridge_pods(env).values()} == {image(version)}
    # SuspendTime (5 s) after the last job: SuspendProgram deletes the pods, the nodes power down.
    wait_for(lambda: not bridge_pods(env), timeout=60, what="pods deleted after SuspendTime")
    wait_for(lambda: env.slurm.node_states().get("elastic1") == "idle~", timeout=30, what="nodes powered down")
    assert any(r["hook"] == "suspend" and r["deleted"] >= 2 for r in bridge_events(env, "suspend done"))


def test_job_whose_pods_cannot_all_start_is_requeued_at_once_and_leaves_nothing(make_env, version):
    env = make_env(nodesets=[{"name": "elastic", "nodes": "elastic[1-3]", "image": image(version)},
                             {"name": "broken", "nodes": "elastic4", "image": "slurm-k8s-bridge/slurmd:missing"}])
    started = time.monotonic()
    job = sbatch(env, "-N4", "--wrap", "hostname")
    wait_for(lambda: int(job_field(env, job, "Restarts") or 0) >= 1, timeout=60, what="job requeued")
    requeued = time.monotonic() - started
    assert env.slurm.job_state(job) == "PENDING"
    assert "ImagePull" in node_field(env, "elastic4", "Reason")
    wait_for(lambda: not bridge_pods(env), timeout=30, what="the job's other pods deleted too")
    assert requeued < 30, f"requeued after {requeued:.1f} s, not at once"


def test_resume_fail_after_resume_timeout_requeues_the_job_and_deletes_its_pods(make_env, version):
    # Pods that can never be scheduled, and a bridge that would wait for them longer than Slurm:
    # slurmctld gives up at ResumeTimeout and calls ResumeFailProgram.
    env = make_env(timeouts=Timeouts(suspend_time=5, resume_timeout=15, suspend_timeout=2),
                   bridge={"resume": {"deadline": 300, "unschedulable_after": 300}},
                   nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": image(version),
                              "node_selector": {"pool": "nowhere"}}])
    job = sbatch(env, "-N2", "--wrap", "hostname")
    wait_for(lambda: len(bridge_pods(env)) == 2, timeout=30, what="two pending pods")
    wait_for(lambda: node_field(env, "elastic1", "Reason").startswith("ResumeTimeout reached"), timeout=60,
             what="ResumeTimeout")
    assert node_field(env, "elastic1", "State").split("+")[0] == "DOWN"
    wait_for(lambda: env.slurm.job_state(job) == "PENDING", timeout=30, what="job requeued")
    # The hook's follower may delete them first (Slurm took the nodes back); ResumeFailProgram
    # runs either way.
    wait_for(lambda: not bridge_pods(env), timeout=30, what="the pods deleted")
    wait_for(lambda: any(r.get("hook") == "resume-fail" for r in env.bridge_log_records()), timeout=30,
             what="ResumeFailProgram ran")


def test_pods_are_created_at_allocation_by_the_prolog_before_resume_program(make_env, version, alice_run):
    # Issue 13's early start, on each release: PrologSlurmctld creates the pods when slurmctld
    # allocates the powered-down nodes; ResumeProgram (every 10 s at most here, as sites batch
    # resumes) finds them and creates none.
    env = make_env(timeouts=Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2,
                                     power_save_min_interval=10))
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "--wrap",
                    'test "$(srun hostname | sort | xargs)" = "elastic1 elastic2"')
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job completed")
    assert job_field(env, job, "ExitCode") == "0:0"
    early = [r for r in bridge_events(env, "resume done") if r["hook"] == "prolog" and r.get("jobs") == [int(job)]]
    assert [r["created"] for r in early] == [2], early
    assert all(r["created"] == 0 for r in bridge_events(env, "resume done") if r["hook"] == "resume")
    wait_for(lambda: not bridge_pods(env), timeout=60, what="pods deleted after SuspendTime")


def test_a_waiting_job_is_planned_on_its_nodes_in_the_shape_the_warm_pool_reads(make_env, version):
    # The warm pool powers up a waiting job's planned nodes one horizon before its turn (README
    # "Warm pool"; the daemon's part is tested end to end on 22.05). What each release must give
    # is the plan: backfill's StartTime and SchedNodes for the job behind the running one.
    env = make_env()
    first = sbatch(env, "-N2", "--time=1", "--wrap", "sleep 60")
    wait_for(lambda: env.slurm.job_state(first) == "RUNNING", timeout=60, what="the first job running")
    running_since = time.time()
    second = sbatch(env, "-N4", "--time=1", "--wrap", "true")

    def plan() -> list[tuple[float, tuple[str, ...]]]:
        return planned_from_text(env.slurm.run("squeue", "--noheader", "--states=PENDING",
                                               "--format=%A %S %Y").stdout)

    ((start, nodes),) = wait_for(plan, timeout=30, what="backfill placing the waiting job")
    assert sorted(nodes) == ["elastic1", "elastic2", "elastic3", "elastic4"]
    # At the first job's time limit (1 min after it started; seconds of rounding and boot).
    assert running_since + 30 < start < running_since + 90, (start - running_since, version)
    env.slurm.run("scancel", first, second)


def test_two_jobs_resumed_in_one_call_get_pods_labelled_with_their_own_job(make_env, version):
    # Early start off: the pods must come from the resume hook, which reads this release's resume file.
    env = make_env(bridge={"resume": {"early_start": False}})
    env.slurm.run("scontrol", "update", "PartitionName=elastic", "State=DOWN")
    one = sbatch(env, "-N1", "--wrap", "sleep 4")
    two = sbatch(env, "-N2", "--wrap", "sleep 4")
    env.slurm.run("scontrol", "update", "PartitionName=elastic", "State=UP")
    wait_for(lambda: {env.slurm.job_state(one), env.slurm.job_state(two)} == {"RUNNING"}, timeout=60,
             what="both jobs running")
    calls = [r for r in bridge_events(env, "resume done") if r["hook"] == "resume"]
    assert [r["created"] for r in calls] == [3], calls  # one call for both jobs
    # Each pod carries its own job: the bridge read this release's resume file.
    owners = {node: pod.metadata.labels["slurm-k8s-bridge/job-id"] for node, pod in bridge_pods(env).items()}
    nodes_of = {job: set(hostlist.expand(job_field(env, job, "NodeList"))) for job in (one, two)}
    assert owners == {node: job for job, nodes in nodes_of.items() for node in nodes}
    wait_for(lambda: {env.slurm.job_state(one), env.slurm.job_state(two)} == {"COMPLETED"}, timeout=60,
             what="both jobs completed")
    wait_for(lambda: not bridge_pods(env), timeout=60, what="pods deleted after SuspendTime")


def test_manual_power_up_and_down_by_an_admin(make_env, version):
    env = make_env()
    env.slurm.run(*release(version).power_up("elastic4"))

    def read() -> NodeFacts:
        """elastic4 as the daemon reads it on this release (JSON from 23.02, 22.05's text)."""
        if release(version).supports("json_node_read"):
            return node_from_json(json.loads(env.slurm.run("scontrol", "--json", "show", "node", "elastic4").stdout)
                                  ["nodes"][0])
        return nodes_from_text(env.slurm.run("scontrol", "--oneliner", "show", "node", "elastic4").stdout,
                               {"elastic4"})["elastic4"]

    # On its way up the node is one the warm pool counts as starting (22.05 adds NOT_RESPONDING
    # until slurmd registers): were it not, the pool would power up another node for it.
    starting = wait_for(lambda: next((f for f in [read()] if nodestate.is_powering_up(f.state)), None), timeout=30,
                        what="elastic4 powering up")
    assert pool.usable(starting), starting.state
    wait_for(lambda: env.slurm.node_states().get("elastic4") == "idle", timeout=60, what="elastic4 up")
    pods = bridge_pods(env)
    assert list(pods) == ["elastic4"]
    assert "slurm-k8s-bridge/job-id" not in pods["elastic4"].metadata.labels
    env.slurm.run(*release(version).power_down("elastic4"))
    wait_for(lambda: not bridge_pods(env), timeout=60, what="the pod deleted at power down")
    wait_for(lambda: env.slurm.node_states().get("elastic4") == "idle~", timeout=60, what="elastic4 powered down")
