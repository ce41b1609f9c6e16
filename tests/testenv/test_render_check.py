"""`slurm-k8s-bridge render --check` asks the cluster whether a gang nodeset's PodGroup API is
served, so a site without Volcano learns it before any job does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.slurm import NodeFacts
from testenv.kubeapi import KubeApiServer
from tests.fakes import FakeSlurm

REPO = Path(__file__).resolve().parents[2]


def _check(monkeypatch, capsys, tmp_path: Path, server_url_kubeconfig: Path | None) -> tuple[int, str, str]:
    from bridge import cli

    kubernetes = {"kubeconfig": str(server_url_kubeconfig)} if server_url_kubeconfig else {
        "kubeconfig": str(_unreachable(tmp_path))}
    config = tmp_path / "k8s-bridge.yaml"
    config.write_text(yaml.safe_dump({
        "slurm": {"conf_server": "ctl:6817", "cluster_name": "hpc"}, "log": {"file": None},
        "kubernetes": {**kubernetes, "namespace": "default", "retry_seconds": 0.5},
        "nodesets": [{"name": "gpu", "nodes": "g[1-2]", "image": "slurmd:22.05", "gang": {"kind": "volcano"}}]}))
    facts = {f"g{i}": NodeFacts(f"g{i}", cpus=2, real_memory_mb=2000) for i in (1, 2)}
    monkeypatch.setattr("bridge.slurm.CommandSlurm", lambda *a, **k: FakeSlurm(facts))
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", str(config), "render", "g[1-2]", "--check"])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _unreachable(tmp_path: Path) -> Path:
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    return path


@pytest.fixture
def server(tmp_path: Path):
    with KubeApiServer() as api:
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")


def test_a_gang_api_the_cluster_does_not_serve_fails_the_check(server, monkeypatch, capsys, tmp_path):
    code, out, err = _check(monkeypatch, capsys, tmp_path, server[1])
    assert code == 69
    assert out.splitlines()[0].startswith("g1: pod hpc-g1 valid for Kubernetes")
    assert err == ("slurm-k8s-bridge: kubernetes: nodeset gpu: gang: scheduling.volcano.sh/v1beta1 is not served: "
                   "is Volcano installed?\n")


def test_a_served_gang_api_passes_the_check(server, monkeypatch, capsys, tmp_path):
    from lightkube import Client, codecs
    from lightkube.config.kubeconfig import KubeConfig

    api, kubeconfig = server
    client = Client(KubeConfig.from_dict(api.kubeconfig()), trust_env=False)
    for crd in codecs.load_all_yaml((REPO / "testenv" / "crds" / "volcano-podgroups.yaml").read_text()):
        client.create(crd)
    code, out, err = _check(monkeypatch, capsys, tmp_path, kubeconfig)
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 2


def test_a_cluster_that_cannot_be_asked_is_a_warning_not_a_failure(monkeypatch, capsys, tmp_path):
    code, out, err = _check(monkeypatch, capsys, tmp_path, None)
    assert code == 0 and len(out.splitlines()) == 2
    assert err.startswith("slurm-k8s-bridge: warning: cannot tell whether the cluster serves "
                          "scheduling.volcano.sh/v1beta1: cannot reach the Kubernetes API at http://127.0.0.1:1")
