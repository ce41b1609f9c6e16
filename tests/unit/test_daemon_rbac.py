"""rbac/daemon/: the daemon's extra Role and ClusterRole grant exactly what its watches call.

The daemon's informers run against lightkube's own transport answering like kube-apiserver;
each request is mapped to (apiGroup, resource, verb, namespace) as the authorizer sees it. Its
deletes and events go through bridge/kube.py, which tests/unit/test_rbac.py already covers."""

from __future__ import annotations

import functools
import textwrap
import time
from pathlib import Path

import httpx2
import structlog
import yaml

from bridge import config as config_module
from bridge.daemon import Watch
from bridge.metrics import Metrics
from tests.unit.test_rbac import _PATH, RecordingApi, _verb

RBAC = Path(__file__).resolve().parents[2] / "rbac"


def _grants(*names: str) -> set[tuple[str, str, str, str | None]]:
    out = set()
    for name in names:
        doc = yaml.safe_load((RBAC / name).read_text())
        namespace = doc["metadata"].get("namespace") if doc["kind"] == "Role" else None
        out |= {(g, r, v, namespace) for rule in doc["rules"] for g in rule["apiGroups"]
                for r in rule["resources"] for v in rule["verbs"]}
    return out


def test_daemon_roles_grant_exactly_what_its_watches_call(monkeypatch, tmp_path):
    import lightkube

    needs: set[tuple[str, str, str, str | None]] = set()

    def handle(request: httpx2.Request) -> httpx2.Response:
        match = _PATH.match(request.url.path)
        verb = _verb(request.method, match["name"], request.url.params)
        needs.add((match["group"] or "", match["resource"], verb, match["namespace"]))
        if verb == "watch":  # no news: 410 Gone, the informer lists again a second later
            return httpx2.Response(410, json={"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired",
                                              "status": "Failure", "message": "too old"})
        return httpx2.Response(200, json={"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                          "items": []})

    monkeypatch.setattr(lightkube, "AsyncClient",
                        functools.partial(lightkube.AsyncClient, transport=httpx2.MockTransport(handle)))
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "b",
        "clusters": [{"name": "k", "cluster": {"server": "https://kube.test"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "b", "context": {"cluster": "k", "user": "u"}}]}))
    (tmp_path / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
        slurm: {{conf_server: "ctl:6817", cluster_name: linux}}
        kubernetes: {{kubeconfig: "{tmp_path / 'kubeconfig'}", namespace: slurm}}
        log: {{file: null}}
        nodesets:
          - {{name: cpu, nodes: "elastic[1-4]", image: "slurmd:22.05"}}
          - {{name: volcano, nodes: "v[1-2]", image: "slurmd:22.05", gang: {{kind: volcano, queue: hpc}}}}
          - {{name: cosched, nodes: "c[1-2]", image: "slurmd:22.05", gang: {{kind: coscheduling}}}}
        """))
    config = config_module.load(str(tmp_path / "k8s-bridge.yaml"))
    watch = Watch(config, on_change=lambda: None, log=structlog.get_logger(), metrics=Metrics()).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(1 for n in needs if n[2] == "watch") < 4:
            time.sleep(0.05)
    finally:
        watch.stop()
    needs |= _elector_needs(monkeypatch, tmp_path / "kubeconfig")
    granted = _grants("role.yaml", "daemon/role.yaml", "daemon/clusterrole.yaml")
    assert needs - granted == set(), "the daemon makes calls rbac/ does not grant"
    extra = _grants("daemon/role.yaml", "daemon/clusterrole.yaml")
    assert extra - needs == set(), "rbac/daemon/ grants what the daemon never uses"
    assert {n for n in needs if n[3] is None} == {("", "nodes", "list", None), ("", "nodes", "watch", None)}


def test_daemon_kustomization_adds_to_the_hooks_access():
    listed = yaml.safe_load((RBAC / "daemon" / "kustomization.yaml").read_text())["resources"]
    assert listed[0] == ".." and set(listed[1:]) == {p.name for p in (RBAC / "daemon").glob("*.yaml")} - {
        "kustomization.yaml"}


def test_daemon_manifests_are_valid_kubernetes_objects():
    from bridge import validate

    for path in sorted((RBAC / "daemon").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for version in ("1.27", "1.37"):
                assert validate.schema_errors(yaml.safe_load(path.read_text()), version) == [], path.name


def test_daemon_deployment_is_a_valid_single_replica_in_the_bridges_account():
    from bridge import validate

    path = RBAC.parent / "docker" / "daemon" / "deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    for version in ("1.27", "1.37"):
        assert validate.schema_errors(deployment, version) == []
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"  # two daemons would release twice
    account = yaml.safe_load((RBAC / "serviceaccount.yaml").read_text())
    assert spec["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    # The daemon logs in with the account's token (kubernetes.in_cluster: true): the pod's own
    # setting wins over the account's, which refuses one to every other pod.
    pod = spec["template"]["spec"]
    assert pod.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True)) is True


def _elector_needs(monkeypatch, kubeconfig: Path) -> set[tuple[str, str, str, str | None]]:
    """What the Lease of ``daemon.in_cluster`` calls: create it, renew it, release it."""
    import lightkube

    from bridge import kube as kube_module
    from bridge import lease

    recording = RecordingApi()
    monkeypatch.setattr(lightkube, "AsyncClient", functools.partial(
        lightkube.AsyncClient.func, transport=httpx2.MockTransport(recording.handle)))
    settings = kube_module.KubernetesSettings(kubeconfig=str(kubeconfig), namespace="slurm", retry_seconds=0.5)
    with kube_module.LightkubeApi(settings) as client:
        elector = lease.Elector(client, name=lease.lease_name("linux"), namespace="slurm", identity="a",
                                duration=15, follows=True)
        assert elector.step() and elector.step()  # created, then renewed
        elector.release()
    return recording.needs
