"""rbac/: the Role grants exactly what the bridge calls, no more, no less.

The hooks' flows run against a small in-memory API server behind lightkube's own transport;
every request is mapped to (apiGroup, resource, verb) as the API server's authorizer sees it.
A new call in bridge/kube.py (PodGroups, say) fails this test until rbac/role.yaml grants it,
and a grant nothing uses fails it too.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import httpx2
import pytest
import structlog
import yaml

from bridge import config as config_module
from bridge import kube as kube_module
from bridge import lease, resume, suspend
from bridge.resumefile import parse as parse_resume
from bridge.slurm import NodeFacts
from testenv.kubeapi.selector import parse_label_selector
from tests.fakes import FakeSlurm

RBAC = Path(__file__).resolve().parents[2] / "rbac"
_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?"
                   r"(?:/(?P<sub>[^/]+))?$")


class RecordingApi:
    """Just enough of kube-apiserver for the bridge's calls; records what each one needs."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.needs: set[tuple[str, str, str, str | None]] = set()
        """(apiGroup, resource[/subresource], verb, namespace or None if cluster-scoped)"""

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        match = _PATH.match(request.url.path)
        assert match, f"unexpected API path {request.url.path}"
        resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
        verb = _verb(request.method, match["name"], request.url.params)
        self.needs.add((match["group"] or "", resource, verb, match["namespace"]))
        if resource == "pods/log":
            return self._log(match["name"], request.url.params)
        if match["resource"] == "pods":
            return self._pods(request, verb, match["name"])
        return self._objects(request, verb, match["resource"], match["name"])

    def _objects(self, request: httpx2.Request, verb: str, resource: str, name: str | None) -> httpx2.Response:
        if verb == "create":
            obj = json.loads(request.content)
            meta = obj["metadata"]
            key = (resource, meta.get("name") or f"{meta['generateName']}{len(self.objects)}")
            if key in self.objects:
                return _status(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
            self.objects[key] = obj
            return httpx2.Response(201, json=obj)
        if (resource, name) not in self.objects:
            return _status(404, "NotFound", f'{resource} "{name}" not found')
        if verb == "update":
            self.objects[(resource, name)] = json.loads(request.content)
            return httpx2.Response(200, json=self.objects[(resource, name)])
        if verb == "delete":
            del self.objects[(resource, name)]
            return httpx2.Response(200, json={"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200})
        return httpx2.Response(200, json=self.objects[(resource, name)])

    def _log(self, name: str, params: Any) -> httpx2.Response:
        if name not in self.pods:
            return _status(404, "NotFound", f'pods "{name}" not found')
        lines = [f"slurmd: error: line {i}\n" for i in range(100)][-int(params.get("tailLines", 100)):]
        return httpx2.Response(200, text="".join(lines), headers={"Content-Type": "text/plain"})

    def _pods(self, request: httpx2.Request, verb: str, name: str | None) -> httpx2.Response:
        if verb == "create":
            pod = json.loads(request.content)
            name = pod["metadata"]["name"]
            if name in self.pods:
                return _status(409, "AlreadyExists", f'pods "{name}" already exists')
            self.pods[name] = {**pod, "status": {"phase": "Pending"}}
            return httpx2.Response(201, json=self.pods[name])
        if verb == "list":
            wanted = parse_label_selector(request.url.params.get("labelSelector"))
            items = [p for p in self.pods.values() if wanted.matches(p["metadata"].get("labels", {}))]
            return httpx2.Response(200, json={"apiVersion": "v1", "kind": "PodList",
                                              "metadata": {"resourceVersion": "1"}, "items": items})
        if name not in self.pods:
            return _status(404, "NotFound", f'pods "{name}" not found')
        pod = self.pods.pop(name) if verb == "delete" else self.pods[name]
        return httpx2.Response(200, json=pod)


def _verb(method: str, name: str | None, params: Any) -> str:
    if method == "GET":
        return "get" if name else ("watch" if params.get("watch") in ("true", "1") else "list")
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]


def _status(code: int, reason: str, message: str) -> httpx2.Response:
    return httpx2.Response(code, json={"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                       "reason": reason, "message": message, "code": code})


def _granted(path: Path) -> set[tuple[str, str, str]]:
    role = yaml.safe_load(path.read_text())
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(RBAC.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out[path.name] = yaml.safe_load(path.read_text())
    return out


@pytest.fixture
def api(monkeypatch, tmp_path: Path):
    """A LightkubeApi whose HTTP goes to a RecordingApi; counts calls of each protocol method."""
    import lightkube

    recording = RecordingApi()
    transport = httpx2.MockTransport(recording.handle)
    monkeypatch.setattr(lightkube, "AsyncClient", functools.partial(lightkube.AsyncClient, transport=transport))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "bridge",
        "clusters": [{"name": "test", "cluster": {"server": "https://kube.test"}}],
        "users": [{"name": "bridge", "user": {"token": "t"}}],
        "contexts": [{"name": "bridge", "context": {"cluster": "test", "user": "bridge", "namespace": "slurm"}}],
    }))
    client = kube_module.LightkubeApi(kube_module.KubernetesSettings(kubeconfig=str(kubeconfig), retry_seconds=0.5))
    client.used = set()
    for method in _protocol_methods():
        original = getattr(client, method)

        def counted(*args, _method=method, _original=original, **kwargs):
            client.used.add(_method)
            return _original(*args, **kwargs)

        setattr(client, method, counted)
    yield client, recording
    client.close()


def _protocol_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(kube_module.KubeClient, inspect.isfunction)
            if not name.startswith("_")]


def _run_flows(client: Any, recording: RecordingApi, tmp_path: Path) -> None:
    """Every path that calls Kubernetes: create; a conflict with a finished pod of ours (get,
    delete, create again); a node that fails (list); a ResumeTimeout (event, slurmd's log); a suspend; gangs,
    and a gang's group from an earlier resume (get, delete, create again)."""
    (tmp_path / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
        slurm: {{conf_server: "ctl:6817", cluster_name: linux}}
        log: {{file: null}}
        resume: {{state_dir: "{tmp_path / 'state'}", follow: false}}
        nodesets:
          - {{name: cpu, nodes: "elastic[1-4]", image: "slurmd:22.05"}}
          - {{name: volcano, nodes: "v[1-2]", image: "slurmd:22.05", gang: {{kind: volcano, queue: hpc}}}}
          - {{name: cosched, nodes: "c[1-2]", image: "slurmd:22.05", gang: {{kind: coscheduling}}}}
        """))
    config = config_module.load(str(tmp_path / "k8s-bridge.yaml"))
    names = [f"elastic{i}" for i in range(1, 5)] + ["v1", "v2", "c1", "c2"]
    slurm = FakeSlurm({n: NodeFacts(n, cpus=2, real_memory_mb=1000) for n in names})
    log = structlog.get_logger()
    resume.resume(["elastic3"], config=config, slurm=slurm, kube=client, log=log)
    recording.pods["linux-elastic3"]["status"] = {"phase": "Succeeded"}  # its slurmd exited
    resume.resume(["elastic1", "elastic3", "elastic9"], config=config, slurm=slurm, kube=client, log=log)
    recording.pods["linux-elastic1"]["status"] = {"phase": "Running", "containerStatuses": [  # slurmd runs
        {"name": "slurmd", "image": "slurmd:22.05", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    suspend.resume_failed(["elastic1"], config=config, slurm=slurm, kube=client, log=log)  # reads its log
    suspend.suspend(["elastic3"], config=config, kube=client, log=log)
    # Gangs: a PodGroup of each kind made before the pods, deleted with the last of them.
    gangs = parse_resume('{"jobs":[{"job_id":5,"nodes":"v[1-2]"},{"job_id":6,"nodes":"c[1-2]"}],'
                         '"all_nodes":"v[1-2],c[1-2]"}')
    resume.resume(["v1", "v2", "c1", "c2"], config=config, slurm=slurm, kube=client, request=gangs, log=log)
    # Both jobs requeued and resumed on one node each: each group is read and replaced with one
    # of the new size.
    requeued = parse_resume('{"jobs":[{"job_id":5,"nodes":"v1"},{"job_id":6,"nodes":"c1"}],"all_nodes":"v1,c1"}')
    resume.resume(["v1", "c1"], config=config, slurm=slurm, kube=client, request=requeued, log=log)
    suspend.suspend(["v1", "v2", "c1", "c2"], config=config, kube=client, log=log)
    # The resume hook with `daemon.in_cluster: true` asks the daemon's Lease (bridge/hooks.py).
    lease.hand_over(client, lease.lease_name(config.slurm.cluster_name))


def test_role_grants_exactly_the_calls_the_bridge_makes(api, tmp_path):
    client, recording = api
    _run_flows(client, recording, tmp_path)
    assert client.used == set(_protocol_methods()), "extend _run_flows to call every KubeClient method"
    needed = {(group, resource, verb) for group, resource, verb, _ in recording.needs}
    granted = _granted(RBAC / "role.yaml")
    assert granted - needed == set(), "rbac/role.yaml grants what the bridge never uses"
    assert needed - granted == set(), "the bridge makes calls rbac/role.yaml does not grant"


def test_every_call_stays_in_the_bridges_namespace(api, tmp_path):
    client, recording = api
    _run_flows(client, recording, tmp_path)
    namespaces = {namespace for *_, namespace in recording.needs}
    assert namespaces == {"slurm"}, "a cluster-scoped or foreign-namespace call needs its own (Cluster)Role"
    assert not (RBAC / "clusterrole.yaml").exists()


def test_role_is_bound_to_the_bridges_service_account_in_its_namespace():
    objects = {m["kind"]: m for m in _manifests().values()}
    namespace = objects["Namespace"]["metadata"]["name"]
    binding, role, account = objects["RoleBinding"], objects["Role"], objects["ServiceAccount"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": namespace}]
    assert {m["metadata"].get("namespace", namespace) for m in objects.values()} == {namespace}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_kustomization_applies_access_but_never_the_example_munge_key():
    listed = yaml.safe_load((RBAC / "kustomization.yaml").read_text())["resources"]
    assert "munge-key-secret.example.yaml" not in listed
    assert set(listed) == set(_manifests()) - {"munge-key-secret.example.yaml"}


def test_munge_key_example_is_the_secret_the_pods_mount(config):
    secret = _manifests()["munge-key-secret.example.yaml"]
    assert secret["metadata"]["name"] == config.nodesets[0].munge_secret
    assert list(secret["data"]) == ["munge.key"]


@pytest.mark.parametrize("version", ["1.27", "1.37"])
def test_rbac_manifests_are_valid_kubernetes_objects(version):
    from bridge import validate

    for name, manifest in _manifests().items():
        assert validate.schema_errors(manifest, version) == [], name
