"""The daemon's Lease (coordination.k8s.io/v1): who leads among its replicas, and what the hooks
read of a daemon that runs in the cluster (``daemon.in_cluster: true``).

A daemon in a Deployment shares no directory with the hooks on the slurmctld host, so its
heartbeat file (:mod:`bridge.heartbeat`) is invisible to them. It renews a Lease instead, the
way client-go's leader election does: get; create when missing; take it over only when its
holder has not renewed for ``leaseDurationSeconds`` as seen by this replica's own clock (no
trust in another host's clock); renew with the resourceVersion read, so of two replicas racing
one gets 409 Conflict and stands by. Only the holder acts.

The resume hook reads it with one GET (:func:`hand_over`): held, renewed within its
``leaseDurationSeconds`` of the hook's clock, and marked as following jobs.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from bridge import NAME
from bridge.errors import Conflict, KubernetesError

API_VERSION = "coordination.k8s.io/v1"
FOLLOWS = f"{NAME}/follows"
"""Annotation on the Lease: "true" when the holder follows resumed jobs (``daemon.follow``)."""


class LeaseClient(Protocol):
    """The three calls on one Lease (bridge.kube.LightkubeApi has them)."""

    def get_lease(self, name: str) -> dict[str, Any] | None:
        """The Lease, or None if there is none (404). Raises KubernetesError."""
        ...

    def create_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create it. Raises Conflict if it exists (another replica made it first)."""
        ...

    def replace_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """PUT it with the resourceVersion it carries. Raises Conflict if it changed since."""
        ...


def lease_name(cluster: str) -> str:
    """One Lease per Slurm cluster, in the bridge's namespace."""
    return f"{NAME}-{cluster}"


def micro_time(stamp: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def hand_over(client: LeaseClient, name: str, *, now: float | None = None) -> bool:
    """Whether the resume hook should leave following its jobs to the daemon in the cluster: its
    Lease is held, renewed within its own duration, and says it follows jobs. One GET; any
    error answers False (the hook starts its own follower, as without a daemon)."""
    try:
        lease = client.get_lease(name)
    except KubernetesError:
        return False
    if lease is None:
        return False
    spec = lease.get("spec") or {}
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds") or 0
    follows = ((lease.get("metadata") or {}).get("annotations") or {}).get(FOLLOWS) == "true"
    current = time.time() if now is None else now
    return bool(spec.get("holderIdentity")) and follows and renewed is not None and current - renewed < duration


class Elector:
    """One replica's side of the election; :meth:`step` at least every ``duration / 3`` s."""

    def __init__(self, client: LeaseClient, *, name: str, namespace: str, identity: str, duration: float,
                 follows: bool, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client, self.name, self._namespace, self.identity = client, name, namespace, identity
        self._duration = max(1, math.ceil(duration))
        self._follows = follows
        self._clock, self._monotonic = clock, monotonic
        self.leader = False
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0

    @property
    def renew_every(self) -> float:
        """Seconds between two steps: a third of the duration, as client-go's 15/10/2 s leave margin."""
        return self._duration / 3

    def leads(self) -> bool:
        """Whether this replica may act now: renews when a third of the duration has passed
        since the last renewal; a renewal that fails (API unreachable) keeps the lead only
        until two thirds of the duration have passed (client-go's renew deadline), so the lead
        is given up before another replica may take it."""
        now = self._monotonic()
        if self.leader and now - self._renewed_at < self.renew_every:
            return True
        try:
            self.step()
        except KubernetesError:
            if self.leader and now - self._renewed_at >= self._duration * 2 / 3:
                self.leader = False
            if not self.leader:
                raise
        return self.leader

    def still_leads(self) -> bool:
        """Whether this replica may still act on a look it has just made: as :meth:`leads`,
        which asks the API only when a third of the duration has passed since the last renewal.
        A look slowed down by a Slurm read that outlasted the Lease (slurmctld not answering for
        10 s a call) may find it renewed by another replica, which acts meanwhile."""
        return self.leads()

    def step(self) -> bool:
        """Acquire or renew; whether this replica leads now. KubernetesError other than a
        Conflict propagates (the caller keeps its last answer for up to the lease's duration)."""
        lease = self._client.get_lease(self.name)
        if lease is None:
            return self._take(self._manifest(None, holder=""), create=True)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(spec):
            self.leader = False
            return False
        return self._take(self._manifest(lease, holder=holder), create=False)

    def release(self) -> None:
        """On a clean stop: give the Lease up at once, so a standby takes over without waiting
        for it to expire and the hooks start their own followers (client-go's ReleaseOnCancel)."""
        if not self.leader:
            return
        self.leader = False
        try:
            lease = self._client.get_lease(self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = micro_time(self._clock())
            lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
            self._client.replace_lease(lease)
        except KubernetesError:
            pass  # it expires by itself

    def _expired(self, spec: dict[str, Any]) -> bool:
        """Expired as observed here: the record has not changed for a whole duration of this
        replica's clock (the holder's renewTime is another host's clock)."""
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        now = self._monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        return now - self._seen_at >= (spec.get("leaseDurationSeconds") or self._duration)

    def _manifest(self, lease: dict[str, Any] | None, *, holder: str) -> dict[str, Any]:
        now = micro_time(self._clock())
        existed = lease is not None
        lease = lease or {"apiVersion": API_VERSION, "kind": "Lease",
                          "metadata": {"name": self.name, "namespace": self._namespace}, "spec": {}}
        spec = lease.setdefault("spec", {})
        if holder != self.identity:  # taken over (from a holder or a release) counts, as in client-go
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + (1 if existed else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self._duration, renewTime=now)
        spec.setdefault("leaseTransitions", 0)
        meta = lease.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), FOLLOWS: "true" if self._follows else "false"}
        return lease

    def _take(self, manifest: dict[str, Any], *, create: bool) -> bool:
        try:
            (self._client.create_lease if create else self._client.replace_lease)(manifest)
        except Conflict:  # another replica created or renewed it first
            self.leader = False
            return False
        self.leader = True
        self._seen = None
        self._renewed_at = self._monotonic()
        return True
