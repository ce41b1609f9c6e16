"""Fixtures for the Kubernetes API stand-in (names prefixed `kubeapi_`).

One server per test module, reset before each test: a fresh cluster costs
milliseconds, a fresh server and clients (TLS contexts) tens of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig

from testenv.kubeapi import KubeApiServer


@pytest.fixture(scope="module")
def kubeapi_shared_server() -> Iterator[KubeApiServer]:
    with KubeApiServer(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def kubeapi_server(kubeapi_shared_server: KubeApiServer) -> KubeApiServer:
    """The stand-in on 127.0.0.1 (everyone is admin), reset to a freshly seeded cluster."""
    kubeapi_shared_server.reset()
    return kubeapi_shared_server


@pytest.fixture(scope="module")
def kubeapi_shared_client(kubeapi_shared_server: KubeApiServer) -> Iterator[Client]:
    config = KubeConfig.from_dict(kubeapi_shared_server.kubeconfig())
    client = Client(config, field_manager="tests", trust_env=False)
    yield client
    client.close()


@pytest.fixture
def kubeapi_client(kubeapi_server: KubeApiServer, kubeapi_shared_client: Client) -> Client:
    """lightkube, configured from the stand-in's admin kubeconfig, like the bridge's client."""
    return kubeapi_shared_client


@pytest.fixture(scope="module")
def kubeapi_shared_http(kubeapi_shared_server: KubeApiServer) -> Iterator[httpx2.Client]:
    headers = {"Authorization": f"Bearer {kubeapi_shared_server.admin_token}"}
    with httpx2.Client(base_url=kubeapi_shared_server.url, headers=headers, timeout=10, verify=False) as client:
        yield client


@pytest.fixture
def kubeapi_http(kubeapi_server: KubeApiServer, kubeapi_shared_http: httpx2.Client) -> httpx2.Client:
    """Raw HTTP with the admin token, for what lightkube cannot express."""
    return kubeapi_shared_http


# --- scheduler and pod runner (fixtures prefixed `scheduler_` / `runner_`) ------------------------

from pathlib import Path  # noqa: E402

from testenv.runner import BackoffPolicy, NodeSpec, PodRunner  # noqa: E402
from testenv.scheduler import Scheduler  # noqa: E402

#: Short back-offs so crash loops and image pull retries show within a test's patience.
RUNNER_FAST_BACKOFF = BackoffPolicy(initial=0.2, maximum=1.0)
RUNNER_DEFAULT_NODE = NodeSpec(
    name="node-1",
    capacity={"cpu": "4", "memory": "8Gi", "pods": "20"},
    allocatable={"cpu": "4", "memory": "8Gi", "pods": "20"},
)


@pytest.fixture
def scheduler_default(kubeapi_server: KubeApiServer) -> Iterator[Scheduler]:
    """The default-scheduler against the stand-in, retrying unschedulable pods every 0.2 s."""
    with Scheduler(kubeconfig=KubeConfig.from_dict(kubeapi_server.kubeconfig()), retry_interval=0.2) as running:
        yield running


@pytest.fixture
def runner_images(tmp_path: Path) -> Path:
    """An IMAGES.yaml with a few images whose programs are this machine's."""
    path = tmp_path / "images.yaml"
    path.write_text(
        "images:\n"
        "  busybox: {cmd: [sh]}\n"
        "  example.org/tools/sleeper:1.0: {entrypoint: [sleep], cmd: ['3600']}\n"
        "  example.org/tools/env:1.0: {entrypoint: [sh, -c], cmd: ['env'], env: {FROM_IMAGE: image}}\n"
    )
    return path


@pytest.fixture
def runner_factory(kubeapi_server: KubeApiServer, runner_images: Path, tmp_path: Path) -> Iterator:
    """Start pod runners (default: one node, node-1); every one is stopped after the test."""
    started: list[PodRunner] = []

    def start(nodes: list[NodeSpec] | None = None, **options) -> PodRunner:  # type: ignore[no-untyped-def]
        options.setdefault("backoff", RUNNER_FAST_BACKOFF)
        options.setdefault("heartbeat_interval", 0.5)
        options.setdefault("state_dir", tmp_path / f"runner-{len(started)}")
        options.setdefault("images", runner_images)
        runner = PodRunner(
            kubeconfig=KubeConfig.from_dict(kubeapi_server.kubeconfig()), nodes=nodes or [RUNNER_DEFAULT_NODE], **options
        )
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in reversed(started):
        runner.stop()


@pytest.fixture
def runner_node1(runner_factory) -> PodRunner:  # type: ignore[no-untyped-def]
    """A pod runner with one node, node-1 (4 cpu, 8Gi, 20 pods)."""
    return runner_factory()
