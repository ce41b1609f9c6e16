"""$SLURM_RESUME_FILE as real slurmctlds of each tested release wrote it, read by the bridge.

The samples were captured by `python -m testenv.capture_samples <release>`: one ResumeProgram call
for two jobs, the first of which was also given a node that was already up (elastic4, powered up
by hand before), and a manual power up.
"""

from pathlib import Path

import pytest

from bridge import resumefile

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
RELEASES = ["24.11", "26.05"]


def parse(name: str) -> resumefile.ResumeRequest:
    return resumefile.parse((SAMPLES / name).read_text())


@pytest.mark.parametrize("release", RELEASES)
def test_two_jobs_resumed_in_one_call_get_their_own_nodes(release):
    request = parse(f"resume-file-{release}.json")
    assert request.nodes == ("elastic1", "elastic2")
    first, second = request.jobs
    # The first job also runs on elastic4, which was up already: only elastic1 needs a pod.
    assert (first.nodes, first.nodes_alloc) == (("elastic1",), ("elastic1", "elastic4"))
    assert (second.nodes, second.nodes_alloc) == (("elastic2",), ("elastic2",))
    assert (first.partition, first.features) == ("elastic", None)
    assert (second.partition, second.features) == ("elastic", "ssd")
    assert request.job_of("elastic2") == second
    assert resumefile.groups(["elastic1", "elastic2"], request) == [
        ((first.job_id,), ["elastic1"]), ((second.job_id,), ["elastic2"])]


@pytest.mark.parametrize("release", RELEASES)
def test_manual_power_up_resumes_the_node_alone(release):
    request = parse(f"resume-file-{release}-manual.json")
    assert request.nodes == ("elastic4",)
    assert request.jobs == ()
    assert resumefile.groups(["elastic4"], request) == [((), ["elastic4"])]
