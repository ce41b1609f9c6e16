"""The daemon's Prometheus metrics, served on ``daemon.metrics_address`` (127.0.0.1 by default).

Only :mod:`bridge.daemon` imports this module: prometheus-client has no place on a hook's
start-up path. Resumes, suspends and resume times are what the daemon sees Slurm do between two
looks (a look at every pod change, and every ``daemon.tick`` seconds): counts are exact as long
as a node does not pass a whole state within one tick, times are as fine as the looks.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "slurm_k8s_bridge"


class Metrics:
    """One registry per daemon (tests read it with :meth:`value`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.actions = Counter(f"{PREFIX}_reconcile_actions", "Reconciler actions, by action and rule.",
                               ["action", "rule", "dry_run"], registry=r)
        self.resumes = Counter(f"{PREFIX}_resumes", "Nodes seen starting to power up, by nodeset.",
                               ["nodeset"], registry=r)
        self.suspends = Counter(f"{PREFIX}_suspends", "Nodes seen powering down after being up, by nodeset.",
                                ["nodeset"], registry=r)
        self.failures = Counter(f"{PREFIX}_failures", "Nodes released by the daemon or set DOWN by the bridge, "
                                "by nodeset and cause.", ["nodeset", "cause"], registry=r)
        self.resume_seconds = Histogram(f"{PREFIX}_resume_seconds", "Powering up seen → node registered.",
                                        ["nodeset"], registry=r,
                                        buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
        self.nodes = Gauge(f"{PREFIX}_nodes", "Elastic Slurm nodes by nodeset and state.",
                           ["nodeset", "state"], registry=r)
        self.pods = Gauge(f"{PREFIX}_pods", "The bridge's pods by nodeset and phase.", ["nodeset", "phase"], registry=r)
        self.jobs_starting = Gauge(f"{PREFIX}_jobs_starting", "Jobs whose nodes are powering up (followed "
                                   "by the daemon with daemon.follow, else by the hooks' followers).", registry=r)
        self.breaker_open = Gauge(f"{PREFIX}_capacity_breaker_open", "1 while a nodeset's capacity breaker "
                                  "keeps Slurm off its powered-down nodes.", ["nodeset"], registry=r)
        # Warm-pool metrics are by pool: label "nodeset" is the pool's nodeset, or the warm.pool name
        # the nodesets sharing it give.
        self.warm_target = Gauge(f"{PREFIX}_warm_pool_target_nodes", "Idle powered-up nodes the warm pool "
                                 "aims at, by pool.", ["nodeset"], registry=r)
        self.warm_idle = Gauge(f"{PREFIX}_warm_pool_idle_nodes", "Idle powered-up usable nodes, by pool.",
                               ["nodeset"], registry=r)
        self.warm_idle_hours = Gauge(f"{PREFIX}_warm_pool_idle_pod_hours_last_day", "Idle pod-hours of the "
                                     "pool's nodes over the last 24 hours (what warm.idle_hours_per_day caps).",
                                     ["nodeset"], registry=r)
        self.warm_power_ups = Counter(f"{PREFIX}_warm_pool_power_ups", "Nodes the warm pool powered up.",
                                      ["nodeset"], registry=r)
        self.warm_power_downs = Counter(f"{PREFIX}_warm_pool_power_downs", "Idle nodes the warm pool "
                                        "powered down.", ["nodeset"], registry=r)
        self.api_errors = Counter(f"{PREFIX}_api_errors", "Failed calls, by API (kubernetes, slurm) and stage.",
                                  ["api", "stage"], registry=r)
        self.tick_seconds = Histogram(f"{PREFIX}_reconcile_seconds", "Duration of one look and its actions.",
                                      registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.heartbeat = Gauge(f"{PREFIX}_heartbeat_timestamp_seconds", "When the daemon last looked.", registry=r)

    def serve(self, address: str) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` in a background thread; the address bound."""
        host, _, port = address.rpartition(":")  # no host (":9834"): every address, as Go's servers read it
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)
        bound = server.server_address
        return str(bound[0]), int(bound[1])

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 if absent), for tests."""
        got = self.registry.get_sample_value(name, labels)
        return got or 0.0

    def set_gauge(self, gauge: Any, counts: dict[tuple[str, ...], int]) -> None:
        """Replace all of a labelled gauge's series with ``counts`` (a state that emptied drops out)."""
        gauge.clear()
        for labels, count in counts.items():
            gauge.labels(*labels).set(count)
