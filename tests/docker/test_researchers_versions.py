"""Issue 8 on every supported Slurm release: jobs run as the researcher who submitted them.

For 24.11 and 26.05 the controller's container is the submit host (testenv/ctld_container.py):
the site filesystem is mounted there at the same path and the site's users (alice 2001, bob
2002, group proj 2100, testenv/site.py) are in its own passwd and group, as LDAP would put
them on a login node. alice and bob type sbatch and srun there (``docker exec -u``); their
files are read back on this host, as the user would on the shared filesystem. 22.05 is the
host's own controller, with the same Docker runtime.

One environment per release for the whole module (the matrix stays cheap). Its nodes are two
nodesets of the same image: ``elastic[1-2]`` with the site's users ConfigMap (what the bridge
ships), ``elastic[3-4]`` without, to measure what each release needs for identity without
the passwd/group lines (docs/hpc-nodes.md, "Users and groups per Slurm release").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import docker as engine
from testenv import site
from testenv.env import Environment
from tests.e2e.test_researchers import (  # noqa: F401 (alice_run: a fixture used here)
    ALICE_ID,
    BOB_ID,
    alice_run,
    as_user,
    finished,
    sbatch_as,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

HOST_RELEASE = engine.release_of(engine.slurm_version())
WITH_USERS, WITHOUT_USERS = "elastic[1-2]", "elastic[3-4]"
"""The nodesets: with the site's users ConfigMap (the default the bridge ships), and without."""

# What a job of alice's sees on a pod WITHOUT the users' passwd/group lines, batch and srun
# alike (measured on each release: the same): Slurm gives the exact numbers, uid, gid and
# supplementary groups, from the submit host; every name needs NSS inside the pod.
PROBE = ("id; whoami 2>&1; stat -c %U:%G probe; getent passwd alice || echo no-passwd-entry; "
         "getent group proj || echo no-group-entry")
SEEN_WITHOUT_USERS = ["uid=2001 gid=2001 groups=2001,2100", "whoami: cannot find name for user ID 2001",
                 "UNKNOWN:UNKNOWN", "no-passwd-entry", "no-group-entry"]
SEEN_WITH_USERS = ["uid=2001(alice) gid=2001(alice) groups=2001(alice),2100(proj)", "alice", "alice:alice",
                   f"alice:x:2001:2001:Alice:{site.ALICE.home}:/bin/bash", "proj:x:2100:alice,bob"]


@pytest.fixture(scope="module", params=list(engine.SLURM_RELEASES))
def release(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def env(release: str, docker_host: str) -> Iterator[Environment]:
    containerised = None if release == HOST_RELEASE else release
    image = engine.slurmd_image(containerised)
    environment = Environment(runtime="docker", slurm_version=containerised,
                              nodesets=[{"name": "site", "nodes": WITH_USERS, "image": image},
                                        {"name": "bare", "nodes": WITHOUT_USERS, "image": image, "users": None}])
    try:
        environment.start()
        environment.slurm.wait_for_first_scheduling_pass()
        yield environment
    finally:
        environment.stop()


def submit_host_identity(env: Environment, user: site.User) -> str:
    """What ``id`` says for the user where they log in and submit."""
    return as_user(env, user, "id", cwd=Path("/")).stdout.strip()


def test_alice_batch_job_runs_as_on_the_submit_host_and_writes_her_files(env, alice_run):
    identity = submit_host_identity(env, site.ALICE)
    assert identity == ALICE_ID
    script = alice_run / "job.sh"
    script.write_text("#!/bin/bash\nsrun -l sh -c 'id; whoami'\necho done > result\n")
    script.chmod(0o755)
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "-w", WITH_USERS, "job.sh")
    assert finished(env, job) == "COMPLETED"
    output = alice_run / f"slurm-{job}.out"
    assert sorted(output.read_text().splitlines()) == sorted(
        f"{task}: {line}" for task in "01" for line in (identity, "alice"))
    for path in (output, alice_run / "result"):
        assert (path.stat().st_uid, path.stat().st_gid) == (site.ALICE.uid, site.ALICE.uid), path


@pytest.mark.parametrize(("user", "identity"), [(site.ALICE, ALICE_ID), (site.BOB, BOB_ID)])
def test_srun_as_each_user_shows_their_identity_with_names(env, user, identity):
    result = as_user(env, user, "srun", "-N2", "-w", WITH_USERS, "-l", "sh", "-c",
                     "id; whoami; getent passwd $(id -u) | cut -d: -f1,6")
    home = f"{user.name}:{user.home}"
    assert sorted(result.stdout.splitlines()) == sorted(
        f"{task}: {text}" for task in "01" for text in (identity, user.name, home))


def test_bob_cannot_read_alices_private_file(env, alice_run):
    as_user(env, site.ALICE, "srun", "-N1", "-w", "elastic1", "sh", "-c", "umask 077; echo alice-only > private",
            cwd=alice_run)
    private = alice_run / "private"
    assert private.read_text() == "alice-only\n" and private.stat().st_mode & 0o777 == 0o600
    assert private.stat().st_uid == site.ALICE.uid
    denied = as_user(env, site.BOB, "srun", "-N1", "-w", "elastic2", "cat", str(private), check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert "alice-only" not in denied.stdout


@pytest.mark.parametrize(("nodes", "expected"), [(WITHOUT_USERS, SEEN_WITHOUT_USERS), (WITH_USERS, SEEN_WITH_USERS)],
                         ids=["without-users", "with-users"])
def test_identity_with_and_without_the_users_passwd_and_group_lines(env, release, alice_run, nodes, expected):
    """The table of docs/hpc-nodes.md ("Users and groups per Slurm release"): a batch job and
    its srun steps of alice's on the nodesets with and without the users ConfigMap."""
    (alice_run / "probe").write_text("")
    os.chown(alice_run / "probe", site.ALICE.uid, site.ALICE.uid)
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "-w", nodes, "--wrap", f"{PROBE}; srun -l sh -c '{PROBE}'")
    state = finished(env, job)
    lines = (alice_run / f"slurm-{job}.out").read_text().splitlines()
    print(f"release {release}, {nodes}: {state} {lines}")
    assert state == "COMPLETED"
    assert lines[:len(expected)] == expected  # the batch script
    assert sorted(lines[len(expected):]) == sorted(f"{task}: {line}" for task in "01" for line in expected)
