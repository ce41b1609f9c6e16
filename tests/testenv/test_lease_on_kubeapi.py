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
