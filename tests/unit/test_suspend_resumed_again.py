"""A slow SuspendProgram and a node resumed again before its deletes go out.

Slurm calls SuspendProgram, counts the node off once SuspendTimeout has passed, and may then
resume it for a new job while the suspend is still under way (the API throttled, deletes
retried). The pod is then the new job's, with the same name: the suspend must not delete it.
"""

import dataclasses

from bridge import owed, resume, suspend
from bridge.errors import SlurmError
from bridge.resumefile import JobRequest, ResumeRequest

POWERING_DOWN = ("IDLE", "CLOUD", "POWERING_DOWN")
POWERING_UP = ("MIXED", "CLOUD", "POWERING_UP")


def resume_for(job: int, node: str, *, config, slurm, kube, log) -> None:
    request = ResumeRequest(nodes=(node,), jobs=(JobRequest(job_id=job, nodes=(node,)),))
    outcome = resume.resume([node], config=config, slurm=slurm, kube=kube, request=request, log=log)
    assert outcome.created == [node] or outcome.existing == [node], outcome


def set_state(slurm, node: str, state: tuple[str, ...]) -> None:
    slurm.facts[node] = dataclasses.replace(slurm.facts[node], state=state)


def job_of(kube, name: str) -> str:
    return kube.pods[name]["metadata"]["labels"]["slurm-k8s-bridge/job-id"]


def test_a_node_resumed_for_a_new_job_during_a_slow_suspend_keeps_the_new_jobs_pod(config, slurm, kube, log):
    resume_for(1, "elastic1", config=config, slurm=slurm, kube=kube, log=log)
    set_state(slurm, "elastic1", POWERING_DOWN)  # job 1 ended, SuspendTime passed: Slurm calls suspend
    answer = slurm.node_facts

    def resumed_meanwhile(nodes):
        # The suspend has listed job 1's pod; SuspendTimeout passes, job 2 gets elastic1 and its
        # resume replaces the old pod before the suspend asks Slurm and deletes.
        slurm.node_facts = answer
        set_state(slurm, "elastic1", POWERING_UP)
        resume_for(2, "elastic1", config=config, slurm=slurm, kube=kube, log=log)
        return answer(nodes)

    slurm.node_facts = resumed_meanwhile
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm)
    assert outcome.kept == ["elastic1"] and outcome.deleted == [] and outcome.failed == {}
    assert job_of(kube, "linux-elastic1") == "2"  # job 2's node stays up
    assert owed.owed(config.resume.state_dir) == {}  # and no later hook call deletes it either


def test_a_node_still_powering_down_loses_its_pod(config, slurm, kube, log):
    resume_for(1, "elastic1", config=config, slurm=slurm, kube=kube, log=log)
    resume_for(2, "elastic2", config=config, slurm=slurm, kube=kube, log=log)
    set_state(slurm, "elastic1", POWERING_DOWN)
    set_state(slurm, "elastic2", POWERING_UP)  # resumed again: only elastic2 keeps its pod
    outcome = suspend.suspend(["elastic1", "elastic2"], config=config, kube=kube, log=log, slurm=slurm)
    assert outcome.deleted == ["elastic1"] and outcome.kept == ["elastic2"]
    assert list(kube.pods) == ["linux-elastic2"]


def test_slurm_not_answering_the_recheck_deletes_as_asked(config, slurm, kube, log):
    resume_for(1, "elastic1", config=config, slurm=slurm, kube=kube, log=log)

    def no_answer(nodes):
        raise SlurmError("scontrol: Unable to contact slurm controller")

    slurm.node_facts = no_answer
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm)
    assert outcome.deleted == ["elastic1"] and kube.pods == {}


def test_a_resume_given_up_while_powering_up_loses_its_pod(config, slurm, kube, log):
    # The bridge powers a failed resume's nodes down (POWER_DOWN_FORCE): Slurm may show both flags.
    resume_for(1, "elastic1", config=config, slurm=slurm, kube=kube, log=log)
    set_state(slurm, "elastic1", ("MIXED", "CLOUD", "POWERING_UP", "POWERING_DOWN"))
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm)
    assert outcome.deleted == ["elastic1"] and kube.pods == {}


def test_an_admins_suspend_deletes_nothing_when_slurm_cannot_say_which_nodes_run_jobs(config, slurm, kube, log):
    # `slurm-k8s-bridge suspend` (strict): a pod is deleted only once Slurm says its node is off;
    # SuspendProgram (not strict) deletes as asked, Slurm counting its nodes off already.
    import pytest

    resume_for(1, "elastic1", config=config, slurm=slurm, kube=kube, log=log)

    def unreachable(nodes):
        raise SlurmError("scontrol: Unable to contact slurm controller")

    slurm.node_facts = unreachable
    with pytest.raises(SlurmError, match="nothing was deleted"):
        suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm, strict=True)
    assert list(kube.pods) == ["linux-elastic1"] and owed.owed(config.resume.state_dir) == {}
    outcome = suspend.suspend(["elastic1"], config=config, kube=kube, log=log, slurm=slurm)
    assert outcome.deleted == ["elastic1"] and not kube.pods
