"""bridge/lease.py: two daemon replicas never both lead; the resume hook hands over only to a
holder that renews and follows jobs. Clocks are injected: no real waiting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bridge import lease
from bridge.errors import Conflict, KubernetesUnavailable

NAME = "slurm-k8s-bridge-linux"


class FakeLeases:
    """One namespace's Leases as kube-apiserver keeps them: a resourceVersion per write, 409 on
    a create of an existing name or a replace with a stale resourceVersion."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False
        self.calls: list[str] = []

    def _check(self, verb: str) -> None:
        self.calls.append(verb)
        if self.down:
            raise KubernetesUnavailable("https://kube.test: connection refused")

    def get_lease(self, name: str) -> dict[str, Any] | None:
        self._check("get")
        return copy.deepcopy(self.leases.get(name))

    def create_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._check("create")
        name = manifest["metadata"]["name"]
        if name in self.leases:
            raise Conflict(f'leases.coordination.k8s.io "{name}" already exists', code=409)
        return self._store(manifest)

    def replace_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._check("update")
        name = manifest["metadata"]["name"]
        if manifest["metadata"].get("resourceVersion") != self.leases[name]["metadata"]["resourceVersion"]:
            raise Conflict(f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": '
                           "the object has been modified", code=409)
        return self._store(manifest)

    def _store(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(manifest)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def wall(self) -> float:
        return self.now

    def mono(self) -> float:
        return self.now - 1_700_000_000.0


@pytest.fixture
def api() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replica(api: FakeLeases, clock: Clock, identity: str, *, follows: bool = True) -> lease.Elector:
    return lease.Elector(api, name=NAME, namespace="slurm", identity=identity, duration=15, follows=follows,
                         clock=clock.wall, monotonic=clock.mono)


def test_the_first_replica_creates_the_lease_and_the_hook_hands_over(api, clock):
    a = replica(api, clock, "daemon-a")
    assert a.leads()
    spec = api.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "daemon-a" and spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert lease.hand_over(api, NAME, now=clock.now)


def test_a_second_replica_stands_by_while_the_holder_renews(api, clock):
    a, b = replica(api, clock, "daemon-a"), replica(api, clock, "daemon-b")
    assert a.leads()
    for _ in range(10):  # 50 s: a renews every 5 s, b never gets it
        clock.now += 5
        assert a.leads()
        assert not b.leads()
    assert api.leases[NAME]["spec"]["holderIdentity"] == "daemon-a"


def test_a_holder_that_stops_renewing_is_replaced_after_the_duration_of_the_standbys_clock(api, clock):
    a, b = replica(api, clock, "daemon-a"), replica(api, clock, "daemon-b")
    assert a.leads()
    assert not b.leads()  # b first sees the record now
    clock.now += 14
    assert not b.leads()
    assert not lease.hand_over(api, NAME, now=clock.now + 1.5)  # the hooks stop handing over first
    clock.now += 1
    assert b.leads()
    spec = api.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "daemon-b" and spec["leaseTransitions"] == 1
    # a comes back (it was paused): it sees b's fresh lease and stands by, never acts beside it.
    clock.now += 5
    assert not a.step()


def test_of_two_replicas_racing_for_an_expired_lease_one_wins(api, clock):
    a, b, c = (replica(api, clock, n) for n in ("daemon-a", "daemon-b", "daemon-c"))
    assert a.leads()
    b.step(), c.step()
    clock.now += 20  # a is gone; b and c both read the same resourceVersion
    read = api.get_lease(NAME)
    api.get_lease = lambda name: copy.deepcopy(read)  # both act on that read
    results = [b.step(), c.step()]
    assert results == [True, False]
    assert api.leases[NAME]["spec"]["holderIdentity"] == "daemon-b"


def test_a_look_that_outlasted_the_lease_finds_it_taken_and_may_not_act(api, clock):
    """A look stuck on a Slurm read past the Lease's duration: the standby took over meanwhile,
    and the replica that planned the look must not carry it out beside the new leader."""
    a, b = replica(api, clock, "daemon-a"), replica(api, clock, "daemon-b")
    assert a.leads()
    assert not b.leads()
    clock.now += 2
    assert a.still_leads()  # a short look: the lead holds
    clock.now += 20  # this look waits on slurmctld
    assert b.leads()
    assert not a.still_leads()
    assert not a.leader and api.leases[NAME]["spec"]["holderIdentity"] == "daemon-b"


def test_a_clean_stop_releases_at_once(api, clock):
    a, b = replica(api, clock, "daemon-a"), replica(api, clock, "daemon-b")
    assert a.leads()
    a.release()
    assert not lease.hand_over(api, NAME, now=clock.now)
    assert b.leads()  # no wait for the expiry


def test_an_unreachable_api_keeps_the_lead_only_until_the_renew_deadline(api, clock):
    a = replica(api, clock, "daemon-a")
    assert a.leads()
    api.down = True
    clock.now += 5
    assert a.leads()  # one failed renewal: still well within the lease
    clock.now += 5
    with pytest.raises(KubernetesUnavailable):
        a.leads()  # 10 s without renewing: gives up before another replica may take over (15 s)
    assert not a.leader


def test_the_hook_hands_over_only_to_a_fresh_holder_that_follows(api, clock):
    assert not lease.hand_over(api, NAME, now=clock.now)  # no Lease: no daemon
    quiet = replica(api, clock, "daemon-a", follows=False)
    assert quiet.leads()
    assert not lease.hand_over(api, NAME, now=clock.now)  # a daemon that does not follow jobs
    quiet.release()
    following = replica(api, clock, "daemon-b")
    assert following.leads()
    assert lease.hand_over(api, NAME, now=clock.now + 14.9)
    assert not lease.hand_over(api, NAME, now=clock.now + 15)
    api.down = True
    assert not lease.hand_over(api, NAME, now=clock.now)  # the API unreachable: the hook follows itself
    assert api.calls[-1] == "get"


def test_micro_time_round_trips():
    assert lease.micro_time(1_800_000_000.25) == "2027-01-15T08:00:00.250000Z"
    assert lease.parse_time(lease.micro_time(1_800_000_000.25)) == 1_800_000_000.25
    assert lease.parse_time("garbage") is None and lease.parse_time(None) is None


def test_the_daemon_says_when_it_leads_or_stands_by_once_per_change(api, clock):
    import structlog
    from structlog.testing import capture_logs

    from bridge.daemon import _leads
    from bridge.metrics import Metrics

    a, b = replica(api, clock, "daemon-a"), replica(api, clock, "daemon-b")
    log, metrics = structlog.get_logger(), Metrics()
    with capture_logs() as said:
        assert _leads(a, log, metrics, None)
        assert not _leads(b, log, metrics, None)
        clock.now += 5
        assert _leads(a, log, metrics, True) and not _leads(b, log, metrics, False)
        api.down = True
        clock.now += 10
        assert not _leads(a, log, metrics, True)  # cannot renew past the deadline: stops acting
    assert [(r["event"], r.get("identity")) for r in said] == [
        ("leading", "daemon-a"), ("standing by", "daemon-b"),
        ("cannot renew the lease", None), ("standing by", "daemon-a")]
