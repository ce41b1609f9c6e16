"""$SLURM_RESUME_FILE in both formats Slurm writes (real samples from ../shared/samples)."""

from pathlib import Path

import pytest

from bridge import resumefile
from bridge.errors import ResumeFileError

HERE_SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample(name: str) -> str:
    path = HERE_SAMPLES / name
    return path.read_text()


def test_2205_format_groups_nodes_by_job():
    request = resumefile.parse(sample("resume-file-22.05.json"))
    assert request.nodes == ("elastic1", "elastic2", "elastic3")
    assert [(j.job_id, j.nodes) for j in request.jobs] == [(6, ("elastic1",)), (7, ("elastic2", "elastic3"))]
    assert request.job_of("elastic3").job_id == 7


def test_manual_power_up_has_no_job():
    request = resumefile.parse(sample("resume-file-22.05-manual.json"))
    assert request.nodes == ("elastic4",)
    assert request.job_of("elastic4") is None


def test_2302_format_reads_renamed_and_new_keys():
    request = resumefile.parse(sample("resume-file-23.02.json"))
    assert request.nodes == ("elastic1", "elastic2", "elastic3")
    job = request.job_of("elastic2")
    assert job.job_id == 140814
    assert job.nodes == ("elastic1", "elastic2")
    assert job.nodes_alloc == ("elastic1", "elastic2", "static1")
    assert (job.partition, job.features) == ("elastic", "gpu")
    assert request.job_of("elastic3").reservation == "resv_1"


@pytest.mark.parametrize("text", ["not json", "[]", '{"all_nodes": "x[", "jobs": []}', '{"jobs": [{"nodes": "a"}]}',
                                  "[" * 100000, '{"all_nodes_resume": "a", "x": ' + "[" * 100000 + "]" * 100000 + "}"],
                         ids=["text", "list", "hostlist", "job-shape", "nested", "nested-extra-field"])
def test_malformed_resume_file_is_a_clear_error(text):
    """An error the resume hook turns into one line and its nodes given back (never a traceback
    that leaves them to ResumeTimeout)."""
    with pytest.raises(ResumeFileError) as caught:
        resumefile.parse(text)
    assert "\n" not in str(caught.value)


def test_read_env_reads_the_file_slurm_names(monkeypatch, tmp_path):
    path = tmp_path / "resume"
    path.write_text(sample("resume-file-22.05.json"))
    monkeypatch.setenv("SLURM_RESUME_FILE", str(path))
    assert resumefile.read_env().nodes == ("elastic1", "elastic2", "elastic3")
    monkeypatch.delenv("SLURM_RESUME_FILE")
    assert resumefile.read_env() is None


def test_groups_merge_jobs_that_share_a_node_and_keep_manual_nodes_alone():
    request = resumefile.parse('{"jobs":[{"job_id":1,"nodes":"e[1-2]"},{"job_id":2,"nodes":"e[2-3]"},'
                               '{"job_id":3,"nodes":"e5"}],"all_nodes":"e[1-6]"}')
    assert resumefile.groups(["e1", "e2", "e3", "e4", "e5", "e6"], request) == [
        ((1, 2), ["e1", "e2", "e3"]), ((3,), ["e5"]), ((), ["e4"]), ((), ["e6"])]
    assert resumefile.groups(["e1", "e2"], None) == [((), ["e1"]), ((), ["e2"])]


def test_a_resume_file_that_cannot_be_opened_is_gone_not_malformed(tmp_path, monkeypatch):
    """ENOENT (slurmctld gone) and EACCES (/proc/<pid>/fd of a process being torn down, measured
    after a SIGKILL) both mean "ask Slurm"; what is there but malformed stays a plain error."""
    from bridge.errors import ResumeFileError, ResumeFileGone
    from bridge.resumefile import read_env

    monkeypatch.setenv("SLURM_RESUME_FILE", str(tmp_path / "missing"))
    with pytest.raises(ResumeFileGone):
        read_env()
    denied = tmp_path / "denied"
    denied.write_text("{}")
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    monkeypatch.setenv("SLURM_RESUME_FILE", str(denied))
    with pytest.raises(ResumeFileGone, match="Permission denied"):
        read_env()
    monkeypatch.undo()
    bad = tmp_path / "bad"
    bad.write_text("{jobs")
    monkeypatch.setenv("SLURM_RESUME_FILE", str(bad))
    with pytest.raises(ResumeFileError) as error:
        read_env()
    assert not isinstance(error.value, ResumeFileGone)


def test_from_slurm_keeps_each_job_with_the_nodes_of_this_call():
    from bridge.resumefile import from_slurm

    request = from_slurm(["e1", "e2", "e5"], [(7, ("e1", "e2", "e3")), (8, ("e5",)), (9, ("e9",))])
    assert [(j.job_id, j.nodes, j.nodes_alloc) for j in request.jobs] == [
        (7, ("e1", "e2"), ("e1", "e2", "e3")), (8, ("e5",), ("e5",))]
    assert request.job_of("e5").job_id == 8 and request.nodes == ("e1", "e2", "e5")
