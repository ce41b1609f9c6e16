"""Issue 8, "Output never lost": a job whose directory or output no pod mounts is refused when
alice types the command, with the reason on her terminal, instead of running in the pod's
private /tmp (slurmstepd's fallback) or failing later with a bare JobLaunchFailure.

The environment installs what ``slurm-k8s-bridge slurm-lua`` generates from its nodesets (which
mount the site's homes, not ``unmounted/``): job_submit.lua in slurmctld for new jobs, and
cli_filter.lua for srun steps, on the submit host and, served configless, in the pods.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import site
from tests.e2e.conftest import bridge_pods, wait_for

REASON = ("slurm-k8s-bridge: working directory {dir} is not on a writable filesystem the elastic nodes mount "
          "(nodeset elastic mounts ")


def _user_dir(parent: Path) -> Iterator[Path]:
    site.ensure()
    directory = parent / f"run-{secrets.token_hex(4)}"
    assert site.run_as(site.ALICE, None, "mkdir", "-m", "0750", str(directory), cwd=Path("/")).returncode == 0
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def home_dir() -> Iterator[Path]:
    yield from _user_dir(site.ALICE.home)


@pytest.fixture
def unmounted_dir() -> Iterator[Path]:
    yield from _user_dir(site.UNMOUNTED / site.ALICE.name)


def alice(env, *argv: str, cwd: Path):
    return site.run_as(site.ALICE, env.slurm, *argv, cwd=cwd)


def alices_jobs(env) -> list[str]:
    return env.slurm.run("squeue", "-h", "-u", site.ALICE.name, "-o", "%i").stdout.split()


def test_sbatch_from_a_directory_no_pod_mounts_is_refused_at_submit_with_the_reason(env, unmounted_dir, home_dir):
    refused = alice(env, "sbatch", "-N1", "--wrap", "echo ran > ran", cwd=unmounted_dir)
    assert refused.returncode == 1
    assert f"sbatch: error: {REASON.format(dir=unmounted_dir)}{site.HOME}" in refused.stderr
    assert refused.stdout == ""
    assert alices_jobs(env) == [] and bridge_pods(env) == {}  # no job, no pod: nothing anywhere
    assert list(unmounted_dir.iterdir()) == []

    # From her home, output sent to /tmp would land in the pod's /tmp and vanish with it.
    to_tmp = alice(env, "sbatch", "-N1", "-o", "/tmp/out-%j.txt", "--wrap", "true", cwd=home_dir)
    assert to_tmp.returncode == 1
    assert "sbatch: error: slurm-k8s-bridge: output file /tmp/out-%j.txt is not on a writable" in to_tmp.stderr

    # A pending job cannot be moved there either (scontrol update runs slurm_job_modify).
    held = alice(env, "sbatch", "--parsable", "--hold", "-N1", "--wrap", "true", cwd=home_dir).stdout.strip()
    moved = alice(env, "scontrol", "update", f"JobId={held}", f"WorkDir={unmounted_dir}", cwd=home_dir)
    assert moved.returncode == 1, moved.stderr
    assert moved.stderr == f"Unspecified error for job {held}\n"  # 22.05 shows no user message on update
    assert env.slurm.run("scontrol", "-o", "show", "job", held).stdout.count(f"WorkDir={home_dir} ") == 1
    env.slurm.run("scancel", held)

    accepted = alice(env, "sbatch", "--parsable", "-N1", "--wrap", "echo ran > ran", cwd=home_dir)
    assert accepted.returncode == 0, accepted.stderr
    job = accepted.stdout.strip()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job} completed")
    assert (home_dir / "ran").read_text() == "ran\n"
    assert (home_dir / f"slurm-{job}.out").exists()


def test_srun_from_a_directory_no_pod_mounts_is_refused_in_and_outside_an_allocation(env, unmounted_dir, home_dir):
    # Outside an allocation srun asks for a new job: slurmctld's job_submit.lua refuses it.
    outside = alice(env, "srun", "-N1", "sh", "-c", "echo ran > ran", cwd=unmounted_dir)
    assert outside.returncode == 1
    assert f"srun: error: {REASON.format(dir=unmounted_dir)}" in outside.stderr
    assert alices_jobs(env) == [] and bridge_pods(env) == {}

    # Inside an allocation (salloc from her home), a step from the unmounted directory never
    # reaches slurmctld's job_submit: cli_filter.lua on the submit host refuses it.
    marker = f"/tmp/marker-{secrets.token_hex(4)}"
    inside = alice(env, "salloc", "-N1", "sh", "-c",
                   f"cd {unmounted_dir} && srun sh -c 'echo ran > {marker}; echo ran > ran'; echo \"srun exit $?\"; "
                   f"cd {home_dir} && srun sh -c 'cat {marker} 2>&1 || true; pwd'", cwd=home_dir)
    assert inside.returncode == 0, inside.stderr
    assert f"srun: error: lua: {REASON.format(dir=unmounted_dir)}" in inside.stderr, inside.stderr
    assert inside.stdout.splitlines()[0] == "srun exit 1"
    # The refused step wrote nothing: not in the pod's /tmp, not beside her.
    assert inside.stdout.splitlines()[1:] == [f"cat: {marker}: No such file or directory", str(home_dir)]
    assert list(unmounted_dir.iterdir()) == []


def test_srun_in_a_batch_script_in_the_pod_is_checked_there_too(env, home_dir):
    """slurmctld serves cli_filter.lua to configless slurmd: srun in a pod checks its directory."""
    script = home_dir / "job.sh"
    script.write_text("#!/bin/bash\ncd /var/tmp && srun -N1 sh -c 'echo ran > ran'\necho \"srun exit $?\"\n"
                      f"cd {home_dir} && srun -N1 pwd\n")
    script.chmod(0o755)
    shutil.chown(script, site.ALICE.name, site.ALICE.name)
    submitted = alice(env, "sbatch", "--parsable", "-N1", "job.sh", cwd=home_dir)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what=f"job {job} completed")
    output = (home_dir / f"slurm-{job}.out").read_text().splitlines()
    assert output[1:] == ["srun: error: cli_filter plugin terminated with error", "srun exit 1", str(home_dir)], output
    assert output[0].startswith(f"srun: error: lua: {REASON.format(dir='/var/tmp')}{site.HOME}")
