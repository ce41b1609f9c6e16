"""The Kubernetes client's manners: retries that honour Retry-After, a rate limit, no waiting
twice on a server that is down, and errors that keep the server's own words."""

from __future__ import annotations

import functools
import json
import time

import httpx2
import pytest
import yaml

from bridge import kube as kube_module
from bridge.config import KubernetesSettings
from bridge.errors import KubernetesUnavailable

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "slurm"},
       "spec": {"containers": [{"name": "c", "image": "i"}]}}


def kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "slurm"}}]}))
    return str(path)


@pytest.fixture
def api(monkeypatch, tmp_path):
    """A LightkubeApi whose requests go to `handler` (set by the test)."""
    import lightkube

    calls: list[tuple[float, str]] = []
    state = {"handler": None}

    def handle(request: httpx2.Request) -> httpx2.Response:
        calls.append((time.monotonic(), request.method))
        return state["handler"](request, len(calls))

    transport = httpx2.MockTransport(handle)
    monkeypatch.setattr(lightkube, "AsyncClient", functools.partial(lightkube.AsyncClient, transport=transport))

    def make(handler, **settings):
        state["handler"] = handler
        return kube_module.LightkubeApi(KubernetesSettings(kubeconfig=kubeconfig(tmp_path, "https://kube.test"),
                                                           **settings))
    make.calls = calls
    return make


def status(code: int, reason: str, message: str, **headers) -> httpx2.Response:
    return httpx2.Response(code, headers=headers, json={"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                                         "code": code, "reason": reason, "message": message})


def test_throttled_create_is_retried_after_the_servers_retry_after(api):
    def handler(request, n):
        if n == 1:
            return status(429, "TooManyRequests", "too many requests, please try again later", **{"Retry-After": "1"})
        return httpx2.Response(201, json=json.loads(request.content))

    with api(handler) as client:
        assert client.create_pods([POD]) == {"p1": None}
    (first, _), (second, _) = api.calls
    assert second - first >= 0.9


def test_lasting_refusal_is_not_retried_and_keeps_the_servers_words(api):
    with api(lambda request, n: status(403, "Forbidden", 'pods "p1" is forbidden: User "x" cannot create')) as client:
        error = client.create_pods([POD])["p1"]
    assert len(api.calls) == 1
    assert (error.code, error.transient, error.exit_code) == (403, False, 77)
    assert str(error) == 'Forbidden: pods "p1" is forbidden: User "x" cannot create'


def test_client_side_rate_limit_spaces_calls_beyond_the_burst(api):
    pods = [{**POD, "metadata": {"name": f"p{i}", "namespace": "slurm"}} for i in range(6)]
    with api(lambda request, n: httpx2.Response(201, json=json.loads(request.content)), qps=10, burst=2) as client:
        assert set(client.create_pods(pods).values()) == {None}
    times = sorted(t for t, _ in api.calls)
    assert times[-1] - times[0] >= 0.35  # 4 calls beyond the burst of 2, at 10 per second


def test_unreachable_server_costs_the_retry_budget_once(tmp_path):
    settings = KubernetesSettings(kubeconfig=kubeconfig(tmp_path, "http://127.0.0.1:1"), retry_seconds=1.0)
    with kube_module.LightkubeApi(settings) as client:
        start = time.monotonic()
        with pytest.raises(KubernetesUnavailable, match="cannot reach the Kubernetes API at http://127.0.0.1:1"):
            client.list_pods({"a": "b"})
        first = time.monotonic() - start
        start = time.monotonic()
        with pytest.raises(KubernetesUnavailable):
            client.list_pods({"a": "b"})
        assert time.monotonic() - start < first / 2
