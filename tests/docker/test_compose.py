"""docker/docker-compose.yml: valid for Compose v1 (`docker-compose`, Debian's) and v2 (`docker
compose`), and its profile without kind runs the researcher's `sbatch -N2`, from their home on
the login node (the slurmctld container), to completion as them, with the output file in that
home after the pods are gone and back to zero pods.

kind's node image (kindest/node, Docker Hub) cannot be pulled here, so the kind profile is proven
only as far as both Compose versions accept it; the stand-in profile runs the same slurmctld
service with the project's API stand-in and Docker-runtime pods instead of a kind cluster.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testenv import docker as engine
from tests import waiting
from tests.docker.conftest import list_containers
from testenv.slurm import free_ports

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yml"

# Keys of a service and of build in the Compose Specification that both v1 (1.28+) and v2 read.
SERVICE_KEYS = {"image", "build", "hostname", "network_mode", "environment", "volumes", "stop_grace_period",
                "entrypoint", "command", "depends_on", "profiles"}
BUILD_KEYS = {"context", "dockerfile", "target", "args"}
PROFILE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def compose_tools() -> list[tuple[str, list[str]]]:
    return [("v1", ["docker-compose"]), ("v2", [str(engine.COMPOSE_V2)])]


def run_compose(tool: list[str], *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*tool, "-f", str(COMPOSE_FILE), *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(params=compose_tools(), ids=lambda tool: tool[0])
def compose(request: pytest.FixtureRequest, docker_host: str) -> list[str]:
    name, tool = request.param
    if shutil.which(tool[0]) is None:
        pytest.fail(f"Compose {name} ({tool[0]}) is missing: run testenv/docker-setup.sh", pytrace=False)
    return tool


@pytest.mark.parametrize("profile", ["kind", "standin"])
def test_compose_file_is_valid(compose: list[str], profile: str) -> None:
    result = run_compose(compose, "--profile", profile, "config", env={})
    assert result.returncode == 0, result.stderr
    services = set(yaml.safe_load(result.stdout)["services"])
    assert {"slurmctld", "slurmd-image", profile} <= services
    assert "WARN" not in result.stderr, result.stderr


def test_compose_file_uses_only_what_both_versions_read() -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert "version" not in document  # v2 warns that it is obsolete; v1.27+ does without
    assert set(document) <= {"services", "volumes", "x-slurm-build-args"}
    for name, service in document["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        for profile in service.get("profiles", []):
            assert PROFILE_NAME.match(profile), profile
        assert isinstance(service.get("depends_on", []), list)  # the short form: both read it alike
        build = service["build"]
        assert set(build) <= BUILD_KEYS, name
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        if "target" in build:
            assert re.search(rf"^FROM .+ AS {build['target']}$", dockerfile.read_text(), re.MULTILINE), name
        assert service["image"].startswith("slurm-k8s-bridge/")  # never pulled: built here


@pytest.fixture
def standin_env(tmp_path: Path, docker_host: str) -> Iterator[dict[str, str]]:
    ctld = free_ports(3)  # slurmctld, then one port per node: all on the host's network
    first_slurmd = ctld + 1
    state = Path("/var/tmp") / f"slurm-k8s-bridge-standin-{os.getpid()}"
    home = Path("/var/tmp") / f"slurm-k8s-bridge-home-{os.getpid()}"
    yield {
        "DOCKER_HOST": docker_host, "DOCKER_SOCKET": docker_host.removeprefix("unix://"),
        "SLURM_VERSION": engine.slurm_version(), "SLURMCTLD_PORT": str(ctld), "SLURMD_BASE_PORT": str(first_slurmd),
        "STANDIN_STATE_DIR": str(state), "NODE_COUNT": "2", "SUSPEND_TIME": "5", "SUSPEND_TIMEOUT": "5",
        "COMPOSE_PROJECT_NAME": f"sk8s-test-{os.getpid()}", "HOME_DIR": str(home),
        "RESEARCHER": "carol", "RESEARCHER_UID": "2345",  # not the defaults: each place must read them
    }
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


def pod_containers(client: Any) -> list[Any]:
    return list_containers(client, label="io.kubernetes.pod.namespace=slurm")


wait_for = functools.partial(waiting.wait_for, interval=0.5)  # each look lists containers


@pytest.mark.timeout(400)
def test_standin_profile_runs_sbatch_n2_to_completion_and_back_to_zero_pods(
    compose: list[str], standin_env: dict[str, str], docker_client: Any, slurmctld_image: str, slurmd_image: str
) -> None:
    def slurm(*argv: str, user: str = "root", workdir: str = "/") -> subprocess.CompletedProcess:
        return run_compose(compose, "exec", "-T", "-u", user, "-w", workdir, "slurmctld", *argv,
                           env=standin_env, timeout=60)

    home = Path(standin_env["HOME_DIR"]) / "carol"

    up = run_compose(compose, "--profile", "standin", "up", "-d", env=standin_env)
    try:
        assert up.returncode == 0, up.stderr
        wait_for(lambda: "idle~" in slurm("sinfo", "-h", "-o", "%T").stdout, timeout=120,
                 what="slurmctld up with powered-down nodes")
        # The researcher, on the login node, in her home: each step says where it ran, as whom, where.
        submitted = slurm("sbatch", "--parsable", "-N2", "--wrap",
                          """srun sh -c 'echo "$(hostname) $(id -un) $(id -u) $PWD"' | sort""",
                          user="carol", workdir="/home/carol")
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()

        def job_state() -> dict[str, str]:
            line = slurm("scontrol", "-o", "show", "job", job).stdout
            return dict(re.findall(r"(JobState|ExitCode|NodeList)=(\S+)", line))

        running = wait_for(lambda: len(pod_containers(docker_client)) == 2 and pod_containers(docker_client),
                           timeout=60, what="two slurmd pods in Docker")
        assert all(slurmd_image in c.image.tags for c in running)  # also tagged with its release (22.05)
        state = wait_for(lambda: (s := job_state()).get("JobState") in ("COMPLETED", "FAILED") and s,
                         timeout=90, what="job finished")
        assert state == {"JobState": "COMPLETED", "ExitCode": "0:0", "NodeList": "elastic[1-2]"}, state
        output = home / f"slurm-{job}.out"  # in her home on the host, as on a static node's shared home
        assert output.read_text().splitlines() == [f"elastic{i} carol 2345 /home/carol" for i in (1, 2)]
        assert output.stat().st_uid == 2345
        # SuspendTime (5 s) later the bridge deletes the pods: nothing runs any more.
        wait_for(lambda: not pod_containers(docker_client), timeout=60, what="pods deleted after SuspendTime")
        assert output.read_text().startswith("elastic1 carol")  # hers, on the host, the pods gone
        wait_for(lambda: slurm("sinfo", "-h", "-o", "%T").stdout.split() == ["idle~"], timeout=60,
                 what="nodes powered down")
    finally:
        logs = run_compose(compose, "--profile", "standin", "logs", "--no-color", "--tail", "60", env=standin_env)
        down = run_compose(compose, "--profile", "standin", "down", "-v", env=standin_env)
        print(logs.stdout[-6000:])
    assert down.returncode == 0, down.stderr
    project = standin_env["COMPOSE_PROJECT_NAME"]
    assert not list_containers(docker_client, label=f"com.docker.compose.project={project}")
    assert not pod_containers(docker_client)
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
