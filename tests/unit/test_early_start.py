"""Early start (bridge/early.py): pods from PrologSlurmctld at allocation, and the guard that leaves
nothing behind a job cancelled before Slurm called ResumeProgram."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest

from bridge import early, resume

ALLOCATED_COLD = ("MIXED", "CLOUD", "POWERED_DOWN")
IDLE_COLD = ("IDLE", "CLOUD", "POWERED_DOWN")


@pytest.fixture
def factory(kube):
    return lambda: contextlib.nullcontext(kube)


@pytest.fixture(autouse=True)
def followers(monkeypatch):
    """The followers the early start would start: (job ids, nodes) groups, one list per spawn."""
    from bridge import follow

    spawned = []
    monkeypatch.setattr(follow, "spawn", lambda path, groups: spawned.append(groups))
    return spawned


def set_state(slurm, state, *nodes):
    for node in nodes:
        slurm.facts[node] = replace(slurm.facts[node], state=state)


def start_job(job_id, nodes, config, slurm, log, factory):
    """A job allocated the powered-down ``nodes``, its prolog's early start run."""
    set_state(slurm, ALLOCATED_COLD, *nodes)
    slurm.add_job(job_id, nodes)
    return early.start(job_id, nodes, config=config, slurm=slurm, kube_factory=factory, log=log)


@pytest.mark.parametrize(("state", "expected"), [
    (("MIXED", "CLOUD", "POWERED_DOWN"), True),
    (("ALLOCATED", "CLOUD", "POWERED_DOWN"), True),
    (["MIXED", "CLOUD", "POWERED_DOWN"], True),  # 23.02+ JSON lists
    (("IDLE", "CLOUD", "POWERED_DOWN"), False),  # not allocated: a manual power-up's business
    (("MIXED", "CLOUD", "POWERING_UP"), False),  # ResumeProgram already ran
    (("MIXED", "CLOUD"), False),  # registered
    (("IDLE", "CLOUD", "POWERED_DOWN", "POWERING_DOWN"), False),
    (("MIXED", "CLOUD", "POWERED_DOWN", "POWER_DOWN"), False),  # suspend under way: the hook waits for it
])
def test_cold_means_allocated_and_powered_down_before_resume_program(state, expected):
    assert early.cold(tuple(state)) is expected


def test_prolog_creates_the_jobs_pods_labelled_with_the_job(config, slurm, kube, log, factory):
    set_state(slurm, ALLOCATED_COLD, "elastic1", "elastic2")
    created = early.start(41, ["elastic1", "elastic2"], config=config, slurm=slurm, kube_factory=factory, log=log)
    assert created == ["elastic1", "elastic2"]
    assert {p["metadata"]["labels"]["slurm-k8s-bridge/job-id"] for p in kube.pods.values()} == {"41"}


def test_the_prolog_follows_all_of_the_jobs_pods_and_the_hook_that_follows_none(config, slurm, kube, log,
                                                                               factory, followers):
    """The hook may be called for only the nodes that did not register first: the follower that can
    release the whole job is the prolog's."""
    from bridge.hooks import follow_created
    from bridge.resumefile import parse

    set_state(slurm, ALLOCATED_COLD, "elastic1", "elastic2", "elastic3")
    early.start(41, ["elastic1", "elastic2", "elastic3"], config=config, slurm=slurm, kube_factory=factory, log=log)
    assert followers == [[((41,), ["elastic1", "elastic2", "elastic3"])]]
    request = parse('{"jobs":[{"job_id":41,"nodes":"elastic3"}],"all_nodes":"elastic3"}')
    outcome = resume.resume(["elastic3"], config=config, slurm=slurm, kube=kube, request=request, log=log)
    follow_created(outcome, request, config=config, kube=kube, log=log)
    assert len(followers) == 1


def test_the_resume_hook_that_follows_creates_nothing_twice(config, slurm, kube, log, factory):
    set_state(slurm, ALLOCATED_COLD, "elastic1", "elastic2")
    early.start(41, ["elastic1", "elastic2"], config=config, slurm=slurm, kube_factory=factory, log=log)
    from bridge.resumefile import parse

    request = parse('{"jobs":[{"job_id":41,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    outcome = resume.resume(["elastic1", "elastic2"], config=config, slurm=slurm, kube=kube, request=request, log=log)
    assert outcome.created == [] and sorted(outcome.existing) == ["elastic1", "elastic2"]
    assert len(kube.pods) == 2 and slurm.down == {} and slurm.powered_down == {}


def test_nodes_already_up_cost_one_slurm_read_and_no_api_client(config, slurm, log):
    set_state(slurm, ("MIXED", "CLOUD"), "elastic1")

    def no_client():
        raise AssertionError("the API client was built for a job on nodes that are up")

    assert early.start(7, ["elastic1"], config=config, slurm=slurm, kube_factory=no_client, log=log) == []


def test_the_prologs_own_read_is_used_not_read_again(config, slurm, kube, log, factory):
    # The prolog read the nodes once to know whether they are up; the early start acts on that read.
    set_state(slurm, ("MIXED", "CLOUD"), "elastic1")  # what a second read would say
    facts = {"elastic1": replace(slurm.facts["elastic1"], state=ALLOCATED_COLD)}
    assert early.start(7, ["elastic1"], config=config, slurm=slurm, kube_factory=factory, log=log,
                       facts=facts) == ["elastic1"]
    assert sorted(kube.pods) == ["linux-elastic1"]


def test_static_nodes_of_a_mixed_job_are_left_alone(config, slurm, kube, log, factory):
    from bridge.slurm import NodeFacts

    slurm.facts["static1"] = NodeFacts("static1", cpus=4, real_memory_mb=1000, state=ALLOCATED_COLD)
    set_state(slurm, ALLOCATED_COLD, "elastic1")
    assert early.start(7, ["static1", "elastic1"], config=config, slurm=slurm, kube_factory=factory,
                       log=log) == ["elastic1"]
    assert sorted(kube.pods) == ["linux-elastic1"]


def test_a_pod_the_api_refuses_releases_the_job_as_the_resume_hook_would(config, slurm, kube, log, factory):
    from bridge.errors import KubernetesError

    set_state(slurm, ALLOCATED_COLD, "elastic1", "elastic2")
    slurm.add_job(41, ["elastic1", "elastic2"])
    kube.refuse["linux-elastic2"] = KubernetesError('Forbidden: pods "linux-elastic2" is forbidden: quota', code=403)
    created = early.start(41, ["elastic1", "elastic2"], config=config, slurm=slurm, kube_factory=factory, log=log)
    assert created == []  # elastic1's pod was released with its job: nothing for the guard
    assert kube.pods == {}
    assert slurm.down["elastic2"].startswith("slurm-k8s-bridge: pod linux-elastic2: Forbidden")
    assert slurm.jobs[41]["state"] == "PENDING"  # requeued


def test_cancelled_before_resume_program_leaves_no_pod(config, slurm, kube, log, factory):
    created = start_job(41, ["elastic1", "elastic2"], config, slurm, log, factory)
    slurm.jobs[41]["state"] = "CANCELLED"
    set_state(slurm, IDLE_COLD, "elastic1", "elastic2")
    assert early.clean_up(41, created, config=config, slurm=slurm, kube_factory=factory, log=log) == created
    assert kube.pods == {}


def test_a_job_still_starting_keeps_its_pods(config, slurm, kube, log, factory):
    created = start_job(41, ["elastic1"], config, slurm, log, factory)
    assert early.clean_up(41, created, config=config, slurm=slurm, kube_factory=factory, log=log) == []
    assert sorted(kube.pods) == ["linux-elastic1"]


def test_nodes_slurm_is_powering_up_are_left_to_slurms_own_suspend(config, slurm, kube, log, factory):
    created = start_job(41, ["elastic1"], config, slurm, log, factory)
    slurm.jobs[41]["state"] = "CANCELLED"
    set_state(slurm, ("IDLE", "CLOUD", "POWERING_UP"), "elastic1")
    assert early.clean_up(41, created, config=config, slurm=slurm, kube_factory=factory, log=log) == []
    assert sorted(kube.pods) == ["linux-elastic1"]


def test_clean_up_never_deletes_the_pod_of_another_job(config, slurm, kube, log, factory):
    created = start_job(41, ["elastic1"], config, slurm, log, factory)
    slurm.jobs[41]["state"] = "CANCELLED"
    # Job 42 took the node since and its own pod replaced job 41's.
    kube.pods["linux-elastic1"]["metadata"]["labels"]["slurm-k8s-bridge/job-id"] = "42"
    assert early.clean_up(41, created, config=config, slurm=slurm, kube_factory=factory, log=log) == []
    assert sorted(kube.pods) == ["linux-elastic1"]


def test_early_start_can_be_turned_off(write_config, tmp_path):
    from bridge import config as config_module
    from tests.conftest import BASIC_CONFIG

    text = BASIC_CONFIG.replace("resume:\n  state_dir:", "resume:\n  early_start: false\n  state_dir:")
    assert config_module.load(str(write_config(text))).resume.early_start is False
    assert config_module.load(str(write_config())).resume.early_start is True
