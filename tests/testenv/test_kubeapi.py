"""The Kubernetes API stand-in answers the way kube-apiserver does for what our code uses.

lightkube (the bridge's client) drives every call it can express, which
proves the wire format is one it accepts; raw HTTP covers the rest. Each
test pins a behaviour a client would notice on a real cluster.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import Container, PodSpec, ResourceRequirements, Toleration
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    Namespace,
    Node,
    NodeStatus,
    Pod,
    PodBinding,
    PodStatus,
    Secret,
)
from lightkube.resources.node_v1 import RuntimeClass
from lightkube.types import CascadeType, PatchType

from testenv.kubeapi import KubeApiServer, NotLoopbackError, quantity
from testenv.kubeapi.faults import FaultRuleError

REPO = Path(__file__).resolve().parents[2]
RFC1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


# --- helpers ------------------------------------------------------------------------------------


def make_pod(name: str, labels: dict[str, str] | None = None, node: str | None = None, **spec: Any) -> Pod:
    containers = spec.pop("containers", None) or [Container(name="slurmd", image="slurmd:22.05")]
    return Pod(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=PodSpec(containers=containers, nodeName=node, **spec),
    )


def pod_body(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "slurmd", "image": "slurmd:22.05"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def api_error(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The Status of the ApiError `call` raises."""
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value.status


def bind(http: httpx2.Client, name: str, node: str, namespace: str = "default") -> httpx2.Response:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": node}}
    return http.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", json=body)


def watchers(server: KubeApiServer) -> int:
    return server.call(lambda cluster: cluster.store.watcher_count)


class Watcher:
    """Collects lightkube watch events on a thread until `stop_after` has been seen.

    Returns once the server has registered the watch, so nothing the test does next is missed.
    """

    def __init__(
        self, server: KubeApiServer, client: Client, res: Any, stop_after: tuple[str, str], **kwargs: Any
    ) -> None:
        self.events: list[tuple[str, Any]] = []
        self._done = threading.Event()
        self._args = (client, res, stop_after, kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        before = watchers(server)
        self._thread.start()
        wait_for(lambda: watchers(server) > before)

    def _run(self) -> None:
        client, res, stop_after, kwargs = self._args
        for kind, obj in client.watch(res, **kwargs):
            self.events.append((kind, obj))
            if (kind, obj.metadata.name) == stop_after:
                break
        self._done.set()

    def wait(self, timeout: float = 5) -> list[tuple[str, str]]:
        assert self._done.wait(timeout), f"watch did not finish; saw {self.summary()}"
        return self.summary()

    def summary(self) -> list[tuple[str, str]]:
        return [(kind, obj.metadata.name) for kind, obj in self.events]


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def watch_lines(http: httpx2.Client, path: str, count: int | None = None, **params: Any) -> list[dict]:
    """Events of a raw watch: `count` of them, or all until the server ends the stream."""
    events = []
    with http.stream("GET", path, params={"watch": "true", **params}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        for line in response.iter_lines():
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


# --- create / get: codes and Status bodies ------------------------------------------------------


def test_create_answers_201_with_the_object_and_server_set_metadata(kubeapi_http: httpx2.Client) -> None:
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("slurmd-1"))
    assert response.status_code == 201
    pod = response.json()
    meta = pod["metadata"]
    assert (pod["apiVersion"], pod["kind"], meta["namespace"]) == ("v1", "Pod", "default")
    assert meta["uid"] and int(meta["resourceVersion"]) > 0
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_creating_an_existing_name_is_409_already_exists(kubeapi_client: Client) -> None:
    kubeapi_client.create(make_pod("slurmd-1"))
    status = api_error(kubeapi_client.create, make_pod("slurmd-1"))
    assert (status.code, status.reason, status.message) == (409, "AlreadyExists", 'pods "slurmd-1" already exists')
    assert (status.details.name, status.details.kind) == ("slurmd-1", "pods")


def test_getting_a_missing_object_is_404_not_found(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    status = api_error(kubeapi_client.get, Pod, "nope")
    assert (status.code, status.reason, status.message) == (404, "NotFound", 'pods "nope" not found')
    body = kubeapi_http.get("/api/v1/namespaces/default/pods/nope").json()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }


def test_a_name_that_is_not_dns1123_is_422_invalid(kubeapi_client: Client) -> None:
    status = api_error(kubeapi_client.create, make_pod("Bad_Name"))
    assert (status.code, status.reason) == (422, "Invalid")
    assert (
        status.message
        == f'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN_MESSAGE}'
    )
    cause = status.details.causes[0]
    assert (cause.reason, cause.field) == ("FieldValueInvalid", "metadata.name")
    assert cause.message == f'Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN_MESSAGE}'
    assert (status.details.kind, status.details.name) == ("Pod", "Bad_Name")


def test_a_pod_without_containers_is_422_required(kubeapi_client: Client) -> None:
    status = api_error(kubeapi_client.create, Pod(metadata=ObjectMeta(name="empty"), spec=PodSpec(containers=[])))
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.message == 'Pod "empty" is invalid: spec.containers: Required value'
    assert [(c.reason, c.field, c.message) for c in status.details.causes] == [
        ("FieldValueRequired", "spec.containers", "Required value")
    ]


def test_several_errors_are_listed_in_brackets(kubeapi_client: Client) -> None:
    status = api_error(kubeapi_client.create, Pod(metadata=ObjectMeta(name="Bad_Name"), spec=PodSpec(containers=[])))
    assert status.message.startswith('Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": ')
    assert status.message.endswith(", spec.containers: Required value]")


def test_generate_name_appends_five_random_characters(kubeapi_client: Client) -> None:
    created = kubeapi_client.create(Pod(metadata=ObjectMeta(generateName="slurmd-"), spec=make_pod("x").spec))
    name = created.metadata.name
    assert name.startswith("slurmd-") and len(name) == len("slurmd-") + 5
    assert all(c in "bcdfghjklmnpqrstvwxz2456789" for c in name[-5:])


def test_namespace_comes_from_the_url_and_a_different_one_is_400(kubeapi_http: httpx2.Client) -> None:
    body = pod_body("p")
    body["metadata"]["namespace"] = "kube-system"
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 400
    assert response.json()["reason"] == "BadRequest"
    assert (
        response.json()["message"]
        == "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_a_put_is_checked_in_the_real_servers_order_name_and_namespace_then_uid_then_existence(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    stored = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "1"})).to_dict()
    url = "/api/v1/namespaces/default/configmaps/c"

    def put(path: str, **meta: Any) -> httpx2.Response:
        return kubeapi_http.put(path, json={**stored, "metadata": {**stored["metadata"], **meta}})

    # the handler's checkName comes first, even before a missing object would be a 404
    nameless = kubeapi_http.put("/api/v1/namespaces/default/configmaps/gone", json={**stored, "metadata": {}})
    assert (nameless.status_code, nameless.json()["message"]) == (
        400, "the name of the object (gone based on URL) was undeterminable: name must be provided")
    other_name = put("/api/v1/namespaces/default/configmaps/gone")
    assert (other_name.status_code, other_name.json()["message"]) == (
        400, "the name of the object (c) does not match the name on the URL (gone)")
    other_namespace = put(url, namespace="kube-system", uid="not-the-uid")
    assert (other_namespace.status_code, other_namespace.json()["message"]) == (
        400, "the namespace of the object (kube-system) does not match the namespace on the request (default)")
    # then storage's UID precondition, against the stored object or against none
    wrong_uid = put(url, uid="not-the-uid", resourceVersion="1")
    assert wrong_uid.status_code == 409 and wrong_uid.json()["reason"] == "Conflict"
    assert wrong_uid.json()["message"] == (
        'Operation cannot be fulfilled on configmaps "c": StorageError: invalid object, Code: 4, '
        "Key: /registry/configmaps/default/c, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: "
        f"UID in precondition: not-the-uid, UID in object meta: {stored['metadata']['uid']}")
    kubeapi_client.delete(ConfigMap, "c")
    missing = put(url)
    assert missing.status_code == 409 and missing.json()["message"].endswith(
        f"UID in precondition: {stored['metadata']['uid']}, UID in object meta: ")
    assert put(url, uid=None).status_code == 404
    assert api_error(kubeapi_client.get, ConfigMap, "c").code == 404


def test_a_patch_that_renames_the_object_is_400_as_the_patchers_check_name_says(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c")))
    url = "/api/v1/namespaces/default/configmaps/c"
    renamed = kubeapi_http.patch(url, json={"metadata": {"name": "other"}},
                                 headers={"Content-Type": "application/merge-patch+json"})
    assert (renamed.status_code, renamed.json()["message"]) == (
        400, "the name of the object (other) does not match the name on the URL (c)")
    nameless = kubeapi_http.patch(url, json=[{"op": "remove", "path": "/metadata/name"}],
                                  headers={"Content-Type": "application/json-patch+json"})
    assert (nameless.status_code, nameless.json()["message"]) == (
        400, "the name of the object (c based on URL) was undeterminable: name must be provided")


def test_objects_in_a_missing_namespace_are_404_namespace_not_found(kubeapi_client: Client) -> None:
    status = api_error(kubeapi_client.create, make_pod("p"), namespace="slurm")
    assert (status.code, status.reason, status.message) == (404, "NotFound", 'namespaces "slurm" not found')
    assert (status.details.name, status.details.kind) == ("slurm", "namespaces")


def test_unknown_fields_are_dropped_and_wrong_types_are_400(kubeapi_http: httpx2.Client) -> None:
    body = pod_body("p")
    body["spec"]["notAField"] = True
    assert "notAField" not in kubeapi_http.post("/api/v1/namespaces/default/pods", json=body).json()["spec"]
    bad = pod_body("q", containers=[{"name": "c", "image": "i", "ports": [{"containerPort": "80"}]}])
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=bad)
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string'
    )


@pytest.mark.parametrize("url, body, message", [
    ("/api/v1/namespaces/default/pods", pod_body("p", terminationGracePeriodSeconds=30.0),
     "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number 30.0 into Go struct field "
     "PodSpec.spec.terminationGracePeriodSeconds of type int64"),
    ("/apis/coordination.k8s.io/v1/namespaces/default/leases",
     {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 2**31}},
     "Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal number 2147483648 into Go "
     "struct field LeaseSpec.spec.leaseDurationSeconds of type int32"),
    ("/api/v1/namespaces/default/pods",
     pod_body("p", containers=[{"name": "c", "image": "i", "readinessProbe": {"httpGet": {"port": 8080.5}}}]),
     "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number 8080.5 into Go struct field "
     "HTTPGetAction.spec.containers.readinessProbe.httpGet.port of type int32"),
], ids=["float-in-int64", "over-int32", "float-in-int-or-string"])
def test_a_number_that_is_no_integer_of_the_fields_size_is_400(kubeapi_http: httpx2.Client, url: str, body: dict,
                                                                message: str) -> None:
    """Go's decoder parses an integer field's literal with ParseInt: a template's `30.0` or a
    duration past int32 is refused before validation, not rounded or stored."""
    response = kubeapi_http.post(url, json=body)
    assert (response.status_code, response.json()["message"]) == (400, message)


# --- resourceVersion and optimistic concurrency -----------------------------------------------------


def test_resource_versions_increase_across_kinds(kubeapi_client: Client) -> None:
    first = kubeapi_client.create(make_pod("a"))
    config = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    second = kubeapi_client.create(make_pod("b"))
    versions = [int(o.metadata.resourceVersion) for o in (first, config, second)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_a_stale_update_is_409_conflict(kubeapi_client: Client) -> None:
    pod = kubeapi_client.create(make_pod("p"))
    pod.metadata.labels = {"v": "1"}
    updated = kubeapi_client.replace(pod)
    assert int(updated.metadata.resourceVersion) > int(pod.metadata.resourceVersion)
    pod.metadata.labels = {"v": "2"}  # still carries the old resourceVersion
    status = api_error(kubeapi_client.replace, pod)
    assert (status.code, status.reason) == (409, "Conflict")
    assert status.message == (
        'Operation cannot be fulfilled on pods "p": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_an_update_that_changes_nothing_keeps_the_resource_version(kubeapi_client: Client) -> None:
    pod = kubeapi_client.create(make_pod("p", labels={"a": "b"}))
    again = kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"a": "b"}}}, patch_type=PatchType.MERGE)
    assert again.metadata.resourceVersion == pod.metadata.resourceVersion


# --- lists and selectors ------------------------------------------------------------------------


@pytest.fixture
def labelled_pods(kubeapi_client: Client) -> Client:
    for name, labels in {
        "a": {"app": "slurmd", "nodeset": "cpu"},
        "b": {"app": "slurmd", "nodeset": "gpu"},
        "c": {"app": "other"},
    }.items():
        kubeapi_client.create(make_pod(name, labels=labels))
    return kubeapi_client


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=slurmd", ["a", "b"]),
        ("app==slurmd,nodeset=gpu", ["b"]),
        ("app!=slurmd", ["c"]),
        ("nodeset in (cpu, gpu)", ["a", "b"]),
        ("nodeset notin (gpu)", ["a", "c"]),
        ("nodeset", ["a", "b"]),
        ("!nodeset", ["c"]),
    ],
)
def test_label_selectors_use_the_full_syntax(
    labelled_pods: Client, kubeapi_http: httpx2.Client, selector: str, expected: list[str]
) -> None:
    items = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"labelSelector": selector}).json()["items"]
    assert [i["metadata"]["name"] for i in items] == expected


def test_lightkube_label_selectors(labelled_pods: Client) -> None:
    from lightkube import operators

    names = [
        p.metadata.name for p in labelled_pods.list(Pod, labels={"app": "slurmd", "nodeset": operators.not_in(["gpu"])})
    ]
    assert names == ["a"]


@pytest.mark.parametrize("selector", ["app in slurmd", "app=slurmd=x", "a b", "Bad Key", "app in ()"])
def test_a_malformed_label_selector_is_400(kubeapi_http: httpx2.Client, selector: str) -> None:
    response = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"labelSelector": selector})
    assert response.status_code == 400
    assert response.json()["reason"] == "BadRequest"


def test_field_selectors_on_name_node_and_phase(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("on-n1", node="n1"))
    kubeapi_client.create(make_pod("on-n2", node="n2"))
    kubeapi_client.create(make_pod("unbound"))
    kubeapi_client.patch(PodStatus, "on-n2", {"status": {"phase": "Running"}})

    def names(**fields: str) -> list[str]:
        return [p.metadata.name for p in kubeapi_client.list(Pod, fields=fields)]

    assert names(**{"metadata.name": "on-n1"}) == ["on-n1"]
    assert names(**{"spec.nodeName": "n2"}) == ["on-n2"]
    assert names(**{"spec.nodeName": ""}) == ["unbound"]  # how a scheduler finds pending pods
    assert names(**{"status.phase": "Running"}) == ["on-n2"]
    selector = {"fieldSelector": "status.phase!=Running,spec.schedulerName=default-scheduler"}
    items = kubeapi_http.get("/api/v1/pods", params=selector).json()["items"]
    assert [i["metadata"]["name"] for i in items] == ["on-n1", "unbound"]


@pytest.mark.parametrize("label", ["spec.hostname", "metadata.uid"])
def test_an_unsupported_field_selector_is_400_with_the_real_message(kubeapi_http: httpx2.Client, label: str) -> None:
    response = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"fieldSelector": f"{label}=x"})
    assert response.status_code == 400
    assert response.json()["message"] == f"field label not supported: {label}"


def test_lists_carry_kind_resource_version_and_items(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    created = kubeapi_client.create(make_pod("p"))
    body = kubeapi_http.get("/api/v1/namespaces/default/pods").json()
    assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
    assert int(body["metadata"]["resourceVersion"]) >= int(created.metadata.resourceVersion)
    assert [i["metadata"]["name"] for i in body["items"]] == ["p"]


def test_limit_and_continue_page_through_a_list(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    for i in range(5):
        kubeapi_client.create(make_pod(f"p{i}"))
    first = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"limit": 2}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]
    second = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"limit": 2, "continue": token}).json()
    assert [i["metadata"]["name"] for i in second["items"]] == ["p2", "p3"]
    assert [p.metadata.name for p in kubeapi_client.list(Pod, chunk_size=2)] == [f"p{i}" for i in range(5)]
    bad = kubeapi_http.get("/api/v1/namespaces/default/pods", params={"limit": 2, "continue": "garbage!"})
    assert bad.status_code == 400


def test_a_continue_token_older_than_the_store_keeps_is_410_expired_with_a_token_for_the_rest() -> None:
    """kube-apiserver answers a continue token whose revision etcd has compacted with 410 Expired
    (and an inconsistent token for the rest): a client must start its listing again."""
    with KubeApiServer(history_limit=3, history_fresh=0) as server:
        client = Client(KubeConfig.from_dict(server.kubeconfig()), trust_env=False)
        for i in range(5):
            client.create(make_pod(f"p{i}"))
        with httpx2.Client(base_url=server.url) as http:
            first = http.get("/api/v1/namespaces/default/pods", params={"limit": 2}).json()
            fresh = http.get("/api/v1/namespaces/default/pods",
                             params={"limit": 2, "continue": first["metadata"]["continue"]})
            assert [i["metadata"]["name"] for i in fresh.json()["items"]] == ["p2", "p3"]
            for i in range(5, 10):
                client.create(make_pod(f"p{i}"))
            stale = http.get("/api/v1/namespaces/default/pods",
                             params={"limit": 2, "continue": first["metadata"]["continue"]})
            assert stale.status_code == 410
            status = stale.json()
            assert (status["kind"], status["reason"]) == ("Status", "Expired")
            assert status["message"].startswith("The provided continue parameter is too old")
            rest = http.get("/api/v1/namespaces/default/pods",
                            params={"limit": 100, "continue": status["metadata"]["continue"]}).json()
            assert [i["metadata"]["name"] for i in rest["items"]] == [f"p{i}" for i in range(2, 10)]


# --- watch --------------------------------------------------------------------------------------


def test_watch_streams_added_modified_deleted(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    watcher = Watcher(kubeapi_server, kubeapi_client, Pod, ("DELETED", "p"), namespace="default")
    kubeapi_client.create(make_pod("p"))
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"x": "y"}}})
    kubeapi_client.delete(Pod, "p")
    # a pod's deletion, even an immediate one, first writes its deletionTimestamp
    assert watcher.wait() == [("ADDED", "p"), ("MODIFIED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
    assert watcher.events[2][1].metadata.deletionTimestamp is not None
    versions = [int(obj.metadata.resourceVersion) for _, obj in watcher.events]
    assert versions == sorted(versions)


def test_watch_without_resource_version_starts_with_current_objects(
    kubeapi_server: KubeApiServer, kubeapi_client: Client
) -> None:
    kubeapi_client.create(make_pod("existing"))
    watcher = Watcher(kubeapi_server, kubeapi_client, Pod, ("ADDED", "new"), namespace="default")
    kubeapi_client.create(make_pod("new"))
    assert watcher.wait() == [("ADDED", "existing"), ("ADDED", "new")]


def test_a_watch_by_node_sees_a_pod_arrive_when_bound_and_leave_when_it_stops_matching(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_client.create(make_pod("p"))
    watcher = Watcher(
        kubeapi_server,
        kubeapi_client,
        Pod,
        ("DELETED", "p"),
        namespace="default",
        labels={"run": "yes"},
        fields={"spec.nodeName": "n1"},
    )
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"run": "yes"}}})  # matches labels, not the node yet
    assert bind(kubeapi_http, "p", "n1").status_code == 201  # now matches: ADDED
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"run": "no"}}})  # stops matching: DELETED
    assert watcher.wait() == [("ADDED", "p"), ("DELETED", "p")]
    assert watcher.events[-1][1].metadata.labels == {"run": "yes"}  # as it last matched (cache_watcher.go)


def test_watch_from_a_resource_version_replays_what_followed(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    start = kubeapi_client.create(make_pod("a")).metadata.resourceVersion
    kubeapi_client.create(make_pod("b"))
    kubeapi_client.delete(Pod, "a")
    events = watch_lines(kubeapi_http, "/api/v1/namespaces/default/pods", 3, resourceVersion=start)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_from_a_compacted_resource_version_is_an_error_event_410() -> None:
    with KubeApiServer(history_limit=3, history_fresh=0) as server:
        client = Client(KubeConfig.from_dict(server.kubeconfig()), trust_env=False)
        old = client.create(make_pod("p0")).metadata.resourceVersion
        for i in range(1, 6):
            client.create(make_pod(f"p{i}"))
        with httpx2.Client(base_url=server.url) as http:
            events = watch_lines(http, "/api/v1/namespaces/default/pods", resourceVersion=old)
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith(f"too old resource version: {old} (")
        status = api_error(lambda: next(iter(client.watch(Pod, namespace="default", resource_version=old))))
        assert status.code == 410


def test_the_deprecated_watch_path_and_watch_1_still_work(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p"))
    legacy = watch_lines(kubeapi_http, "/api/v1/watch/namespaces/default/pods/p", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in legacy] == [("ADDED", "p")]
    with kubeapi_http.stream("GET", "/api/v1/namespaces/default/pods", params={"watch": "1"}) as response:
        first = json.loads(next(response.iter_lines()))
    assert first["type"] == "ADDED"


def test_a_bad_watch_timeout_is_400_like_an_int64_query_parameter(kubeapi_http: httpx2.Client) -> None:
    response = kubeapi_http.get("/api/v1/pods", params={"watch": "true", "timeoutSeconds": "0.5"})
    assert response.status_code == 400


def test_watch_bookmarks_and_timeout_seconds(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p"))
    started = time.monotonic()
    events = watch_lines(kubeapi_http, "/api/v1/namespaces/default/pods", timeoutSeconds=1, allowWatchBookmarks="true")
    assert 0.9 < time.monotonic() - started < 15  # ended by its timeoutSeconds, not the server's 300 s
    assert events[0]["type"] == "ADDED"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[0]["object"]["kind"] == "Pod"
    assert set(bookmarks[0]["object"]["metadata"]) == {"resourceVersion"}


def test_watch_streams_end_when_the_server_stops() -> None:
    server = KubeApiServer().start()
    client = Client(KubeConfig.from_dict(server.kubeconfig()), trust_env=False)
    outcome: list[str] = []

    def watch() -> None:
        try:
            for _ in client.watch(Pod, namespace="default"):
                pass
        except httpx2.HTTPError as err:  # lightkube reconnects and finds the server gone
            outcome.append(type(err).__name__)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wait_for(lambda: watchers(server) == 1)
    server.stop()
    thread.join(5)
    assert not thread.is_alive() and outcome


# --- binding, status, graceful deletion ---------------------------------------------------------


def test_binding_sets_the_node_and_a_second_binding_is_409(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p"))
    response = bind(kubeapi_http, "p", "n1")
    assert response.status_code == 201
    assert response.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    pod = kubeapi_client.get(Pod, "p")
    assert pod.spec.nodeName == "n1"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    again = bind(kubeapi_http, "p", "n2")
    assert again.status_code == 409
    assert (
        again.json()["message"]
        == 'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "n1"'
    )


def test_lightkube_cannot_decode_the_binding_answer_but_the_pod_is_bound(kubeapi_client: Client) -> None:
    # A real server answers a binding with a Status, which lightkube tries to read as a Binding.
    from lightkube.models.core_v1 import ObjectReference

    kubeapi_client.create(make_pod("p"))
    binding = PodBinding(metadata=ObjectMeta(name="p"), target=ObjectReference(kind="Node", name="n1"))
    with pytest.raises(msgspec.ValidationError):
        kubeapi_client.create(binding, name="p")
    assert kubeapi_client.get(Pod, "p").spec.nodeName == "n1"


def test_a_pod_with_scheduling_gates_cannot_be_bound(kubeapi_http: httpx2.Client) -> None:
    kubeapi_http.post(
        "/api/v1/namespaces/default/pods", json=pod_body("gated", schedulingGates=[{"name": "example.com/wait"}])
    )
    response = bind(kubeapi_http, "gated", "n1")
    assert response.status_code == 409
    assert response.json()["message"].endswith("pod gated has non-empty .spec.schedulingGates")


def test_status_changes_only_through_the_status_subresource(kubeapi_client: Client) -> None:
    kubeapi_client.create(make_pod("p"))
    ignored = kubeapi_client.patch(Pod, "p", {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "b"}}})
    assert ignored.status.phase == "Pending" and ignored.metadata.labels == {"a": "b"}
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]
    kubeapi_client.patch(PodStatus, "p", {"status": {"conditions": conditions}})
    ready = [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]
    patched = kubeapi_client.patch(
        PodStatus, "p", {"status": {"phase": "Running", "conditions": ready}, "metadata": {"labels": {"a": "changed"}}}
    )
    assert patched.status.phase == "Running"
    assert patched.metadata.labels == {"a": "b"}  # metadata does not change through status
    # strategic merge: conditions merge by type
    assert sorted((c.type, c.status) for c in patched.status.conditions) == [
        ("PodScheduled", "True"),
        ("Ready", "True"),
    ]
    assert [c.reason for c in patched.status.conditions if c.type == "PodScheduled"] == ["Unschedulable"]


def test_status_replace_with_a_stale_version_is_409(kubeapi_client: Client) -> None:
    pod = kubeapi_client.create(make_pod("p"))
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"x": "1"}}})
    pod.status.phase = "Running"
    status = api_error(kubeapi_client.replace, PodStatus(metadata=pod.metadata, spec=pod.spec, status=pod.status), "p")
    assert status.code == 409


def test_deleting_a_running_pod_is_graceful_until_the_kubelet_deletes_it_with_grace_0(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_client.create(make_pod("p", node="n1"))
    watcher = Watcher(kubeapi_server, kubeapi_client, Pod, ("DELETED", "p"), namespace="default")
    response = kubeapi_http.delete("/api/v1/namespaces/default/pods/p")
    assert response.status_code == 200
    marked = response.json()
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30 and marked["metadata"]["deletionTimestamp"]
    still_there = kubeapi_client.get(Pod, "p")
    assert still_there.metadata.deletionTimestamp is not None
    again = kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("p"))
    assert again.status_code == 409  # store.go Create says why the name is still taken
    assert again.json()["message"] == 'object is being deleted: pods "p" already exists'
    # the kubelet stand-in: grace 0 with a uid precondition, as the real kubelet deletes
    body = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": still_there.metadata.uid},
    }
    gone = kubeapi_http.request("DELETE", "/api/v1/namespaces/default/pods/p", json=body)
    assert gone.status_code == 200 and gone.json()["kind"] == "Pod"
    assert api_error(kubeapi_client.get, Pod, "p").code == 404
    # the shorter grace is written before the removal, as the registry's graceful path does
    assert watcher.wait() == [("ADDED", "p"), ("MODIFIED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]


def test_unbound_and_finished_pods_are_removed_at_once(kubeapi_client: Client) -> None:
    kubeapi_client.create(make_pod("unbound"))
    kubeapi_client.create(make_pod("done", node="n1"))
    kubeapi_client.patch(PodStatus, "done", {"status": {"phase": "Succeeded"}})
    kubeapi_client.delete(Pod, "unbound")
    kubeapi_client.delete(Pod, "done")
    assert list(kubeapi_client.list(Pod)) == []


def test_a_delete_with_a_wrong_uid_precondition_is_409(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p"))
    body = {"gracePeriodSeconds": 0, "preconditions": {"uid": "not-the-uid"}}
    response = kubeapi_http.request("DELETE", "/api/v1/namespaces/default/pods/p", json=body)
    assert response.status_code == 409
    assert response.json()["message"].startswith(
        'Operation cannot be fulfilled on pods "p": Precondition failed: '
        "UID in precondition: not-the-uid, UID in object meta: "
    )


def test_finalizers_keep_an_object_until_they_are_removed(kubeapi_client: Client) -> None:
    kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c", finalizers=["example.com/keep"])))
    kubeapi_client.delete(ConfigMap, "c")
    kept = kubeapi_client.get(ConfigMap, "c")
    assert kept.metadata.deletionTimestamp is not None
    kubeapi_client.patch(ConfigMap, "c", [{"op": "remove", "path": "/metadata/finalizers"}], patch_type=PatchType.JSON)
    assert api_error(kubeapi_client.get, ConfigMap, "c").code == 404


def test_deleting_an_object_without_graceful_deletion_answers_a_success_status(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    uid = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c"))).metadata.uid
    body = kubeapi_http.delete("/api/v1/namespaces/default/configmaps/c").json()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "c", "kind": "configmaps", "uid": uid},
        "code": 200,
    }


def owned_pod(kubeapi_client: Client, name: str, owner: ConfigMap, node: str | None = None) -> None:
    pod = make_pod(name, node=node)
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    pod.metadata.ownerReferences = [OwnerReference(**reference)]
    kubeapi_client.create(pod)


def test_deleting_an_owner_deletes_its_dependents_in_the_background(kubeapi_client: Client) -> None:
    owner = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="owner")))
    owned_pod(kubeapi_client, "dependent", owner)
    kubeapi_client.create(make_pod("independent"))
    kubeapi_client.delete(ConfigMap, "owner")
    wait_for(lambda: [p.metadata.name for p in kubeapi_client.list(Pod)] == ["independent"])


def test_orphan_propagation_keeps_the_dependents(kubeapi_client: Client) -> None:
    owner = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="owner")))
    owned_pod(kubeapi_client, "dependent", owner)
    kubeapi_client.delete(ConfigMap, "owner", cascade=CascadeType.ORPHAN)
    wait_for(lambda: not list(kubeapi_client.list(ConfigMap, fields={"metadata.name": "owner"})))
    assert kubeapi_client.get(Pod, "dependent").metadata.ownerReferences is None


def test_foreground_propagation_removes_the_owner_after_its_dependents(kubeapi_client: Client) -> None:
    owner = kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="owner")))
    owned_pod(kubeapi_client, "running", owner, node="n1")
    kubeapi_client.delete(ConfigMap, "owner", cascade=CascadeType.FOREGROUND)
    wait_for(lambda: kubeapi_client.get(Pod, "running").metadata.deletionTimestamp is not None)
    assert kubeapi_client.get(ConfigMap, "owner").metadata.finalizers == ["foregroundDeletion"]
    kubeapi_client.delete(Pod, "running", grace_period=0)
    wait_for(lambda: not list(kubeapi_client.list(ConfigMap, fields={"metadata.name": "owner"})))


def test_deletecollection_deletes_what_the_selector_matches(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    for name, app in (("a", "slurmd"), ("b", "slurmd"), ("c", "other")):
        kubeapi_client.create(make_pod(name, labels={"app": app}))
    response = kubeapi_http.delete("/api/v1/namespaces/default/pods", params={"labelSelector": "app=slurmd"})
    assert response.status_code == 200 and response.json()["kind"] == "PodList"
    assert [p.metadata.name for p in kubeapi_client.list(Pod)] == ["c"]


def test_dry_run_returns_the_result_without_storing_it(kubeapi_client: Client) -> None:
    created = kubeapi_client.create(make_pod("p"), dry_run=True)
    assert created.metadata.uid and created.status.phase == "Pending"
    assert api_error(kubeapi_client.get, Pod, "p").code == 404
    kubeapi_client.create(make_pod("p"))
    patched = kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"a": "b"}}}, dry_run=True)
    assert patched.metadata.labels == {"a": "b"}
    assert kubeapi_client.get(Pod, "p").metadata.labels is None
    kubeapi_client.delete(Pod, "p", dry_run=True)
    assert kubeapi_client.get(Pod, "p").metadata.name == "p"


# --- namespaces ---------------------------------------------------------------------------------


def test_deleting_a_namespace_empties_it_then_removes_it(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(Namespace(metadata=ObjectMeta(name="slurm")))
    assert kubeapi_client.get(Namespace, "slurm").metadata.labels == {"kubernetes.io/metadata.name": "slurm"}
    kubeapi_client.create(make_pod("unbound"), namespace="slurm")
    kubeapi_client.create(make_pod("running", node="n1"), namespace="slurm")
    kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="conf")), namespace="slurm")
    terminating = kubeapi_http.delete("/api/v1/namespaces/slurm").json()
    assert terminating["status"]["phase"] == "Terminating"
    refused = api_error(kubeapi_client.create, make_pod("late"), namespace="slurm")
    assert (refused.code, refused.message) == (
        403,
        'pods "late" is forbidden: unable to create new content in namespace slurm because it is being terminated',
    )
    wait_for(lambda: [p.metadata.name for p in kubeapi_client.list(Pod, namespace="slurm")] == ["running"])
    assert kubeapi_client.get(Pod, "running", namespace="slurm").metadata.deletionTimestamp is not None
    assert kubeapi_client.get(Namespace, "slurm").status.phase == "Terminating"
    kubeapi_client.delete(Pod, "running", namespace="slurm", grace_period=0)  # what the kubelet does
    wait_for(lambda: kubeapi_http.get("/api/v1/namespaces/slurm").status_code == 404)


def test_system_namespaces_cannot_be_deleted(kubeapi_client: Client) -> None:
    assert {n.metadata.name for n in kubeapi_client.list(Namespace)} >= {"default", "kube-system"}
    status = api_error(kubeapi_client.delete, Namespace, "default")
    assert (status.code, status.message) == (
        403,
        'namespaces "default" is forbidden: this namespace may not be deleted',
    )


def test_each_namespace_gets_a_default_service_account_that_pods_need(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_client.create(Namespace(metadata=ObjectMeta(name="slurm")))
    pod = kubeapi_client.create(make_pod("p"), namespace="slurm")
    assert pod.spec.serviceAccountName == "default"
    status = api_error(kubeapi_client.create, make_pod("q", serviceAccountName="bridge"), namespace="slurm")
    assert (status.code, status.message) == (
        403,
        'pods "q" is forbidden: error looking up service account slurm/bridge: serviceaccount "bridge" not found',
    )


# --- pods: defaults and validation --------------------------------------------------------------


def test_pods_get_the_real_servers_defaults(kubeapi_client: Client) -> None:
    containers = [
        Container(name="latest", image="slurmd:latest"),
        Container(name="untagged", image="registry:5000/slurmd"),
        Container(name="tagged", image="slurmd:22.05"),
    ]
    pod = kubeapi_client.create(make_pod("p", containers=containers))
    spec = pod.spec
    assert (spec.schedulerName, spec.restartPolicy, spec.dnsPolicy) == ("default-scheduler", "Always", "ClusterFirst")
    assert (spec.terminationGracePeriodSeconds, spec.enableServiceLinks, spec.priority) == (30, True, 0)
    assert [c.imagePullPolicy for c in spec.containers] == ["Always", "Always", "IfNotPresent"]
    assert {c.terminationMessagePath for c in spec.containers} == {"/dev/termination-log"}
    assert [(t.key, t.effect, t.tolerationSeconds) for t in spec.tolerations] == [
        ("node.kubernetes.io/not-ready", "NoExecute", 300),
        ("node.kubernetes.io/unreachable", "NoExecute", 300),
    ]


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),  # requests default to limits
        ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}, "Burstable"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        ({}, "BestEffort"),
    ],
)
def test_qos_class_is_computed_like_the_real_server(kubeapi_client: Client, resources: dict, qos: str) -> None:
    container = Container(name="c", image="i", resources=ResourceRequirements(**resources))
    pod = kubeapi_client.create(make_pod("p", containers=[container]))
    assert pod.status.qosClass == qos
    if "limits" in resources and "requests" not in resources:
        assert pod.spec.containers[0].resources.requests == {"cpu": "1", "memory": "1Gi"}


def test_quantities_come_back_in_canonical_form(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    resources = {
        "requests": {"cpu": "0.5", "memory": "1024Mi", "example.com/gpu": 2},
        "limits": {"cpu": "1000m", "memory": "1536Mi", "example.com/gpu": "2"},
    }
    body = pod_body("p", containers=[{"name": "c", "image": "i", "resources": resources}])
    created = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body).json()
    assert created["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "example.com/gpu": "2"},
        "limits": {"cpu": "1", "memory": "1536Mi", "example.com/gpu": "2"},
    }
    bad = pod_body("q", containers=[{"name": "c", "image": "i", "resources": {"limits": {"cpu": "lots"}}}])
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=bad)
    assert response.status_code == 400
    assert (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        in response.json()["message"]
    )


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("100m", "100m"),
        ("2", "2"),
        ("1Gi", "1Gi"),
        ("500M", "500M"),
        ("1e3", "1e3"),
        ("0.5", "500m"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("0.1n", "1n"),
        ("512", "512"),
    ],
)
def test_quantity_parsing(text: str, canonical: str) -> None:
    assert quantity.canonical_text(text) == canonical


def test_quantities_compare_exactly() -> None:
    assert quantity.parse("1Gi") == quantity.parse("1073741824") and quantity.parse("100m") < quantity.parse("0.2")
    with pytest.raises(quantity.QuantityError):
        quantity.parse("1.2.3")


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
            'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
        ),
        (
            {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}},
            'spec.containers[0].resources.requests: Invalid value: "1": must be equal to example.com/gpu limit of 2',
        ),
        (
            {"requests": {"example.com/gpu": "1"}},
            "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
        ),
        (
            {"limits": {"hugepages-2Mi": "4Mi"}},
            "spec.containers[0].resources: Forbidden: HugePages require cpu or memory",
        ),
        (
            {"limits": {"example.com/gpu": "500m"}},
            'spec.containers[0].resources.limits[example.com/gpu]: Invalid value: "500m": must be an integer',
        ),
        (
            {"limits": {"gpu": "1"}},
            'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": '
            "must be a standard resource type or fully qualified",
        ),
    ],
)
def test_resource_rules_are_enforced(kubeapi_http: httpx2.Client, resources: dict, message: str) -> None:
    body = pod_body("p", containers=[{"name": "c", "image": "i", "resources": resources}])
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"containers": [{"name": "a", "image": "i"}], "initContainers": [{"name": "a", "image": "i"}]},
            'spec.containers[0].name: Duplicate value: "a"',
        ),
        (
            {"containers": [{"name": "Bad", "image": "i"}]},
            'spec.containers[0].name: Invalid value: "Bad": a lowercase RFC 1123 label',
        ),
        ({"containers": [{"name": "c"}]}, "spec.containers[0].image: Required value"),
        (
            {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]},
            'spec.containers[0].volumeMounts[0].name: Not found: "data"',
        ),
        (
            {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]},
            'spec.volumes[1].name: Duplicate value: "v"',
        ),
        (
            {"restartPolicy": "Sometimes"},
            'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        ),
        ({"dnsPolicy": "Google"}, 'spec.dnsPolicy: Unsupported value: "Google"'),
        ({"hostname": "Node_1"}, 'spec.hostname: Invalid value: "Node_1"'),
        ({"subdomain": "a.b"}, 'spec.subdomain: Invalid value: "a.b"'),
        (
            {"nodeName": "n1", "schedulingGates": [{"name": "wait"}]},
            "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared",
        ),
    ],
)
def test_pod_spec_rules_are_enforced(kubeapi_http: httpx2.Client, spec: dict, message: str) -> None:
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("p", **spec))
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


def test_label_syntax_is_checked(kubeapi_http: httpx2.Client) -> None:
    body = pod_body("p")
    body["metadata"]["labels"] = {"ok": "x" * 64}
    message = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body).json()["message"]
    assert "metadata.labels: Invalid value: " in message and "must be no more than 63 characters" in message
    body["metadata"]["labels"] = {"bad key": "v"}
    assert kubeapi_http.post("/api/v1/namespaces/default/pods", json=body).status_code == 422


def test_annotations_are_limited_in_total_size(kubeapi_http: httpx2.Client) -> None:
    body = pod_body("p")
    body["metadata"]["annotations"] = {"a": "x" * 200_000, "b": "y" * 100_000}
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422
    assert "metadata.annotations: Too long: may not be more than 262144 bytes" in response.json()["message"]


def test_a_pod_spec_is_immutable_except_images_and_added_tolerations(kubeapi_client: Client) -> None:
    pod = kubeapi_client.create(make_pod("p"))
    pod.spec.containers[0].image = "slurmd:23.02"
    pod.spec.tolerations.append(Toleration(key="example.com/dedicated", operator="Exists", effect="NoSchedule"))
    pod = kubeapi_client.replace(pod)
    assert pod.spec.containers[0].image == "slurmd:23.02" and len(pod.spec.tolerations) == 3
    pod.spec.containers[0].resources = ResourceRequirements(limits={"cpu": "1"})
    status = api_error(kubeapi_client.replace, pod)
    assert status.code == 422
    assert status.message.startswith(
        'Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`'
    )
    removed = api_error(kubeapi_client.patch, Pod, "p", {"spec": {"tolerations": None}}, patch_type=PatchType.MERGE)
    assert removed.code == 422


def test_scheduling_gates_can_only_be_removed(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_http.post(
        "/api/v1/namespaces/default/pods", json=pod_body("p", schedulingGates=[{"name": "a"}, {"name": "b"}])
    )
    kubeapi_client.patch(Pod, "p", [{"op": "remove", "path": "/spec/schedulingGates/0"}], patch_type=PatchType.JSON)
    added = api_error(
        kubeapi_client.patch,
        Pod,
        "p",
        {"spec": {"schedulingGates": [{"name": "b"}, {"name": "c"}]}},
        patch_type=PatchType.MERGE,
    )
    assert "only deletion is allowed, but found new scheduling gate 'c'" in added.message


def test_pod_priority_comes_from_its_priority_class(kubeapi_client: Client) -> None:
    pod = kubeapi_client.create(make_pod("p", priorityClassName="system-node-critical"))
    assert pod.spec.priority == 2000001000
    status = api_error(kubeapi_client.create, make_pod("q", priorityClassName="missing"))
    assert (status.code, status.message) == (403, 'pods "q" is forbidden: no PriorityClass with name missing was found')


def test_pod_naming_a_runtime_class_gets_its_overhead_and_scheduling(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    status = api_error(kubeapi_client.create, make_pod("early", runtimeClassName="nvidia"))
    assert status.code == 403
    assert status.message == 'pods "early" is forbidden: pod rejected: RuntimeClass "nvidia" not found'
    kubeapi_client.create(RuntimeClass.from_dict({
        "metadata": {"name": "nvidia"}, "handler": "nvidia", "overhead": {"podFixed": {"memory": "64Mi"}},
        "scheduling": {"nodeSelector": {"nvidia.com/gpu.present": "true"},
                       "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}))
    pod = kubeapi_client.create(make_pod("p", runtimeClassName="nvidia"))
    assert pod.spec.overhead == {"memory": "64Mi"}
    assert pod.spec.nodeSelector == {"nvidia.com/gpu.present": "true"}
    assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)
    clash = api_error(kubeapi_client.create, make_pod("q", runtimeClassName="nvidia",
                                                      nodeSelector={"nvidia.com/gpu.present": "false"}))
    assert clash.message.endswith("conflict: runtimeClass.scheduling.nodeSelector[nvidia.com/gpu.present] = true; "
                                  "pod.spec.nodeSelector[nvidia.com/gpu.present] = false")
    no_handler = kubeapi_http.post("/apis/node.k8s.io/v1/runtimeclasses", json={"metadata": {"name": "x"}})
    assert no_handler.status_code == 422


def test_leases_answer_like_kube_apiserver(kubeapi_http: httpx2.Client) -> None:
    """What the daemon's leader election calls (bridge/lease.py): get → 404, create → 201 (409
    if it exists), a replace with a stale resourceVersion → 409, ValidateLeaseSpec → 422."""
    base = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    missing = kubeapi_http.get(f"{base}/bridge")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'leases.coordination.k8s.io "bridge" not found'
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2026-12-05T07:00:00.000000Z"}
    created = kubeapi_http.post(base, json={"metadata": {"name": "bridge"}, "spec": spec})
    assert created.status_code == 201
    assert kubeapi_http.post(base, json={"metadata": {"name": "bridge"}, "spec": spec}).status_code == 409
    lease = created.json()
    lease["spec"]["holderIdentity"] = "b"
    assert kubeapi_http.put(f"{base}/bridge", json=lease).status_code == 200
    stale = kubeapi_http.put(f"{base}/bridge", json=lease)  # the resourceVersion read before the update
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    bad = kubeapi_http.post(base, json={"metadata": {"name": "bad"}, "spec": {
        "leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "x"}})
    assert bad.status_code == 422
    assert bad.json()["message"] == (
        'Lease.coordination.k8s.io "bad" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater '
        'than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0, spec.preferredHolder: '
        'Forbidden: may only be specified if `strategy` is defined]')


# --- patch types --------------------------------------------------------------------------------


def test_strategic_merge_patch_merges_containers_by_name(kubeapi_client: Client) -> None:
    containers = [Container(name="a", image="a:1"), Container(name="b", image="b:1")]
    kubeapi_client.create(make_pod("p", containers=containers))
    patched = kubeapi_client.patch(Pod, "p", {"spec": {"containers": [{"name": "b", "image": "b:2"}]}})
    assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "a:1"), ("b", "b:2")]


def test_merge_patch_replaces_lists_and_null_deletes(kubeapi_client: Client) -> None:
    kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c", labels={"a": "1", "b": "2"}), data={"k": "v"}))
    patched = kubeapi_client.patch(
        ConfigMap, "c", {"metadata": {"labels": {"a": None}}, "data": {"x": "y"}}, patch_type=PatchType.MERGE
    )
    assert patched.metadata.labels == {"b": "2"} and patched.data == {"k": "v", "x": "y"}


def test_json_patch_operations_and_a_failed_test_op(kubeapi_client: Client) -> None:
    kubeapi_client.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    ops = [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/data/n", "value": "1"},
        {"op": "replace", "path": "/data/k", "value": "w"},
    ]
    assert kubeapi_client.patch(ConfigMap, "c", ops, patch_type=PatchType.JSON).data == {"k": "w", "n": "1"}
    failed = api_error(
        kubeapi_client.patch,
        ConfigMap,
        "c",
        [{"op": "test", "path": "/data/k", "value": "v"}],
        patch_type=PatchType.JSON,
    )
    assert failed.code == 422


def test_server_side_apply_creates_then_merges_and_needs_a_field_manager(kubeapi_server: KubeApiServer) -> None:
    client = Client(KubeConfig.from_dict(kubeapi_server.kubeconfig()), trust_env=False)
    applied = client.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"a": "1"}), field_manager="bridge")
    assert applied.data == {"a": "1"}
    applied = client.apply(ConfigMap(metadata=ObjectMeta(name="c"), data={"b": "2"}), field_manager="bridge")
    assert applied.data == {"a": "1", "b": "2"}
    with httpx2.Client(base_url=kubeapi_server.url) as http:
        response = http.patch(
            "/api/v1/namespaces/default/configmaps/c",
            content=b"data: {c: '3'}",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    assert response.status_code == 422
    assert "fieldManager: Required value: is required for apply patch" in response.json()["message"]


# --- CRDs ---------------------------------------------------------------------------------------

PODGROUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.volcano.sh"},
    "spec": {
        "group": "scheduling.volcano.sh",
        "names": {"kind": "PodGroup", "plural": "podgroups", "singular": "podgroup", "shortNames": ["pg"]},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "minMember": {"type": "integer", "format": "int32", "minimum": 0},
                                    "queue": {"type": "string", "default": "default"},
                                    "minResources": {
                                        "type": "object",
                                        "additionalProperties": {"x-kubernetes-int-or-string": True},
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}, "running": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def podgroups(kubeapi_http: httpx2.Client) -> Any:
    response = kubeapi_http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=PODGROUP_CRD)
    assert response.status_code == 201, response.text
    return create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups")


def test_a_crd_is_established_and_its_resources_served(kubeapi_http: httpx2.Client, podgroups: Any) -> None:
    crd = kubeapi_http.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/podgroups.scheduling.volcano.sh"
    ).json()
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    groups = kubeapi_http.get("/apis").json()["groups"]
    assert {
        "name": "scheduling.volcano.sh",
        "versions": [{"groupVersion": "scheduling.volcano.sh/v1beta1", "version": "v1beta1"}],
        "preferredVersion": {"groupVersion": "scheduling.volcano.sh/v1beta1", "version": "v1beta1"},
    } in groups
    resources = kubeapi_http.get("/apis/scheduling.volcano.sh/v1beta1").json()["resources"]
    assert [(r["name"], r["kind"]) for r in resources] == [("podgroups", "PodGroup"), ("podgroups/status", "PodGroup")]


def test_podgroup_crud_watch_and_status(kubeapi_server: KubeApiServer, kubeapi_client: Client, podgroups: Any) -> None:
    watcher = Watcher(kubeapi_server, kubeapi_client, podgroups, ("DELETED", "job-42"), namespace="default")
    created = kubeapi_client.create(podgroups(metadata=ObjectMeta(name="job-42"), spec={"minMember": 3, "unknown": 1}))
    assert created.spec == {"minMember": 3, "queue": "default"}  # pruned and defaulted like a real server
    assert created.metadata.generation == 1
    assert [pg.metadata.name for pg in kubeapi_client.list(podgroups)] == ["job-42"]
    patched = kubeapi_client.patch(podgroups, "job-42", {"spec": {"minMember": 4}}, patch_type=PatchType.MERGE)
    assert patched.spec["minMember"] == 4 and patched.metadata.generation == 2
    ignored = kubeapi_client.patch(podgroups, "job-42", {"status": {"phase": "Running"}}, patch_type=PatchType.MERGE)
    assert ignored.get("status") is None  # the main resource ignores status when a status subresource exists
    kubeapi_client.delete(podgroups, "job-42")
    assert watcher.wait() == [("ADDED", "job-42"), ("MODIFIED", "job-42"), ("DELETED", "job-42")]


def test_podgroup_status_subresource_and_rules_for_custom_resources(
    kubeapi_http: httpx2.Client, podgroups: Any
) -> None:
    base = "/apis/scheduling.volcano.sh/v1beta1/namespaces/default/podgroups"
    body = {
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "PodGroup",
        "metadata": {"name": "pg"},
        "spec": {"minMember": 1},
    }
    assert kubeapi_http.post(base, json=body).status_code == 201
    merge = {"Content-Type": "application/merge-patch+json"}
    status = kubeapi_http.patch(f"{base}/pg/status", json={"status": {"phase": "Running", "running": 1}}, headers=merge)
    assert status.status_code == 200 and status.json()["status"] == {"phase": "Running", "running": 1}
    strategic = kubeapi_http.patch(
        f"{base}/pg",
        json={"spec": {"minMember": 2}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert strategic.status_code == 415  # custom resources do not support strategic merge patch
    current = kubeapi_http.get(f"{base}/pg").json()
    del current["metadata"]["resourceVersion"]
    unconditional = kubeapi_http.put(f"{base}/pg", json=current)
    assert unconditional.status_code == 422
    assert unconditional.json()["message"] == (  # store.go: the resource as the kind, a uint64 as %#v
        'podgroups.scheduling.volcano.sh "pg" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    wrong_type = dict(body, metadata={"name": "bad"}, spec={"minMember": "three"})
    invalid = kubeapi_http.post(base, json=wrong_type)
    assert invalid.status_code == 422
    assert invalid.json()["message"] == (
        'PodGroup.scheduling.volcano.sh "bad" is invalid: spec.minMember: Invalid value: "string": '
        'spec.minMember in body must be of type integer: "string"'
    )
    missing = kubeapi_http.get(f"{base}/nope").json()
    assert missing["message"] == 'podgroups.scheduling.volcano.sh "nope" not found'
    assert missing["details"] == {"name": "nope", "group": "scheduling.volcano.sh", "kind": "podgroups"}


def test_deleting_a_crd_removes_its_objects_and_its_api(
    kubeapi_client: Client, kubeapi_http: httpx2.Client, podgroups: Any
) -> None:
    kubeapi_client.create(podgroups(metadata=ObjectMeta(name="pg"), spec={"minMember": 1}))
    kubeapi_http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/podgroups.scheduling.volcano.sh")
    wait_for(lambda: kubeapi_http.get("/apis/scheduling.volcano.sh/v1beta1").status_code == 404)
    kubeapi_http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=PODGROUP_CRD)
    assert list(kubeapi_client.list(podgroups)) == []


def test_other_scheduler_crds_register_too(kubeapi_http: httpx2.Client) -> None:
    crd = json.loads(json.dumps(PODGROUP_CRD))
    crd["metadata"]["name"] = "podgroups.scheduling.x-k8s.io"
    crd["spec"]["group"] = "scheduling.x-k8s.io"
    crd["spec"]["versions"][0]["name"] = "v1alpha1"
    assert kubeapi_http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201
    nad = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
        "spec": {
            "group": "k8s.cni.cncf.io",
            "scope": "Namespaced",
            "names": {
                "kind": "NetworkAttachmentDefinition",
                "plural": "network-attachment-definitions",
                "shortNames": ["net-attach-def"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"config": {"type": "string"}}}},
                        }
                    },
                }
            ],
        },
    }
    assert kubeapi_http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=nad).status_code == 201
    created = kubeapi_http.post(
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions",
        json={
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "ib"},
            "spec": {"config": "{}"},
        },
    )
    assert created.status_code == 201
    listed = kubeapi_http.get("/apis/scheduling.x-k8s.io/v1alpha1/namespaces/default/podgroups").json()
    assert (listed["kind"], listed["apiVersion"]) == ("PodGroupList", "scheduling.x-k8s.io/v1alpha1")


def test_a_crd_whose_name_does_not_match_is_422(kubeapi_http: httpx2.Client) -> None:
    crd = json.loads(json.dumps(PODGROUP_CRD))
    crd["metadata"]["name"] = "wrong.example.com"
    response = kubeapi_http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert response.status_code == 422
    assert (
        'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group'
        in response.json()["message"]
    )


# --- nodes, events, secrets ---------------------------------------------------------------------


def test_nodes_keep_status_from_create_and_change_it_only_through_status(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"slurm": "yes"}},
        "status": {"capacity": {"cpu": "4", "memory": "8192Mi"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    created = kubeapi_http.post("/api/v1/nodes", json=body).json()
    assert created["status"]["capacity"] == {"cpu": "4", "memory": "8Gi"}
    ignored = kubeapi_client.patch(Node, "n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert ignored.status.conditions[0].status == "True"
    changed = kubeapi_client.patch(NodeStatus, "n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert changed.status.conditions[0].status == "False"
    kubeapi_client.patch(Node, "n1", {"spec": {"unschedulable": True}})
    assert [n.metadata.name for n in kubeapi_client.list(Node, fields={"spec.unschedulable": "true"})] == ["n1"]
    assert kubeapi_http.get("/api/v1/namespaces/default/nodes").status_code == 404


def test_deleting_a_node_leaves_its_pods(kubeapi_client: Client) -> None:
    kubeapi_client.create(Node(metadata=ObjectMeta(name="n1")))
    kubeapi_client.create(make_pod("p", node="n1"))
    kubeapi_client.delete(Node, "n1")
    assert kubeapi_client.get(Pod, "p").spec.nodeName == "n1"


def test_core_events_and_events_k8s_io_are_one_store(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    pod = kubeapi_client.create(make_pod("p"))
    involved = {"kind": "Pod", "name": "p", "namespace": "default", "uid": pod.metadata.uid, "apiVersion": "v1"}
    core = {
        "metadata": {"name": "p.1"},
        "involvedObject": involved,
        "reason": "Scheduled",
        "message": "bound",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
    }
    assert kubeapi_http.post("/api/v1/namespaces/default/events", json=core).status_code == 201
    listed = kubeapi_http.get("/apis/events.k8s.io/v1/namespaces/default/events").json()["items"]
    assert listed[0]["regarding"]["name"] == "p" and listed[0]["note"] == "bound"
    assert [e.reason for e in kubeapi_client.list(Event, fields={"involvedObject.name": "p"})] == ["Scheduled"]
    strict = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "p.2"},
        "regarding": involved,
        "reason": "Started",
        "note": "n",
        "type": "Normal",
    }
    response = kubeapi_http.post("/apis/events.k8s.io/v1/namespaces/default/events", json=strict)
    assert response.status_code == 422
    message = response.json()["message"]
    assert "eventTime: Required value" in message and "reportingController: Required value" in message
    strict.update(
        eventTime="2024-01-01T00:00:00.000000Z",
        reportingController="slurm-k8s-bridge",
        reportingInstance="bridge-1",
        action="Resume",
    )
    assert kubeapi_http.post("/apis/events.k8s.io/v1/namespaces/default/events", json=strict).status_code == 201
    assert {e.message for e in kubeapi_client.list(Event)} == {"bound", "n"}


def test_secrets_take_string_data_and_configmaps_check_keys(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    secret = kubeapi_client.create(Secret(metadata=ObjectMeta(name="munge"), stringData={"munge.key": "k3y"}))
    assert secret.type == "Opaque" and base64.b64decode(secret.data["munge.key"]) == b"k3y"
    assert secret.stringData is None
    bad = {"metadata": {"name": "c"}, "data": {"bad key": "v"}}
    response = kubeapi_http.post("/api/v1/namespaces/default/configmaps", json=bad)
    assert response.status_code == 422 and 'data[bad key]: Invalid value: "bad key"' in response.json()["message"]


# --- HTTP errors, discovery ---------------------------------------------------------------------


def test_unknown_resources_are_404_and_unsupported_methods_405(kubeapi_http: httpx2.Client) -> None:
    missing = kubeapi_http.get("/api/v1/namespaces/default/widgets")
    assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"
    not_allowed = kubeapi_http.put("/api/v1/namespaces/default/pods", json={})
    assert not_allowed.status_code == 405 and not_allowed.json()["reason"] == "MethodNotAllowed"
    assert kubeapi_http.post("/api/v1/pods", json=pod_body("p")).status_code == 405


def test_discovery_documents(kubeapi_http: httpx2.Client) -> None:
    assert kubeapi_http.get("/version").json()["major"] == "1"
    assert kubeapi_http.get("/api").json()["versions"] == ["v1"]
    resources = {r["name"]: r for r in kubeapi_http.get("/api/v1").json()["resources"]}
    assert resources["pods"]["namespaced"] is True and "watch" in resources["pods"]["verbs"]
    assert resources["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert resources["pods/binding"] == {
        "name": "pods/binding",
        "singularName": "",
        "namespaced": True,
        "kind": "Binding",
        "verbs": ["create"],
    }
    assert resources["nodes"]["namespaced"] is False
    groups = {g["name"] for g in kubeapi_http.get("/apis").json()["groups"]}
    assert {"apiextensions.k8s.io", "events.k8s.io", "coordination.k8s.io"} <= groups
    events = kubeapi_http.get("/apis/events.k8s.io/v1").json()
    assert events["groupVersion"] == "events.k8s.io/v1" and events["resources"][0]["name"] == "events"
    for path in ("/healthz", "/readyz", "/livez"):
        assert kubeapi_http.get(path).text == "ok"


# --- authentication and authorization -----------------------------------------------------------

BRIDGE_USER = "system:serviceaccount:slurm:slurm-k8s-bridge"


def auth_file(tmp_path: Path) -> Path:
    """A bridge user from a Role manifest, a scheduler with one inline rule, and an admin."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "slurm-k8s-bridge", "namespace": "slurm"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["slurm-conf"]},
        ],
    }
    (tmp_path / "role.yaml").write_text(yaml.safe_dump(role))
    auth = {
        "users": [
            {"name": BRIDGE_USER, "token": "bridge-token", "roles": [{"file": "role.yaml"}]},
            {
                "name": "scheduler",
                "token": "scheduler-token",
                "rules": [{"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]}],
            },
            {"name": "root", "token": "root-token", "admin": True},
        ]
    }
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump(auth))
    return tmp_path / "auth.yaml"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[KubeApiServer]:
    with KubeApiServer(auth=auth_file(tmp_path)) as server:
        admin = Client(KubeConfig.from_dict(server.kubeconfig("root-token")), trust_env=False)
        admin.create(Namespace(metadata=ObjectMeta(name="slurm")))
        yield server


def client_for(server: KubeApiServer, token: str) -> Client:
    return Client(KubeConfig.from_dict(server.kubeconfig(token, namespace="slurm")), trust_env=False)


def test_rules_from_a_role_manifest_allow_exactly_what_they_say(secured: KubeApiServer) -> None:
    bridge = client_for(secured, "bridge-token")
    assert list(bridge.list(Pod)) == []
    status = api_error(bridge.create, make_pod("p"))
    assert (status.code, status.reason) == (403, "Forbidden")
    assert status.message == (
        f'pods is forbidden: User "{BRIDGE_USER}" cannot create resource "pods" '
        'in API group "" in the namespace "slurm"'
    )
    elsewhere = api_error(bridge.get, Pod, "p", namespace="default")
    assert elsewhere.message == (
        f'pods "p" is forbidden: User "{BRIDGE_USER}" cannot get resource "pods" '
        'in API group "" in the namespace "default"'
    )
    cluster = api_error(lambda: list(bridge.list(Node)))
    assert cluster.message.endswith('cannot list resource "nodes" in API group "" at the cluster scope')
    assert api_error(bridge.get, ConfigMap, "other").code == 403  # resourceNames limit it to slurm-conf
    assert api_error(bridge.get, ConfigMap, "slurm-conf").code == 404  # allowed, just absent


def test_subresources_need_their_own_rule(secured: KubeApiServer) -> None:
    admin = client_for(secured, "root-token")
    admin.create(make_pod("p"))
    scheduler = client_for(secured, "scheduler-token")
    with httpx2.Client(base_url=secured.url, headers={"Authorization": "Bearer scheduler-token"}) as http:
        assert bind(http, "p", "n1", namespace="slurm").status_code == 201
    status = api_error(scheduler.patch, PodStatus, "p", {"status": {"phase": "Running"}})
    assert status.message.startswith('pods "p" is forbidden: User "scheduler" cannot patch resource "pods/status"')
    client_for(secured, "bridge-token").patch(PodStatus, "p", {"status": {"phase": "Running"}})


def test_unknown_tokens_are_401(secured: KubeApiServer) -> None:
    status = api_error(lambda: list(client_for(secured, "wrong").list(Pod)))
    assert (status.code, status.reason, status.message) == (401, "Unauthorized", "Unauthorized")


def test_no_credentials_is_system_anonymous_and_403_forbidden(secured: KubeApiServer) -> None:
    # --anonymous-auth is on by default: no token is a user, system:anonymous, that RBAC refuses.
    with httpx2.Client(base_url=secured.url) as http:
        response = http.get("/api/v1/namespaces/slurm/pods")
        assert response.status_code == 403
        assert response.json()["message"] == (
            'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" '
            'in the namespace "slurm"')
        assert http.get("/apis").status_code == 403  # discovery is for system:authenticated only
        assert http.get("/healthz").text == "ok"  # system:public-info-viewer: health and version


def test_the_repositorys_rbac_manifests_can_be_loaded_with_their_bindings(tmp_path: Path) -> None:
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bridge", "namespace": "slurm"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "node-reader"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "bridge-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "bridge", "namespace": "slurm"}],
        },
    ]
    (tmp_path / "rbac.yaml").write_text(yaml.safe_dump_all(manifests))
    auth = {"users": [{"name": "system:serviceaccount:slurm:bridge", "token": "t"}], "rbac": ["rbac.yaml"]}
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump(auth))
    with KubeApiServer(auth=tmp_path / "auth.yaml") as server:
        client = client_for(server, "t")
        assert list(client.list(Node)) == []
        assert api_error(lambda: list(client.list(Pod))).code == 403


def test_access_reviews_answer_what_the_authorizer_would(secured: KubeApiServer) -> None:
    from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
    from lightkube.resources.authorization_v1 import SelfSubjectAccessReview

    bridge = client_for(secured, "bridge-token")

    def can(verb: str, resource: str) -> bool:
        attributes = ResourceAttributes(verb=verb, resource=resource, namespace="slurm")
        review = bridge.create(SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(resourceAttributes=attributes)))
        return bool(review.status.allowed)

    assert can("delete", "pods") and not can("create", "pods")


def test_admins_can_impersonate_and_others_cannot(secured: KubeApiServer) -> None:
    as_bridge = {"Authorization": "Bearer root-token", "Impersonate-User": BRIDGE_USER}
    with httpx2.Client(base_url=secured.url, headers=as_bridge) as http:
        assert http.get("/api/v1/namespaces/slurm/pods").status_code == 200
        refused = http.post("/api/v1/namespaces/slurm/pods", json=pod_body("p"))
        assert refused.status_code == 403 and f'User "{BRIDGE_USER}" cannot create' in refused.json()["message"]
    as_root = {"Authorization": "Bearer bridge-token", "Impersonate-User": "root"}
    with httpx2.Client(base_url=secured.url, headers=as_root) as http:
        response = http.get("/api/v1/namespaces/slurm/pods")
        assert response.status_code == 403
        assert response.json()["message"] == (
            f'users "root" is forbidden: User "{BRIDGE_USER}" cannot impersonate resource "users" '
            'in API group "" at the cluster scope'
        )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_auth_can_i_as_the_bridge(tmp_path: Path) -> None:
    # kubectl sends bearer tokens only over TLS, as it does to a real cluster.
    pytest.importorskip("cryptography", reason="TLS certificates need the cryptography package")
    with KubeApiServer(auth=auth_file(tmp_path), tls=True) as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig", "root-token", namespace="slurm")

        def can_i(*args: str) -> str:
            command = ["kubectl", "--kubeconfig", str(path), "auth", "can-i", *args, "--as", BRIDGE_USER]
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()

        assert (can_i("list", "pods"), can_i("create", "pods"), can_i("patch", "pods", "--subresource=status")) == (
            "yes",
            "no",
            "yes",
        )


@pytest.mark.skipif(not (REPO / "rbac" / "role.yaml").exists(), reason="the repository has no rbac/ manifests yet")
def test_the_repositorys_own_rbac_directory_works_as_an_auth_source(tmp_path: Path) -> None:
    auth = {
        "users": [{"name": "system:serviceaccount:slurm:slurm-k8s-bridge", "token": "t"}],
        "rbac": [str(REPO / "rbac")],
    }
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump(auth))
    with KubeApiServer(auth=tmp_path / "auth.yaml") as server:
        with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}) as admin:
            admin.post("/api/v1/namespaces", json={"metadata": {"name": "slurm"}})
        bridge = client_for(server, "t")
        bridge.create(make_pod("slurmd-1"))
        assert [p.metadata.name for p in bridge.list(Pod)] == ["slurmd-1"]
        assert api_error(bridge.get, Secret, "munge-key").code == 403


# --- fault injection and audit ------------------------------------------------------------------


def test_an_injected_429_carries_retry_after_and_is_spent_after_count(
    kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    rule = {
        "verb": "create",
        "resource": "pods",
        "namespace": "default",
        "name": "slurmd-.*",
        "code": 429,
        "retry_after": 2,
        "count": 1,
    }
    added = kubeapi_http.post("/_testenv/faults", json=rule)
    assert added.status_code == 201
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("slurmd-1"))
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 2},
        "code": 429,
    }
    assert kubeapi_client.create(make_pod("slurmd-1")).metadata.name == "slurmd-1"
    assert kubeapi_http.get("/_testenv/faults").json() == {"items": []}


def test_a_webhook_like_refusal_matches_on_labels_until_cleared(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_server.add_fault(
        verb="create",
        resource="pods",
        labels={"nodeset": "gpu"},
        code=400,
        message='admission webhook "deny.example.com" denied the request: no GPUs today',
    )
    kubeapi_client.create(make_pod("cpu", labels={"nodeset": "cpu"}))
    for _ in range(2):
        status = api_error(kubeapi_client.create, make_pod("gpu", labels={"nodeset": "gpu"}))
        assert (status.code, status.message) == (
            400,
            'admission webhook "deny.example.com" denied the request: no GPUs today',
        )
    kubeapi_http.delete("/_testenv/faults")
    kubeapi_client.create(make_pod("gpu", labels={"nodeset": "gpu"}))


def test_a_fault_can_delay_a_request(kubeapi_server: KubeApiServer, kubeapi_client: Client) -> None:
    kubeapi_server.add_fault(verb="list", resource="pods", delay_seconds=0.3, count=1)
    started = time.monotonic()
    assert list(kubeapi_client.list(Pod)) == []
    assert time.monotonic() - started >= 0.3


def test_fault_rules_are_checked_and_admin_only(secured: KubeApiServer) -> None:
    with pytest.raises(FaultRuleError):
        secured.add_fault(code=429, colour="red")
    with httpx2.Client(base_url=secured.url, headers={"Authorization": "Bearer bridge-token"}) as http:
        assert http.post("/_testenv/faults", json={"code": 503}).status_code == 403
        assert http.get("/_testenv/audit").status_code == 403


def test_the_audit_log_shows_which_verbs_a_user_needed(secured: KubeApiServer) -> None:
    bridge = client_for(secured, "bridge-token")
    list(bridge.list(Pod))
    api_error(bridge.create, make_pod("p"))
    assert secured.audit.permissions(BRIDGE_USER) == {("", "pods", "list"), ("", "pods", "create")}
    with httpx2.Client(base_url=secured.url, headers={"Authorization": "Bearer root-token"}) as http:
        entries = http.get("/_testenv/audit", params={"user": BRIDGE_USER}).json()["items"]
    assert [(a["verb"], a["resource"], a["namespace"], a["code"]) for a in entries] == [
        ("list", "pods", "slurm", 200),
        ("create", "pods", "slurm", 403),
    ]


# --- running it ---------------------------------------------------------------------------------


def test_reset_starts_over_with_a_fresh_cluster(kubeapi_server: KubeApiServer, kubeapi_client: Client) -> None:
    kubeapi_client.create(make_pod("p"))
    kubeapi_server.add_fault(verb="list", code=503)
    kubeapi_server.reset()
    assert list(kubeapi_client.list(Pod)) == []  # the fault went with the rest
    assert {n.metadata.name for n in kubeapi_client.list(Namespace)} == {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
    }


def test_it_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(NotLoopbackError):
        KubeApiServer("0.0.0.0")


def test_tls_with_the_ca_in_the_kubeconfig(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="TLS certificates need the cryptography package")
    with KubeApiServer(tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        client = Client(KubeConfig.from_file(path), trust_env=False)
        assert {n.metadata.name for n in client.list(Namespace)} >= {"default"}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_it_runs_as_a_process_and_stops_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "testenv.kubeapi", "--host", "127.0.0.1", "--port", "0", "--state-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        url = (tmp_path / "url").read_text().strip()
        assert line == f"kubeapi listening on {url}" and url.startswith("http://127.0.0.1:")
        client = Client(KubeConfig.from_file(tmp_path / "kubeconfig-admin.yaml"), trust_env=False)
        client.create(make_pod("p"))
        process.send_signal(stop)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_a_bad_auth_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testenv.kubeapi.__main__ import main

    (tmp_path / "auth.yaml").write_text("users: [{token: t}]")
    assert main(["--state-dir", str(tmp_path), "--auth-file", str(tmp_path / "auth.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kubeapi: error: ") and "users[0]" in err and err.count("\n") == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_can_get_pods(kubeapi_server: KubeApiServer, kubeapi_client: Client, tmp_path: Path) -> None:
    kubeapi_client.create(make_pod("slurmd-1"))
    path = kubeapi_server.write_kubeconfig(tmp_path / "kubeconfig")
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(path), "get", "pods", "-o", "wide"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:4] == ["slurmd-1", "0/1", "Pending", "0"]


def test_tables_for_clients_that_ask_for_them(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p", node="n1"))
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    table = kubeapi_http.get("/api/v1/namespaces/default/pods", headers=accept).json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["p", "0/1", "Pending", 0]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    with kubeapi_http.stream(
        "GET", "/api/v1/namespaces/default/pods", params={"watch": "true"}, headers=accept
    ) as watch:
        event = json.loads(next(watch.iter_lines()))  # kubectl get -w: one-row tables
    assert (event["type"], event["object"]["kind"], event["object"]["rows"][0]["cells"][0]) == ("ADDED", "Table", "p")


# --- kube-apiserver 1.36 where the stand-in used to answer otherwise (issue 11, item 6) -----------


@pytest.mark.parametrize("path", [
    "/apis/scheduling.volcano.sh/v1beta1/namespaces/default/podgroups",  # the CRD is not installed
    "/apis/scheduling.volcano.sh/v1beta1",
    "/apis/apps/v9/namespaces/default/deployments",  # a version not served
    "/not-an-api",
])
def test_a_group_or_version_not_served_is_a_plain_text_404(kubeapi_http: httpx2.Client, path: str) -> None:
    response = kubeapi_http.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text == "404 page not found\n"


def test_an_unknown_resource_of_a_served_version_is_still_a_status_404(kubeapi_http: httpx2.Client) -> None:
    response = kubeapi_http.get("/api/v1/namespaces/default/notathings")
    assert response.status_code == 404
    assert response.json()["message"] == "the server could not find the requested resource"


ENV_NAME_RULE = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
                 "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used "
                 "for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")


@pytest.mark.parametrize("name, messages", [
    ("A=B", [ENV_NAME_RULE]),
    ("1FOO", [ENV_NAME_RULE]),
    ("MY VAR", [ENV_NAME_RULE]),
    ("DÉJÀ", [ENV_NAME_RULE]),
    ("..X", ["must not start with '..'"]),
    ("..=X", [ENV_NAME_RULE, "must not start with '..'"]),
])
def test_an_env_var_name_the_1_31_server_refuses_is_422(kubeapi_http: httpx2.Client, name: str, messages: list) -> None:
    """v1.31 (what discovery says): RelaxedEnvironmentVariableValidation is alpha and off, so
    names must look like C identifiers with '-' and '.'; a site on 1.27-1.31 gets these 422s."""
    body = pod_body("p", containers=[{"name": "c", "image": "i", "env": [{"name": name, "value": "1"}]}])
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422
    value = json.dumps(name, ensure_ascii=False)
    shown = [f"spec.containers[0].env[0].name: Invalid value: {value}: {m}" for m in messages]
    assert response.json()["message"] == f'Pod "p" is invalid: ' + (shown[0] if len(shown) == 1 else f"[{', '.join(shown)}]")


def test_env_var_names_with_dots_and_dashes_are_accepted(kubeapi_http: httpx2.Client) -> None:
    body = pod_body("p", containers=[{"name": "c", "image": "i", "env": [{"name": "my-var.1_X", "value": "1"}]}])
    assert kubeapi_http.post("/api/v1/namespaces/default/pods", json=body).status_code == 201


@pytest.mark.parametrize("spec, message", [
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedul"}]},
     'spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: "DoNotSchedul": supported values: '
     '"DoNotSchedule", "ScheduleAnyway"'),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "DoNotSchedule"}]},
     "spec.topologySpreadConstraints[0].topologyKey: Required value: can not be empty"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
                                    {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]},
     'spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: "{zone, ScheduleAnyway}"'),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                                     "minDomains": 2}]},
     "spec.topologySpreadConstraints[0].minDomains: Invalid value: 2: can only use minDomains if "
     "whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                     "nodeTaintsPolicy": "honor"}]},
     'spec.topologySpreadConstraints[0].nodeTaintsPolicy: Unsupported value: "honor": supported values: "Honor", "Ignore"'),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchLabels": {"app": "x"}}, "matchLabelKeys": ["app"]}]},
     'spec.topologySpreadConstraints[0].matchLabelKeys[0]: Invalid value: "app": exists in both matchLabelKeys and '
     "labelSelector"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]},
     "spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values: Required value: must be specified "
     "when `operator` is 'In' or 'NotIn'"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: "
     "must have at least one node selector term"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gpu", "operator": "in", "values": ["h100"]}]}]}}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
     'matchExpressions[0].operator: Invalid value: "in": not a valid selector operator'),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8", "16"]}]}]}}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
     "matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
    ({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 200, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}},
     "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 200: "
     "must be in the range 1-100"),
    ({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "slurmd"}}, "topologyKey": "kubernetes.io/host name"}]}}},
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "
     "\"kubernetes.io/host name\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
     "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
     "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    # Pod terms' label keys, checked on the selector the create merged them into (the pod has team=a).
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "matchLabelKeys": ["team"]}]}}},
     "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys: Forbidden: must not "
     "be specified when labelSelector is not set"),
    ({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
        "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {}, "mismatchLabelKeys": ["bad key"]}}]}}},
     "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm"
     '.mismatchLabelKeys[0]: Invalid value: "bad key": name part must consist of alphanumeric characters, \'-\', '
     "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
     "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "labelSelector": {"matchLabels": {"team": "b"}}, "matchLabelKeys": ["x", "team"]}]}}},
     "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0][1]: Invalid value: \"team\": "
     "exists in both matchLabelKeys and labelSelector"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "labelSelector": {}, "matchLabelKeys": ["team"], "mismatchLabelKeys": ["team"]}]}}},
     "[spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0][0]: Invalid value: \"team\": "
     "exists in both matchLabelKeys and labelSelector, spec.affinity.podAffinity.requiredDuringSchedulingIgnored"
     "DuringExecution[0].matchLabelKeys[0]: Invalid value: \"team\": exists in both matchLabelKeys and "
     "mismatchLabelKeys]"),
], ids=["when-unsatisfiable", "topology-key", "duplicate-pair", "min-domains", "taints-policy", "match-label-keys",
        "selector-values", "no-terms", "node-operator", "gt-values", "weight", "pod-topology-key",
        "label-keys-no-selector", "label-key-name", "label-key-in-selector", "label-key-in-both"])
def test_placement_the_real_server_refuses_is_422(kubeapi_http: httpx2.Client, spec: dict, message: str) -> None:
    """A nodeset's topology_spread or affinity that kube-apiserver refuses: every resume of it
    would fail, so the stand-in refuses it too, with the same message."""
    body = pod_body("p", **spec)
    body["metadata"]["labels"] = {"team": "a"}
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == f'Pod "p" is invalid: {message}'


def test_placement_the_bridge_renders_is_accepted(kubeapi_http: httpx2.Client) -> None:
    spec = {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                                           "nodeAffinityPolicy": "Honor",
                                           "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "slurmd"}},
                                           "matchLabelKeys": ["slurm-k8s-bridge/job"]}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]},
                                      {"key": "cores", "operator": "Gt", "values": ["8"]}],
                 "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["worker-9"]}]}]}},
                         "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                                 "labelSelector": {"matchExpressions": [
                                                                     {"key": "app", "operator": "Exists"}]}}}]}}}
    assert kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("p", **spec)).status_code == 201


def test_pod_affinity_label_keys_become_the_pods_own_values_in_its_selector(kubeapi_http: httpx2.Client) -> None:
    """As 1.31's create strategy: `key In/NotIn [the pod's value]` appended for each key the pod
    has (a key it lacks adds nothing, so naming it in the selector too is no error); the keys
    stay. So pods of one job meet in one zone with a single term written for every job."""
    term = {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "slurmd", "gone": "x"}},
            "matchLabelKeys": ["slurm-k8s-bridge/job-id", "gone"], "mismatchLabelKeys": ["team"]}
    body = pod_body("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]},
                                   "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                                       {"weight": 1, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {}}}]}})
    body["metadata"]["labels"] = {"app": "slurmd", "slurm-k8s-bridge/job-id": "42", "team": "a"}
    created = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert created.status_code == 201, created.text
    stored = kubeapi_http.get("/api/v1/namespaces/default/pods/p").json()["spec"]["affinity"]
    required = stored["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert required["labelSelector"] == {"matchLabels": {"app": "slurmd", "gone": "x"}, "matchExpressions": [
        {"key": "slurm-k8s-bridge/job-id", "operator": "In", "values": ["42"]},
        {"key": "team", "operator": "NotIn", "values": ["a"]}]}
    assert (required["matchLabelKeys"], required["mismatchLabelKeys"]) == (["slurm-k8s-bridge/job-id", "gone"], ["team"])
    # A term with no keys is stored as sent.
    preferred = stored["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert preferred["labelSelector"] == {}


def test_a_topology_spread_max_skew_of_0_is_422(kubeapi_http: httpx2.Client) -> None:
    spread = {"maxSkew": 0, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    body = pod_body("p", topologySpreadConstraints=[spread])
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422
    assert response.json()["message"] == (
        'Pod "p" is invalid: spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero')


def test_a_binding_for_an_earlier_pod_of_the_same_name_is_409(kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    old_uid = kubeapi_client.create(make_pod("p")).metadata.uid
    kubeapi_client.delete(Pod, "p")
    new_uid = kubeapi_client.create(make_pod("p")).metadata.uid
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "uid": old_uid},
            "target": {"kind": "Node", "name": "n1"}}
    response = kubeapi_http.post("/api/v1/namespaces/default/pods/p/binding", json=body)
    assert (response.status_code, response.json()["reason"]) == (409, "Conflict")
    assert response.json()["message"].startswith('Operation cannot be fulfilled on pods/binding "p": StorageError: ')
    assert response.json()["message"].endswith(
        f"Precondition failed: UID in precondition: {old_uid}, UID in object meta: {new_uid}")
    assert kubeapi_client.get(Pod, "p").spec.nodeName is None
    body["metadata"]["uid"] = new_uid
    assert kubeapi_http.post("/api/v1/namespaces/default/pods/p/binding", json=body).status_code == 201


def test_each_resource_keeps_its_own_watch_window(kubeapi_http: httpx2.Client) -> None:
    # The watch cache is per resource: a burst of ConfigMaps does not expire a watch on pods.
    with KubeApiServer(history_limit=3, history_fresh=0) as server:
        client = Client(KubeConfig.from_dict(server.kubeconfig()), trust_env=False)
        start = client.create(make_pod("p0")).metadata.resourceVersion
        client.create(make_pod("p1"))
        for i in range(10):
            client.create(ConfigMap(metadata=ObjectMeta(name=f"c{i}"), data={}))
        with httpx2.Client(base_url=server.url) as http:
            events = watch_lines(http, "/api/v1/namespaces/default/pods", 1, resourceVersion=start)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "p1")]


def test_a_watch_from_before_the_window_is_expired_by_default() -> None:
    # Past the window's lower bound (100 changes), changes older than its fresh duration go.
    with KubeApiServer(history_fresh=0) as server:
        client = Client(KubeConfig.from_dict(server.kubeconfig()), trust_env=False)
        old = client.create(make_pod("p")).metadata.resourceVersion
        for i in range(101):  # the window keeps 100: the creation and the first patch leave it
            client.patch(Pod, "p", {"metadata": {"labels": {"n": str(i)}}})
        with httpx2.Client(base_url=server.url) as http:
            events = watch_lines(http, "/api/v1/namespaces/default/pods", resourceVersion=old)
    assert [(e["type"], e["object"]["reason"], e["object"]["code"]) for e in events] == [("ERROR", "Expired", 410)]
    assert events[0]["object"]["message"] == f"too old resource version: {old} ({int(old) + 1})"


def test_deleting_a_bound_pod_with_grace_0_is_seen_marked_then_deleted(
    kubeapi_server: KubeApiServer, kubeapi_client: Client, kubeapi_http: httpx2.Client
) -> None:
    kubeapi_client.create(make_pod("p", node="n1"))
    watcher = Watcher(kubeapi_server, kubeapi_client, Pod, ("DELETED", "p"), namespace="default")
    reply = kubeapi_http.delete("/api/v1/namespaces/default/pods/p", params={"gracePeriodSeconds": "0"})
    assert reply.status_code == 200
    assert reply.json()["metadata"]["deletionTimestamp"] and reply.json()["metadata"]["deletionGracePeriodSeconds"] == 0
    assert watcher.wait() == [("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
    assert watcher.events[1][1].metadata.deletionTimestamp is not None


# --- API Priority and Fairness (issue 14) -----------------------------------------------------------


def _concurrently(server: KubeApiServer, token: str, count: int,
                  params: dict[str, str] | None = None) -> list[httpx2.Response]:
    def get(_: int) -> httpx2.Response:
        with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
            return http.get("/api/v1/namespaces/slurm/pods", params=params)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(get, range(count)))


def test_requests_beyond_the_seats_and_the_queue_get_a_plain_text_429_with_retry_after(tmp_path: Path) -> None:
    from testenv.kubeapi import FlowControl

    flow = FlowControl(seats=1, queue_length=2, queue_wait=5, request_latency=0.4)
    with KubeApiServer(auth=auth_file(tmp_path), flow_control=flow) as server:
        client_for(server, "root-token").create(Namespace(metadata=ObjectMeta(name="slurm")))
        answers = _concurrently(server, "bridge-token", 6)
        admin = _concurrently(server, "root-token", 6)
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert (len(served), len(refused)) == (3, 3)  # one seat, two waiting; the rest at once
    for answer in refused:
        assert answer.headers["Retry-After"] == "1"
        assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert answer.text == "Too many requests, please try again later.\n"
    assert all(a.status_code == 200 for a in admin)  # system:masters is exempt


def test_watches_are_admitted_by_flow_control_too(tmp_path: Path) -> None:
    # kube-apiserver's priority and fairness admits a watch like any request (it holds its seat
    # while the watch starts): a throttled watch gets the plain-text 429 too.
    from testenv.kubeapi import FlowControl

    flow = FlowControl(seats=1, queue_length=2, queue_wait=5, request_latency=0.4)
    with KubeApiServer(auth=auth_file(tmp_path), flow_control=flow) as server:
        client_for(server, "root-token").create(Namespace(metadata=ObjectMeta(name="slurm")))
        answers = _concurrently(server, "bridge-token", 6, params={"watch": "true", "timeoutSeconds": "1"})
    assert sorted(a.status_code for a in answers) == [200] * 3 + [429] * 3
    assert all(a.text == "Too many requests, please try again later.\n" for a in answers if a.status_code == 429)


def test_a_request_that_waits_past_the_queue_limit_is_429(tmp_path: Path) -> None:
    from testenv.kubeapi import FlowControl

    flow = FlowControl(seats=1, queue_length=10, queue_wait=0.2, request_latency=0.6)
    with KubeApiServer(auth=auth_file(tmp_path), flow_control=flow) as server:
        client_for(server, "root-token").create(Namespace(metadata=ObjectMeta(name="slurm")))
        codes = sorted(a.status_code for a in _concurrently(server, "bridge-token", 3))
    assert codes == [200, 429, 429]


def test_a_resource_no_crd_defines_in_a_crd_served_group_is_a_plain_text_404(
        kubeapi_http: httpx2.Client, podgroups: Any) -> None:
    # Volcano's group is served (its PodGroup CRD is installed) but not its queues: kube-apiserver's
    # apiextensions handler passes the request to NotFound, a plain-text 404, which the bridge
    # reads as "not served" (an API group that is not there), not as a missing object.
    response = kubeapi_http.get("/apis/scheduling.volcano.sh/v1beta1/namespaces/default/queues")
    assert response.status_code == 404
    assert response.text == "404 page not found\n"
    assert kubeapi_http.get("/apis/scheduling.volcano.sh/v1beta1/namespaces/default/podgroups").status_code == 200


def test_a_watch_from_resource_version_0_starts_from_the_current_state(
        kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    # "0" is "any version": the cache's current objects as ADDED events, not a replay of history.
    kubeapi_client.create(make_pod("p"))
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
    events = watch_lines(kubeapi_http, "/api/v1/namespaces/default/pods", resourceVersion="0", timeoutSeconds=1)
    assert [(e["type"], e["object"]["metadata"].get("labels")) for e in events] == [("ADDED", {"a": "b"})]


def test_an_object_that_stops_matching_a_watch_is_sent_deleted_as_it_last_matched(
        kubeapi_client: Client, kubeapi_http: httpx2.Client) -> None:
    kubeapi_client.create(make_pod("p", labels={"app": "x"}))
    rv = kubeapi_client.get(Pod, "p", namespace="default").metadata.resourceVersion
    kubeapi_client.patch(Pod, "p", {"metadata": {"labels": {"app": "y"}}}, namespace="default")
    events = watch_lines(kubeapi_http, "/api/v1/namespaces/default/pods", 1, resourceVersion=rv, labelSelector="app=x")
    assert events[0]["type"] == "DELETED" and events[0]["object"]["metadata"]["labels"] == {"app": "x"}
    # ... with the change's resourceVersion, so a watch resumed from it does not go back in time.
    now = kubeapi_client.get(Pod, "p", namespace="default").metadata.resourceVersion
    assert events[0]["object"]["metadata"]["resourceVersion"] == now


def test_a_create_that_carries_a_resource_version_is_the_storage_layers_plain_500(kubeapi_http: httpx2.Client) -> None:
    """etcd3's Create refuses a set resourceVersion with a plain error, which reaches the client as
    a 500 Status without reason or details (clients that recreate a fetched object see it);
    validation comes first, and a version that does not parse ("-1") or is 0 is let through."""
    url = "/api/v1/namespaces/default/pods"
    body = pod_body("p")
    body["metadata"]["resourceVersion"] = "5"
    response = kubeapi_http.post(url, json=body)
    assert response.status_code == 500
    assert response.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": "resourceVersion should not be set on objects to be created", "code": 500}
    invalid = pod_body("p", containers=[])
    invalid["metadata"]["resourceVersion"] = "5"
    assert kubeapi_http.post(url, json=invalid).status_code == 422
    for index, version in enumerate(("0", "-1")):
        body = pod_body(f"p{index}")
        body["metadata"]["resourceVersion"] = version
        created = kubeapi_http.post(url, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["metadata"]["resourceVersion"] not in ("0", "-1")


def test_a_number_in_a_selectors_match_labels_is_the_decoders_400_and_a_null_is_empty(kubeapi_http: httpx2.Client) -> None:
    """matchLabels is map[string]string: Go's decoder refuses a number (a YAML `gpus: 8` sent as
    is) before validation, and reads a null as "" (a valid label value)."""
    url = "/api/v1/namespaces/default/pods"
    spread = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
              "labelSelector": {"matchLabels": {"gpus": 8}}}
    response = kubeapi_http.post(url, json=pod_body("p", topologySpreadConstraints=[spread]))
    assert response.status_code == 400
    assert response.json()["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field '
        "LabelSelector.spec.topologySpreadConstraints.labelSelector.matchLabels of type string")
    spread["labelSelector"] = {"matchLabels": {"gpus": None},
                               "matchExpressions": [{"key": "tier", "operator": "In", "values": [None]}]}
    created = kubeapi_http.post(url, json=pod_body("p", topologySpreadConstraints=[spread], nodeSelector={"n": None}))
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert spec["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {"gpus": ""}, "matchExpressions": [{"key": "tier", "operator": "In", "values": [""]}]}
    assert spec["nodeSelector"] == {"n": ""}


def test_placement_errors_come_in_validate_pod_specs_order(kubeapi_http: httpx2.Client) -> None:
    """Affinity before topologySpreadConstraints before tolerations, as ValidatePodSpec runs them."""
    spec = {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}],
            "topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                                                                 "values": ["b"]}]}}]}}}
    response = kubeapi_http.post("/api/v1/namespaces/default/pods", json=pod_body("p", **spec))
    assert response.status_code == 422
    fields = [cause["field"] for cause in response.json()["details"]["causes"]]
    assert fields == ["spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
                      ".matchExpressions[0].values", "spec.topologySpreadConstraints[0].maxSkew",
                      "spec.tolerations[0].operator"]
