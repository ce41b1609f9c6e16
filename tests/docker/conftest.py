"""Fixtures for the tests that need Docker: the project's own engine (testenv/docker.py), started
once per session and stopped at its end, and its images, built by testenv/docker-setup.sh.

Without Docker these tests fail with the reason, never skip: CI runs testenv/test.sh, which sets
Docker up first, and a set-up that failed must show as failures, not as a green run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testenv import docker as engine

# The session label of every container testenv starts from here (testenv.docker.session_labels):
# the runner and slurmctld containers inherit it through the environment.
os.environ.setdefault("SLURM_K8S_BRIDGE_TEST_SESSION", f"{os.getpid()}-{time.time_ns()}")

# testcontainers reads this when first imported; its reaper (Ryuk) is an image from Docker Hub,
# which cannot be had here: the fixtures remove what they start instead.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

# A failed end-to-end test's report carries its environments' state (tests/e2e/conftest.py).
from tests.e2e.conftest import pytest_runtest_makereport  # noqa: E402, F401

# The API stand-in's fixtures, for the Docker runtime's tests.
from tests.testenv.conftest import (  # noqa: F401
    kubeapi_client,
    kubeapi_server,
    kubeapi_shared_client,
    kubeapi_shared_server,
    scheduler_default,
)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """DOCKER_HOST of the project's engine, up for the whole session (also set in os.environ,
    where testcontainers and the Docker SDK look)."""
    try:
        env = engine.acquire()
    except engine.DockerUnavailable as e:
        pytest.fail(f"Docker is not available: {e}", pytrace=False)
    previous = {"DOCKER_HOST": os.environ.get("DOCKER_HOST")}
    os.environ.update(env)
    try:
        yield env["DOCKER_HOST"]
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        engine.release()


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def slurmd_image(docker_client: Any) -> str:
    """The slurmd pod image, as testenv/docker-setup.sh built it for this host's Slurm version."""
    return _built(docker_client, engine.slurmd_image())


@pytest.fixture(scope="session")
def slurmctld_image(docker_client: Any) -> str:
    return _built(docker_client, engine.slurmctld_image())


def _built(client: Any, tag: str) -> str:
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {tag} is not built: run testenv/docker-setup.sh (testenv/test.sh does)", pytrace=False)
    return tag


@pytest.fixture(autouse=True)
def no_container_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every container a test starts is gone at its end."""
    if "docker_client" not in request.fixturenames:
        yield
        return
    client = request.getfixturevalue("docker_client")
    # Only this session's containers (testenv labels them): another test run may share the engine.
    mine = {"label": f"{engine.SESSION_LABEL}={os.environ['SLURM_K8S_BRIDGE_TEST_SESSION']}"}
    before = {c.id for c in list_containers(client, **mine)}
    yield
    left = [c for c in list_containers(client, **mine) if c.id not in before]
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def list_containers(client: Any, **filters: str) -> list[Any]:
    """``containers.list(all=True)``, which inspects every container it lists: one removed in
    between (a pod the runner is just deleting) makes it raise NotFound, so look again."""
    import docker

    for _ in range(10):
        try:
            return client.containers.list(all=True, filters=filters or None)
        except docker.errors.NotFound:
            time.sleep(0.1)
    return client.containers.list(all=True, filters=filters or None)
