"""`KubeApiServer`: the stand-in as an object a test can start and stop.

The aiohttp application runs on its own event loop in a background
thread; `start()` returns once the socket listens. Faults and the audit
log are safe to use from the test's thread; anything touching objects
goes through the HTTP API, or through `call()` which runs on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aiohttp import web

from .app import AppState, build_app
from .audit import AuditLog
from .auth import ADMIN, AuthConfig, load_auth_file
from .cluster import Cluster, new_cluster
from .faults import FaultRule, Faults, rule_from_json
from .flowcontrol import FlowControl
from .handlers import ResourceHandler, WatchSettings
from .kubeconfig import kubeconfig, write_kubeconfig

if TYPE_CHECKING:
    from .tls import Certificates

T = TypeVar("T")


class NotLoopbackError(ValueError):
    """The stand-in has no real authentication: it must never listen beyond this machine."""


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise NotLoopbackError(f"refusing to listen on {host!r}: only loopback addresses are allowed")


def _certificates(host: str) -> Certificates:
    # Imported only when asked for: `cryptography` is needed for TLS alone.
    from .tls import make_certificates

    return make_certificates(host)


class KubeApiServer:
    """A Kubernetes API stand-in on 127.0.0.1.

    Args:
        host: a loopback address.
        port: 0 picks a free port.
        auth: an AuthConfig, a path to an auth file, or None (everyone is admin).
        admin_token: the token written to admin kubeconfigs (random if not given).
        tls: serve HTTPS with a throw-away CA (its PEM is `ca_pem`).
        watch_timeout: server-side end of watches that give no timeoutSeconds.
        bookmark_interval: seconds between BOOKMARK events on watches that allow them.
        history_limit: changes of a resource kept, however old, for watches resuming from a
            resourceVersion (the watch cache's lower bound, 100).
        history_fresh: seconds older changes are kept too (the watch cache's eventFreshDuration,
            75); a watch from before the window gets an ERROR event, 410 Expired.
        namespace_delay: seconds before a deleted namespace starts being emptied.
        flow_control: API Priority and Fairness (seats, queue, Retry-After); None: no limit.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: AuthConfig | str | Path | None = None,
        admin_token: str | None = None,
        tls: bool = False,
        watch_timeout: float = 300.0,
        bookmark_interval: float = 60.0,
        history_limit: int = 100,
        history_fresh: float = 75.0,
        namespace_delay: float = 0.05,
        flow_control: FlowControl | None = None,
    ) -> None:
        check_loopback(host)
        self.host = host
        self._port = port
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.auth = auth if isinstance(auth, AuthConfig) else load_auth_file(auth) if auth else AuthConfig()
        self.auth.add_token(self.admin_token, ADMIN)
        self.certificates: Certificates | None = _certificates(host) if tls else None
        self.faults = Faults()
        self.audit = AuditLog()
        self._watch = WatchSettings(watch_timeout, bookmark_interval)
        self._history_limit = history_limit
        self._history_fresh = history_fresh
        self._namespace_delay = namespace_delay
        self._flow_control = flow_control
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.cluster: Cluster | None = None
        self._state: AppState | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> KubeApiServer:
        """Serve from a background thread; returns once listening. Raises what startup raised."""
        self._thread = threading.Thread(target=self._run, name="kubeapi", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("kubeapi did not start listening in time")
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as err:  # reported to start()'s caller
            self._startup_error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _fresh_cluster(self) -> tuple[Cluster, ResourceHandler]:
        cluster = new_cluster(history_limit=self._history_limit, history_fresh=self._history_fresh,
                              namespace_delay=self._namespace_delay)
        return cluster, ResourceHandler(cluster.rest, cluster.deleter, self._watch)

    async def _serve(self) -> None:
        self.cluster, handler = self._fresh_cluster()
        state = self._state = AppState(self.cluster.registry, handler, self.auth, self.faults, self.audit,
                                       flow=self._flow_control)
        self._runner = web.AppRunner(
            build_app(state), access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        ssl_context = self.certificates.server_context() if self.certificates else None
        site = web.TCPSite(self._runner, self.host, self._port, ssl_context=ssl_context)
        await site.start()
        server = cast(asyncio.base_events.Server, site._server)
        self._port = server.sockets[0].getsockname()[1]
        state.server_address = f"{self.host}:{self._port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Close watches, stop listening, end the thread. Safe to call twice."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _shutdown(self) -> None:
        if self.cluster is not None:
            self.cluster.store.close_watchers()
        await asyncio.sleep(0)  # let watch handlers see the close and finish their responses
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        """Start over with a freshly seeded cluster, no faults and an empty audit log; watches end.

        Much cheaper than a new server, so test suites can share one.
        """

        def swap(old: Cluster) -> None:
            old.store.close_watchers()
            assert self._state is not None
            self.cluster, self._state.handler = self._fresh_cluster()
            self._state.registry = self.cluster.registry

        self.call(swap)
        self.faults.clear()
        self.audit.clear()

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- where and how to connect -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.certificates else "http"
        return f"{scheme}://{self.host}:{self._port}"

    @property
    def ca_pem(self) -> bytes | None:
        return self.certificates.ca_pem if self.certificates else None

    def kubeconfig(
        self, token: str | None = None, *, user: str = "admin", namespace: str = "default"
    ) -> dict[str, Any]:
        """A kubeconfig dict for `token` (the admin token by default)."""
        return kubeconfig(self.url, token or self.admin_token, user=user, namespace=namespace, ca_pem=self.ca_pem)

    def write_kubeconfig(
        self, path: str | Path, token: str | None = None, *, user: str = "admin", namespace: str = "default"
    ) -> Path:
        return write_kubeconfig(path, self.kubeconfig(token, user=user, namespace=namespace))

    # --- test hooks ---------------------------------------------------------------------------

    def add_fault(self, **rule: Any) -> FaultRule:
        """Add a fault rule (fields as in faults.FaultRule); raises FaultRuleError."""
        return self.faults.add(rule_from_json(rule))

    def call(self, work: Callable[[Cluster], T], timeout: float = 10.0) -> T:
        """Run `work(cluster)` on the server's loop (where the store may be touched) and return its result."""
        assert self._loop is not None and self.cluster is not None, "server not started"
        cluster = self.cluster

        async def run() -> T:
            return work(cluster)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout)
