"""Issue 8, end to end: researchers' jobs run as themselves, on their files.

alice and bob (testenv/site.py) type sbatch and srun on the submit host (``runuser``) from
their homes on the site filesystem, which the test nodesets mount as a hostPath at the same
path (the kernel here has no NFS client); the pods know them only through the users
ConfigMap. Everything is read back on the host, as the user would.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import site
from testenv.env import Environment
from tests.e2e.conftest import bridge_pods, wait_for

RESULT_BYTES = 100_000_000
ALICE_ID = "uid=2001(alice) gid=2001(alice) groups=2001(alice),2100(proj)"
BOB_ID = "uid=2002(bob) gid=2002(bob) groups=2002(bob),2100(proj)"


@pytest.fixture
def alice_run() -> Iterator[Path]:
    """A fresh directory of alice's in her home (other environments on this host share it)."""
    yield from _run_dir(site.ALICE, site.ALICE.home)


def _run_dir(user: site.User, parent: Path) -> Iterator[Path]:
    site.ensure()
    directory = parent / f"run-{secrets.token_hex(4)}"
    result = site.run_as(user, None, "mkdir", "-m", "0750", str(directory), cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def as_user(env: Environment, user: site.User, *argv: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 60.0):
    result = site.run_as(user, env.slurm, *argv, cwd=cwd, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)} as {user.name}: {result.stderr}"
    return result


def sbatch_as(env: Environment, user: site.User, cwd: Path, *args: str) -> str:
    return as_user(env, user, "sbatch", "--parsable", *args, cwd=cwd).stdout.strip().split(";")[0]


def finished(env: Environment, job: str) -> str:
    return wait_for(lambda: (state := env.slurm.job_state(job)) not in ("PENDING", "CONFIGURING", "RUNNING",
                                                                         "COMPLETING") and state,
                    timeout=60, what=f"job {job} finished")


def node_bytes(node: str, job: str) -> bytes:
    """What the job's script writes on each node: deterministic, so the host can check it."""
    line = f"{node} {job}\n".encode()
    return (line * (RESULT_BYTES // len(line) + 1))[:RESULT_BYTES]


def test_alice_sbatch_runs_as_her_on_both_nodes_and_her_files_outlive_the_pods(env, alice_run):
    script = alice_run / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "srun -l id\n"
        "srun sh -c 'yes \"$(hostname) $SLURM_JOB_ID\" | head -c %d > result-$(hostname)'\n" % RESULT_BYTES)
    script.chmod(0o755)
    shutil.chown(script, site.ALICE.name, site.ALICE.name)
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "job.sh")
    assert finished(env, job) == "COMPLETED"

    output = alice_run / f"slurm-{job}.out"
    assert sorted(output.read_text().splitlines()) == [f"0: {ALICE_ID}", f"1: {ALICE_ID}"]
    results = {node: alice_run / f"result-{node}" for node in ("elastic1", "elastic2")}
    for path in (output, *results.values()):
        assert (path.stat().st_uid, path.stat().st_gid) == (site.ALICE.uid, site.ALICE.uid), path
    digests = {node: _sha256(path) for node, path in results.items()}
    for node, path in results.items():
        assert path.stat().st_size == RESULT_BYTES
        assert digests[node] == hashlib.sha256(node_bytes(node, job)).hexdigest(), f"{path}: not the bytes written"

    wait_for(lambda: not bridge_pods(env), timeout=40, what="pods deleted after SuspendTime")
    assert {node: _sha256(path) for node, path in results.items()} == digests
    assert output.read_text().count(ALICE_ID) == 2


@pytest.mark.parametrize(("user", "identity"), [(site.ALICE, ALICE_ID), (site.BOB, BOB_ID)])
def test_srun_shows_each_users_own_identity_with_names_on_every_node(env, user, identity):
    result = as_user(env, user, "srun", "-N2", "-l", "sh", "-c", "id; whoami; getent passwd $(id -u) | cut -d: -f1,6")
    lines = sorted(result.stdout.splitlines())
    home = f"{user.name}:{user.home}"
    assert lines == sorted(f"{task}: {text}" for task in "01" for text in (identity, user.name, home))


def test_bob_cannot_read_alices_private_files_across_the_shared_filesystem(env, alice_run):
    as_user(env, site.ALICE, "srun", "-N1", "sh", "-c", "umask 077; echo alice-only > private", cwd=alice_run)
    private = alice_run / "private"
    assert private.read_text() == "alice-only\n" and private.stat().st_mode & 0o777 == 0o600
    denied = as_user(env, site.BOB, "srun", "-N1", "cat", str(private), check=False)
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr
    assert "alice-only" not in denied.stdout
    # What their group proj shares, they both read and write (supplementary groups hold in the pod).
    shared = site.PROJECT / f"shared-{secrets.token_hex(4)}"
    try:
        as_user(env, site.ALICE, "srun", "-N1", "sh", "-c", f"echo from-alice > {shared}; chmod g+rw {shared}")
        as_user(env, site.BOB, "srun", "-N1", "sh", "-c", f"echo from-bob >> {shared}")
        assert shared.read_text() == "from-alice\nfrom-bob\n" and shared.stat().st_gid == site.PROJ.gid
    finally:
        shared.unlink(missing_ok=True)


# A job whose directory no pod mounts is refused at submit (the generated job_submit.lua and
# cli_filter.lua): tests/e2e/test_unmounted_cwd.py.


def test_tmp_is_private_to_each_node_and_gone_after_suspend(env):
    marker = f"/tmp/marker-{secrets.token_hex(4)}"
    as_user(env, site.ALICE, "srun", "-N1", "-w", "elastic1", "sh", "-c", f"echo here > {marker}")
    seen = as_user(env, site.ALICE, "srun", "-N2", "-l", "sh", "-c", f"cat {marker} 2>/dev/null || echo absent").stdout
    assert sorted(seen.splitlines()) == ["0: here", "1: absent"]
    assert not Path(marker).exists()  # not the host's /tmp either
    wait_for(lambda: not bridge_pods(env), timeout=40, what="pods deleted after SuspendTime")
    wait_for(lambda: env.slurm.node_states().get("elastic1") == "idle~", timeout=20, what="elastic1 powered down")
    again = as_user(env, site.ALICE, "srun", "-N1", "-w", "elastic1", "sh", "-c", f"cat {marker} 2>/dev/null || echo absent")
    assert again.stdout == "absent\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
