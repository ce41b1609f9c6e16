"""End-to-end tests: real slurmctld and munged, the bridge's hooks run by slurmctld itself,
the Kubernetes API stand-in, its scheduler and the pod runner running slurmd pods.

Each test gets an environment of its own (about 2 s to start) so no test depends on another's
leftovers; the environment's stop() checks nothing is left behind.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv import site
from testenv.env import NAMESPACE, Environment
from tests import waiting

pytestmark = pytest.mark.e2e


def _have_slurm() -> bool:
    return shutil.which("slurmctld", path="/usr/sbin:/usr/bin") is not None and \
        shutil.which("unshare", path="/usr/bin:/bin") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries what its environments looked like at the failure, so a
    failure seen once in CI can be understood from CI's output alone."""
    report = yield
    if report.failed and call.when == "call":
        for i, env in enumerate(getattr(item, "_environments", [])):
            report.sections.append((f"environment {i + 1} at the failure", env.diagnostics()))
    return report


@pytest.fixture
def make_env(request: pytest.FixtureRequest) -> Iterator[Callable[..., Environment]]:
    if not _have_slurm():
        pytest.fail("Slurm is not installed: run testenv/setup.sh (testenv/test.sh does)")
    started: list[Environment] = []
    request.node._environments = started

    def make(**kwargs: Any) -> Environment:
        kwargs.setdefault("follow_mode", request.config.getoption("follow_mode"))
        env = Environment(**kwargs).start()
        started.append(env)
        env.slurm.wait_for_first_scheduling_pass()
        return env

    yield make
    try:
        for env in started:
            _check_followed_by_the_daemon(env)
    finally:
        for env in started:
            env.stop()


def _check_followed_by_the_daemon(env: Environment) -> None:
    """In daemon mode the environment's daemon lived through the test and no resume hook
    started a follower process of its own: the daemon did all the following."""
    if env.follow_mode != "daemon":
        return
    assert env.daemon_running(), "the environment's daemon exited during the test"
    followers = [r for r in env.bridge_log_records() if r.get("hook") == "follow"]
    assert not followers, f"a resume hook started a follower although the daemon ran: {followers[0]}"


@pytest.fixture
def env(make_env) -> Environment:
    return make_env()


# Every look may run scontrol: a slower pace than the in-process tests'.
wait_for = functools.partial(waiting.wait_for, interval=0.2)


@functools.cache
def researcher_dir() -> Path:
    """A directory of alice's in her home, where :func:`sbatch` submits from: the site's homes
    are mounted in every nodeset's pods, so her jobs run there, as her, and write their output
    there, as on a static node. One per test process, removed at its exit."""
    site.ensure()
    directory = site.ALICE.home / f"e2e-{os.getpid()}"
    made = site.run_as(site.ALICE, None, "mkdir", "-p", "-m", "0750", str(directory), cwd=Path("/"))
    assert made.returncode == 0, made.stderr
    atexit.register(shutil.rmtree, directory, True)
    return directory


def sbatch(env: Environment, *args: str) -> str:
    """A job as a researcher submits it: alice's ``sbatch``, from her :func:`researcher_dir`."""
    result = site.run_as(site.ALICE, env.slurm, "sbatch", "--parsable", *args, cwd=researcher_dir())
    assert result.returncode == 0, f"sbatch {' '.join(args)} as alice: {result.stderr}"
    return result.stdout.strip().split(";")[0]


def job_output(job: str) -> str:
    """What alice finds in her directory after the job: its ``slurm-<id>.out``."""
    return (researcher_dir() / f"slurm-{job}.out").read_text()


def bridge_pods(env: Environment) -> dict[str, Any]:
    """The bridge's pods by Slurm node name."""
    from lightkube.resources.core_v1 import Pod

    client = env.kube()
    pods = client.list(Pod, namespace=NAMESPACE, labels={"app.kubernetes.io/managed-by": "slurm-k8s-bridge"})
    return {p.metadata.annotations["slurm-k8s-bridge/node-name"]: p for p in pods}


def _field(line: str, field: str) -> str:
    """A ``Key=value`` of a ``scontrol -o`` line; values may hold spaces (Reason, AdminComment)."""
    match = re.search(rf"(?:^| ){field}=(.*?)(?= [A-Za-z]+=|$)", line)
    return match.group(1) if match else ""


def node_field(env: Environment, node: str, field: str) -> str:
    return _field(env.slurm.run("scontrol", "-o", "show", "node", node).stdout, field)


def job_field(env: Environment, job: str, field: str) -> str:
    return _field(env.slurm.run("scontrol", "-o", "show", "job", job).stdout, field)


def run_hook(env: Environment, hook: str, hostlist: str) -> subprocess.CompletedProcess[str]:
    """Run a hook the way slurmctld does: as SlurmUser, bare environment, hostlist as argv[1]."""
    from testenv.env import BIN

    return subprocess.run([str(BIN / hook), hostlist], env={"SLURM_CONF": str(env.slurm.conf_path)},
                          cwd=env.slurm.log_dir, capture_output=True, text=True, timeout=120,
                          user=env.slurm_user, group=env.slurm_user, extra_groups=[])
