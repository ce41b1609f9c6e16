"""bridge/lease.py against the API stand-in, through the bridge's own client (bridge/kube.py):
the Leases the elector writes pass ValidateLeaseSpec, two replicas racing get one 409, and the
hook's one GET reads what the holder wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge import kube as kube_module
from bridge import lease
from bridge.errors import Conflict
from testenv.kubeapi import KubeApiServer

NAME = lease.lease_name("testenv")


def _client(server: KubeApiServer, tmp_path: Path) -> kube_module.LightkubeApi:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(server.kubeconfig()))
    return kube_module.LightkubeApi(kube_module.KubernetesSettings(kubeconfig=str(path), namespace="default",
                                                                   retry_seconds=1))


def test_two_replicas_on_the_stand_in_one_leads_and_the_hook_sees_it(kubeapi_server, tmp_path):
    with _client(kubeapi_server, tmp_path) as one, _client(kubeapi_server, tmp_path) as two:
        a = lease.Elector(one, name=NAME, namespace="default", identity="daemon-a", duration=15, follows=True)
        b = lease.Elector(two, name=NAME, namespace="default", identity="daemon-b", duration=15, follows=True)
        assert a.leads() and not b.leads()
        assert a.step()  # a renewal: get, then update with the resourceVersion read
        stored = one.get_lease(NAME)
        assert stored["spec"]["holderIdentity"] == "daemon-a" and stored["spec"]["leaseTransitions"] == 0
        assert lease.hand_over(two, NAME)
        # b replaces with a resourceVersion a has since renewed past: the server's 409.
        stale = dict(stored, spec={**stored["spec"], "holderIdentity": "daemon-b"})
        assert a.step()
        with pytest.raises(Conflict):
            two.replace_lease(stale)
        a.release()
        assert not lease.hand_over(two, NAME)
        assert b.leads()
        assert one.get_lease(NAME)["spec"]["leaseTransitions"] == 1


def test_a_lease_deleted_between_the_get_and_the_renewal_is_a_409_and_the_replica_stands_by(
        kubeapi_server, kubeapi_client, tmp_path):
    # kube-apiserver creates a Lease on a PUT (AllowCreateOnUpdate), but the renewal carries the
    # UID it read: a precondition the missing object fails, a 409 like any lost race.
    with _client(kubeapi_server, tmp_path) as one:
        a = lease.Elector(one, name=NAME, namespace="default", identity="daemon-a", duration=15, follows=True)
        assert a.leads()
        stored = one.get_lease(NAME)
        kubeapi_client.delete(_lease_type(), NAME, namespace="default")
        with pytest.raises(Conflict):
            one.replace_lease(stored)
        assert not a._take(stored, create=False) and not a.leader
        assert a.step()  # the next look creates it again
        assert one.get_lease(NAME)["spec"]["holderIdentity"] == "daemon-a"


def test_a_lease_put_without_a_resource_version_is_422(kubeapi_http):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    url = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert kubeapi_http.post(url, json=body).status_code == 201
    response = kubeapi_http.put(f"{url}/l", json=body)
    assert response.status_code == 422
    assert response.json()["message"] == ('leases.coordination.k8s.io "l" is invalid: metadata.resourceVersion: '
                                          "Invalid value: 0x0: must be specified for an update")
    # A PUT of a Lease that is not there, with no UID: created (201).
    created = kubeapi_http.put(f"{url}/m", json={**body, "metadata": {"name": "m"}})
    assert created.status_code == 201 and created.json()["metadata"]["uid"]
    # With a UID (a renewal of the Lease it read), a precondition the missing object fails.
    gone = kubeapi_http.put(f"{url}/n", json={**body, "metadata": {"name": "n", "uid": "u-1"}})
    assert gone.status_code == 409
    assert gone.json()["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "n": StorageError: invalid object, Code: 4, '
        "Key: /registry/leases/default/n, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: "
        "UID in precondition: u-1, UID in object meta: ")


def _lease_type():
    from lightkube.resources.coordination_v1 import Lease

    return Lease


@pytest.mark.parametrize("renew_time, code, why", [
    ("2026-12-07T10:00:00.123456Z", 201, None),
    # isoformat() at a whole second: no fraction, where a MicroTime needs six digits
    ("2026-12-07T10:00:00Z", 400, 'cannot parse "Z" as ".000000"'),
    ("2026-12-07T10:00:00.123Z", 400, 'cannot parse ".123Z" as ".000000"'),
    ("2026-12-07T10:00:00.1234567Z", 400, 'cannot parse "7Z" as "Z07:00"'),
    ("garbage", 400, 'cannot parse "garbage" as "2006"'),
])
def test_a_lease_time_is_a_micro_time_of_exactly_six_fractional_digits(kubeapi_http, renew_time, code, why):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "t"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": renew_time}}
    response = kubeapi_http.post("/apis/coordination.k8s.io/v1/namespaces/default/leases", json=body)
    assert response.status_code == code, response.text
    if why:  # Go's time.ParseError
        assert f'parsing time "{renew_time}" as "2006-01-02T15:04:05.000000Z07:00": {why}' in response.json()["message"]
