"""The Kubernetes client's manners: retries that honour Retry-After, a rate limit, no waiting
twice on a server that is down, and errors that keep the server's own words."""

from __future__ import annotations

import functools
import json
import time

import httpx2
import re

import pytest
import yaml

from bridge import kube as kube_module
from bridge.config import KubernetesSettings
from bridge.errors import ConfigError, Conflict, CredentialsError, KubernetesError, KubernetesUnavailable, NotServed

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "slurm"},
       "spec": {"containers": [{"name": "c", "image": "i"}]}}


def kubeconfig(tmp_path, server: str, user: dict | None = None) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user or {"token": "t"}}],
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

    def make(handler, user=None, **settings):
        state["handler"] = handler
        return kube_module.LightkubeApi(KubernetesSettings(kubeconfig=kubeconfig(tmp_path, "https://kube.test", user),
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


def test_a_server_that_came_back_gets_the_retries_again(api):
    # The daemon lives through an outage: afterwards a throttled call is retried as before, not
    # failed at its first 429.
    phase = {"now": "down", "throttled": 0}

    def handler(request, n):
        if phase["now"] == "down":
            raise httpx2.ConnectError("connection refused")
        if phase["now"] == "missing":
            return status(404, "NotFound", 'pods "p1" not found')
        if phase["now"] == "throttled" and not phase["throttled"]:
            phase["throttled"] += 1
            return status(429, "TooManyRequests", "too many requests, please try again later", **{"Retry-After": "0"})
        return httpx2.Response(200, json={"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})

    # A budget that holds the retry's wait, up to 1.2 s with stamina's jitter (0.5 s did not).
    with api(handler, retry_seconds=2.0) as client:
        for back in ("answers", "refuses"):  # a success, or an answer that is an error (404)
            phase["now"], phase["throttled"] = "down", 0
            with pytest.raises(KubernetesUnavailable):
                client.list_pods({"a": "b"})
            if back == "answers":
                phase["now"] = "up"
                assert client.list_pods({"a": "b"}) == []
            else:
                phase["now"] = "missing"
                assert client.get_pod("p1") is None
            phase["now"] = "throttled"
            assert client.list_pods({"a": "b"}) == []
            assert phase["throttled"] == 1


# --- every answer the HTTP stack can give ends in our hierarchy, in one line -----------------

PODGROUP = ("scheduling.volcano.sh/v1beta1", "PodGroup", "job-7")


def test_an_api_group_the_server_does_not_serve_is_named_not_taken_for_a_missing_object(api):
    # kube-apiserver's answer for /apis/<group>/<version>/... it does not serve: plain text, no Status.
    def handler(request, n):
        return httpx2.Response(404, headers={"Content-Type": "text/plain; charset=utf-8"}, text="404 page not found\n")

    with api(handler) as client:
        with pytest.raises(NotServed) as caught:
            client.get_object(PODGROUP)  # not "None": the group is absent, not the object
        created = client.create_objects([{"apiVersion": PODGROUP[0], "kind": "PodGroup",
                                          "metadata": {"name": "job-7", "namespace": "slurm"}, "spec": {}}])
    assert caught.value.api_version == "scheduling.volcano.sh/v1beta1"
    assert isinstance(created["job-7"], NotServed) and not created["job-7"].transient
    assert "\n" not in str(caught.value)


def test_a_missing_object_is_none_and_an_existing_one_a_conflict(api):
    def handler(request, n):
        if request.method == "GET":
            return status(404, "NotFound", 'pods "p1" not found')
        return status(409, "AlreadyExists", 'pods "p1" already exists')

    with api(handler) as client:
        assert client.get_pod("p1") is None
        assert isinstance(client.create_pods([POD])["p1"], Conflict)


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "text/html"}, "<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"),
    ({}, ""),  # no Content-Type at all: lightkube itself fails reading it
    ({"Content-Type": "application/json"}, "upstream connect error"),  # says JSON, is not
])
def test_a_proxys_error_page_is_a_passing_failure_retried_and_reported_in_one_line(api, headers, body):
    def handler(request, n):
        if n == 1:
            return httpx2.Response(502, headers=headers, text=body)
        return httpx2.Response(201, json=json.loads(request.content))

    with api(handler) as client:
        assert client.create_pods([POD]) == {"p1": None}
    with api(lambda request, n: httpx2.Response(502, headers=headers, text=body), retry_seconds=0.5) as client:
        error = client.create_pods([POD])["p1"]
    assert (type(error), error.code, error.transient) == (KubernetesError, 502, True)
    assert "\n" not in str(error) and "proxy or load balancer" in str(error)


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "text/html"}, "<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"),
    ({}, ""),
    ({"Content-Type": "application/json"}, "upstream connect error"),
])
def test_with_a_credential_plugin_a_proxys_error_page_is_still_no_credentials_error(api, headers, body):
    """Only what fails inside lightkube's credential code is the credentials': a body that does
    not decode, behind a plugin that works, is the proxy's passing failure as without one."""
    credential = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                             "status": {"token": "t"}})
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/echo", "args": [credential]}}
    with api(lambda request, n: httpx2.Response(502, headers=headers, text=body), user=user,
             retry_seconds=0.3) as client:
        error = client.create_pods([POD])["p1"]
    assert (type(error), error.code, error.transient) == (KubernetesError, 502, True)
    with api(lambda request, n: httpx2.Response(200, headers=headers, text=body), user=user,
             retry_seconds=0.3) as client:
        with pytest.raises(KubernetesError) as caught:
            client.get_pod("p1")
    assert type(caught.value) is KubernetesError and caught.value.exit_code == 69


def test_a_token_file_that_cannot_be_read_is_a_credentials_error(api, tmp_path):
    token = tmp_path / "token"
    token.mkdir()  # as unreadable as a root-only file, whoever runs the test
    with api(lambda request, n: httpx2.Response(200, json={}), user={"tokenFile": str(token)},
             retry_seconds=0.3) as client:
        with pytest.raises(CredentialsError) as caught:
            client.get_pod("p1")
    assert f"cannot read its credentials: {token}: Is a directory" in str(caught.value)
    assert caught.value.exit_code == 78 and not caught.value.transient


def test_a_plain_text_429_of_priority_and_fairness_is_honoured_with_its_retry_after(api):
    def handler(request, n):
        if n == 1:
            return httpx2.Response(429, headers={"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"},
                                   text="Too many requests, please try again later.\n")
        return httpx2.Response(201, json=json.loads(request.content))

    with api(handler) as client:
        assert client.create_pods([POD]) == {"p1": None}
    (first, _), (second, _) = api.calls
    assert second - first >= 0.9
    with api(lambda request, n: httpx2.Response(429, text="Too many requests, please try again later.\n"),
             retry_seconds=0.3) as client:
        error = client.create_pods([POD])["p1"]
    assert (error.code, error.transient) == (429, True)
    assert str(error) == "TooManyRequests: Too many requests, please try again later."


def test_a_stalled_call_says_it_timed_out_and_after_how_long(api):
    def handler(request, n):
        raise httpx2.ReadTimeout("", request=request)

    with api(handler, timeout=3, retry_seconds=0.3) as client:
        with pytest.raises(KubernetesUnavailable, match=r"timed out after 3 s$"):
            client.list_pods({"a": "b"})


@pytest.mark.parametrize("text, words", [
    ("{{{: [", "is not YAML (line 1, column 4: "),
    ("- a\n- b\n", "is not a kubeconfig"),
    ("clusters: 5\n", "is not a kubeconfig"),
    ("", "is empty"),
    ("[" * 5000, "kubeconfig"),  # nested past Python's recursion limit
    ("apiVersion: v1\nclusters: [{name: x, cluster: {}}]\ncontexts: [{name: c, context: {cluster: x, user: u}}]\n"
     "current-context: c\nusers: [{name: u, user: {token: t}}]\n", "its cluster names no server"),
    ("apiVersion: v1\nclusters: [{name: x, cluster: {server: 'ht!tp://127.0.0.1:1:2:3'}}]\n"
     "contexts: [{name: c, context: {cluster: x, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: t}}]\n",
     "server 'ht!tp://127.0.0.1:1:2:3'"),
    ("apiVersion: v1\nclusters: [{name: x}]\ncontexts: [{name: c, context: {cluster: x, user: u}}]\n"
     "current-context: c\nusers: [{name: u, user: 7}]\n", "is not a kubeconfig"),
])
def test_a_kubeconfig_that_is_not_one_is_a_config_error_in_one_line(tmp_path, text, words):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        kube_module.LightkubeApi(KubernetesSettings(kubeconfig=str(path)))
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 78


def test_a_kubeconfig_that_is_a_directory_says_so(tmp_path):
    with pytest.raises(ConfigError, match=f"kubeconfig {re.escape(str(tmp_path))} is a directory, not a file$"):
        kube_module.LightkubeApi(KubernetesSettings(kubeconfig=str(tmp_path)))


@pytest.mark.parametrize("command, args, words", [
    (None, [], "Token file /nonexistent/token not found"),
    ("/bin/false", [], "Exec /bin/false returned 1"),
    ("/nonexistent/get-token", [], "its credential plugin /nonexistent/get-token cannot run: No such file or directory"),
    ("/bin/echo", ["garbage"], "its credential plugin /bin/echo did not print an ExecCredential with status.token: "
                               "JSONDecodeError"),
    ("/bin/echo", ["[1]"], "did not print an ExecCredential with status.token: TypeError"),
])
def test_a_credential_plugin_that_fails_is_a_config_error_not_an_unreachable_server(tmp_path, command, args, words):
    """EKS's and GKE's token helpers run as the request is sent (a token file is read then too):
    when one fails the hook gives
    its nodes back as a config error (78, for an admin), not as a Kubernetes outage (69, retried)."""
    import yaml

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "current-context": "c", "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "x", "user": "u"}}],
        "users": [{"name": "u", "user": {"tokenFile": "/nonexistent/token"} if command is None else {
            "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": command, "args": args}}}]}))
    with kube_module.LightkubeApi(KubernetesSettings(kubeconfig=str(path), retry_seconds=0.1)) as client:
        with pytest.raises(CredentialsError) as caught:
            client.list_pods({"a": "b"})
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 78


def test_with_no_kubeconfig_set_anywhere_the_error_names_the_file_looked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=re.escape("kubeconfig ~/.kube/config ($KUBECONFIG is not set)")):
        kube_module.LightkubeApi(KubernetesSettings())


@pytest.mark.filterwarnings("ignore:timeout=0 means no retries")  # no retry may hide a timed-out call
def test_calls_in_flight_are_bounded_by_concurrency_and_their_timeout_starts_when_sent(api):
    import asyncio

    state = {"now": 0, "most": 0}

    async def handler(request, n):
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return httpx2.Response(201, json=json.loads(request.content))

    pods = [{**POD, "metadata": {"name": f"p{i}", "namespace": "slurm"}} for i in range(12)]
    # 12 calls of 0.05 s, 3 at a time: 0.2 s in all, more than each call's timeout of 0.15 s
    with api(handler, concurrency=3, timeout=0.15, retry_seconds=0) as client:
        assert set(client.create_pods(pods).values()) == {None}
    assert state["most"] == 3


def pod_list(names, *, token=""):
    return httpx2.Response(200, json={
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9", **({"continue": token} if token else {})},
        "items": [{"metadata": {"name": n, "namespace": "slurm", "labels": {"a": "b"},
                                "managedFields": [{"manager": "x"}]},
                   "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Pending"}}
                  for n in names]})


EXPIRED = "The provided continue parameter is too old to display a consistent list result."


def test_pod_metadata_is_listed_page_by_page_and_relisted_when_the_snapshot_expired(api):
    asked = []

    def handler(request, n):
        asked.append(dict(request.url.params))
        token = request.url.params.get("continue")
        if n == 2:  # the server compacted the first listing's revision between its pages
            return status(410, "Expired", EXPIRED)
        return pod_list(["p1", "p2"], token="next") if not token else pod_list(["p3"])

    pods = api(handler).list_pod_metadata({"a": "b"})
    assert pods == [{"metadata": {"name": n, "namespace": "slurm", "labels": {"a": "b"}}} for n in ("p1", "p2", "p3")]
    assert [(p.get("limit"), p.get("continue")) for p in asked] == [
        ("500", None), ("500", "next"), ("500", None), ("500", "next")]
    assert all(p["labelSelector"] == "a=b" for p in asked)


def test_a_listing_that_keeps_expiring_gives_up_after_a_few_starts(api):
    def handler(request, n):
        return status(410, "Expired", EXPIRED) if request.url.params.get("continue") else pod_list(["p1"], token="t")

    client = api(handler)
    with pytest.raises(KubernetesError) as raised:
        client.list_pod_metadata({"a": "b"})
    assert raised.value.code == 410 and "too old" in str(raised.value)
    assert len(api.calls) == 2 * kube_module.RELISTS
