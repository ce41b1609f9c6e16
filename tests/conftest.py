"""Shared fixtures: a bridge config written to a temp dir, and the in-memory fakes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import structlog

from bridge import config as config_module
from bridge.slurm import NodeFacts
from tests.fakes import FakeKube, FakeSlurm

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    from testenv.env import FOLLOW_MODE_ENV, FOLLOW_MODES

    parser.addoption("--follow-mode", choices=FOLLOW_MODES, default=os.environ.get(FOLLOW_MODE_ENV) or "hooks",
                     help=f"who follows resumed jobs in the end-to-end environments: the resume hooks' own "
                          f"follower processes, or a running `slurm-k8s-bridge daemon` (default: ${FOLLOW_MODE_ENV}, "
                          f"else hooks)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``follow_mode("hooks")`` means nothing in the other mode: it is deselected
    there (and said so in the summary), never run as a pass that cannot fail."""
    mode = config.getoption("follow_mode")
    other = [item for item in items
             if (marker := item.get_closest_marker("follow_mode")) is not None and marker.args[0] != mode]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]

BASIC_CONFIG = """
slurm:
  conf_server: slurmctld.example:6817
  cluster_name: linux
kubernetes:
  namespace: slurm
log:
  file: null
resume:
  state_dir: {state_dir}
nodesets:
  - name: cpu
    nodes: elastic[1-4]
    image: slurm-k8s-bridge/slurmd:22.05.8
  - name: gpu
    nodes: gpu[01-02]
    image: slurm-k8s-bridge/slurmd:22.05.8
    node_selector: {pool: gpu}
"""


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str = BASIC_CONFIG) -> Path:
        path = tmp_path / "k8s-bridge.yaml"
        path.write_text(textwrap.dedent(text).replace("{state_dir}", str(tmp_path / "state")))
        return path

    return write


@pytest.fixture
def config(write_config):
    return config_module.load(str(write_config()))


@pytest.fixture
def slurm() -> FakeSlurm:
    return FakeSlurm({
        **{f"elastic{i}": NodeFacts(f"elastic{i}", cpus=4, real_memory_mb=1000, state=("IDLE", "CLOUD", "POWERED_DOWN"))
           for i in range(1, 5)},
        **{f"gpu0{i}": NodeFacts(f"gpu0{i}", cpus=32, real_memory_mb=256000, gres=("gpu:h100:8",))
           for i in range(1, 3)},
    })


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def log():
    return structlog.get_logger()
