"""The whole environment (testenv/env.py): what a new user and the e2e tests rely on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testenv.env import IMAGE_ENTRYPOINT, IMAGE_SOURCES, Environment
from testenv.kubeapi import KubeApiServer
from testenv.scheduler import Scheduler
from testenv.slurm import processes

pytestmark = pytest.mark.slurm


def _leftovers(paths: list[Path]) -> list[str]:
    return [str(p) for p in paths if p.exists()] + [f"pid {pid}" for p in paths for pid in processes.processes_using(p)]


def test_stop_leaves_no_daemon_process_or_directory(tmp_path):
    env = Environment().start()
    try:
        paths = [env.dir, env.slurm.state_dir]
        children = [proc.pid for proc in env._procs.values()]
        result = env.slurm.run("srun", "-N2", "hostname", timeout=60)  # pods, slurmd, munged, a follower
        assert sorted(result.stdout.split()) == ["elastic1", "elastic2"]
    finally:
        env.stop()  # what the test checks, and the cleanup when srun failed
    assert _leftovers(paths) == []
    assert [pid for pid in children if processes.is_alive(pid)] == []


def test_with_an_external_api_server_no_stand_in_and_no_scheduler_are_started(tmp_path):
    """KUBECONFIG pointing elsewhere: the environment brings only Slurm and the pod runner."""
    with KubeApiServer(tls=True) as api, Scheduler(kubeconfig=str(api.write_kubeconfig(tmp_path / "admin.yaml"))):
        kubeconfig = tmp_path / "admin.yaml"
        with Environment(kubeconfig=str(kubeconfig)) as env:
            assert sorted(env._procs) == ["runner"]
            assert env.admin_kubeconfig == kubeconfig
            result = env.slurm.run("srun", "-N1", "hostname", timeout=60)
            assert result.stdout.split() == ["elastic1"]


def test_the_process_runtime_starts_the_slurmd_image_as_its_dockerfile_does():
    """The process runtime's stand-in for the slurmd image must have the image's PID 1 (tini):
    with the script as PID 1 instead, a pod deleted while slurmd starts would wait out its grace
    period there and not in a real cluster, or the other way round."""
    line = next(line for line in (IMAGE_SOURCES / "Dockerfile").read_text().splitlines()
                if line.startswith("ENTRYPOINT "))
    *init, script = json.loads(line.removeprefix("ENTRYPOINT "))
    assert init == IMAGE_ENTRYPOINT[:-1]
    assert script == "/usr/local/bin/slurmd-entrypoint" and IMAGE_ENTRYPOINT[-1] == str(IMAGE_SOURCES / "entrypoint.sh")
    assert os.access(IMAGE_ENTRYPOINT[0], os.X_OK), "testenv/setup.sh installs Debian's tini"
