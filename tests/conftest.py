"""Shared fixtures: a bridge config written to a temp dir, and the in-memory fakes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import structlog

from bridge import config as config_module
from bridge.slurm import NodeFacts
from tests.fakes import FakeKube, FakeSlurm

REPO = Path(__file__).resolve().parent.parent

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
