"""The Kubernetes API, behind one small protocol.

Only this module imports lightkube (a client that can create a Pod: 0.33 s to import here,
against 1.24 s for the official client; every elastic job waits for the hook). The flows see :class:`KubeClient`, which deals in
plain manifest dicts and our own :class:`~bridge.errors.KubernetesError`; tests pass fakes.

Calls for many pods run concurrently on one event loop, at most ``concurrency`` at a time
(their connections are kept and reused; a call's timeout starts when it is sent, not while it
waits its turn), under a client-side rate limit (``qps``/``burst``, like client-go's), and
transient failures (429, 5xx, connection errors) are retried with exponential backoff and
jitter, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bridge import NAME
from bridge.config import KubernetesSettings
from bridge.errors import (ConfigError, Conflict, CredentialsError, Forbidden, KubernetesError, KubernetesUnavailable,
                           NotFound, NotServed)

T = TypeVar("T")
PAGE = 500
"""Pods a listing request asks for (``limit``; the server's ``continue`` token for the next)."""
RELISTS = 3
"""Times a paged listing starts again when the server has dropped its snapshot (410 Expired:
the pages took longer than etcd keeps old revisions, 5 minutes by default)."""
_TRANSIENT_CODES = {429, 500, 502, 503, 504}
_PLURALS = {"PodGroup": "podgroups"}  # the custom kinds the bridge creates (bridge/gang.py)


class KubeClient(Protocol):
    namespace: str

    def create_pods(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        """Create pods at once; per pod name, None or the error (409 AlreadyExists included)."""
        ...

    def get_pod(self, name: str) -> dict[str, Any] | None:
        """The pod of that name in the namespace, None if there is none."""
        ...

    def list_pods(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Pods in the namespace with all these labels."""
        ...

    def list_pod_metadata(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The metadata of the pods with all these labels, each as ``{"metadata": {...}}``
        (no spec, no status): listed ``PAGE`` pods a request, so that a hook's memory holds
        one page of whole pods, not thousands."""
        ...

    def delete_pods(self, names: list[str]) -> dict[str, KubernetesError | None]:
        """Delete pods at once (their own grace period); a pod already gone is not an error."""
        ...

    def emit_event(self, pod: dict[str, Any], *, reason: str, message: str, warning: bool = True) -> None:
        """Record a Kubernetes Event on a pod, for ``kubectl describe`` (best effort)."""
        ...

    def pod_log(self, name: str, container: str, tail_lines: int) -> str:
        """The last ``tail_lines`` lines of a container's log (its current or last instance), as
        ``kubectl logs --tail``; a container not started yet raises KubernetesError (400)."""
        ...

    def create_objects(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        """Create namespaced objects of other kinds (PodGroups) at once; per name, None or the error."""
        ...

    def get_object(self, ref: tuple[str, str, str]) -> dict[str, Any] | None:
        """The object (apiVersion, kind, name) in the namespace, None if there is none."""
        ...

    def delete_objects(self, refs: list[tuple[str, str, str]]) -> dict[str, KubernetesError | None]:
        """Delete objects given as (apiVersion, kind, name); one already gone is not an error."""
        ...


class RateLimiter:
    """Token bucket: ``burst`` calls at once, then ``qps`` per second."""

    def __init__(self, qps: float, burst: int) -> None:
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._qps)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._qps)
                self._stamp = time.monotonic()
                self._tokens = 1
            self._tokens -= 1


class LightkubeApi:
    """:class:`KubeClient` over lightkube's async client."""

    def __init__(self, settings: KubernetesSettings) -> None:
        import httpx2
        import lightkube

        self.namespace = settings.namespace
        self._settings = settings
        self._retry_seconds = settings.retry_seconds
        # Generic (dict-backed) classes: lightkube's typed Pod model costs 20-50 ms to build on
        # first use, on the critical path of every elastic job, and we only pass dicts through.
        self._pod = _core_v1("Pod", "pods")
        self._event = _core_v1("Event", "events")
        self._loop = asyncio.new_event_loop()
        config = _kubeconfig(settings)
        self._server = config.cluster.server
        self._exec = exec_command(config)
        try:
            self._client = lightkube.AsyncClient(
                config=config,
                namespace=settings.namespace,
                field_manager=NAME,
                timeout=httpx2.Timeout(settings.timeout),
            )
        except lightkube.ConfigError as e:  # its user's credentials, in a form lightkube cannot use
            raise ConfigError(f"kubernetes: kubeconfig {_where(settings)}: {_one_line(e)}") from None
        except (OSError, ssl.SSLError, ValueError) as e:
            # A CA or client certificate the kubeconfig names but SlurmUser cannot read.
            where = settings.kubeconfig or "$KUBECONFIG"
            raise ConfigError(f"kubernetes: kubeconfig {where}: cannot load its certificates: {e}") from None
        self._limiter = RateLimiter(settings.qps, settings.burst)
        self._in_flight = asyncio.Semaphore(settings.concurrency)
        self._unreachable = False

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()

    def __enter__(self) -> LightkubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_pods(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        async def create(manifest: dict[str, Any]) -> None:
            await self._call(lambda: self._client.create(self._pod.from_dict(manifest)))

        return self._each({m["metadata"]["name"]: m for m in manifests}, create)

    def get_pod(self, name: str) -> dict[str, Any] | None:
        async def get() -> dict[str, Any] | None:
            try:
                return (await self._call(lambda: self._client.get(self._pod, name))).to_dict()
            except NotFound:
                return None

        return self._loop.run_until_complete(get())

    def list_pods(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        async def listing() -> list[dict[str, Any]]:
            pods = self._client.list(self._pod, labels=labels)
            return [pod.to_dict() async for pod in pods]

        return self._loop.run_until_complete(self._call(listing))

    def list_pod_metadata(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        async def listing() -> list[dict[str, Any]]:
            pods = self._client.list(self._pod, labels=labels, chunk_size=PAGE)
            return [_metadata_only(pod.to_dict()) async for pod in pods]

        for attempt in range(1, RELISTS + 1):
            try:
                return self._loop.run_until_complete(self._call(listing))
            except KubernetesError as e:
                if e.code != 410 or attempt == RELISTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def delete_pods(self, names: list[str]) -> dict[str, KubernetesError | None]:
        async def delete(name: str) -> None:
            try:
                await self._call(lambda: self._client.delete(self._pod, name))
            except NotFound:
                pass

        return self._each({n: n for n in names}, delete)

    def emit_event(self, pod: dict[str, Any], *, reason: str, message: str, warning: bool = True) -> None:
        event = self._event.from_dict(event_manifest(pod, reason=reason, message=message, warning=warning))
        try:
            self._loop.run_until_complete(self._call(lambda: self._client.create(event)))
        except KubernetesError:
            pass  # an event is a courtesy: never fail a hook over it

    def pod_log(self, name: str, container: str, tail_lines: int) -> str:
        async def read() -> str:
            lines = self._client.log(name, container=container, tail_lines=tail_lines)
            return "".join([line async for line in lines])

        return self._loop.run_until_complete(self._call(read))

    def create_objects(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        async def create(manifest: dict[str, Any]) -> None:
            resource = self._resource(manifest["apiVersion"], manifest["kind"])
            await self._call(lambda: self._client.create(resource.from_dict(manifest)))

        return self._each({m["metadata"]["name"]: m for m in manifests}, create)

    def get_object(self, ref: tuple[str, str, str]) -> dict[str, Any] | None:
        async def get() -> dict[str, Any] | None:
            resource = self._resource(ref[0], ref[1])
            try:
                return (await self._call(lambda: self._client.get(resource, ref[2]))).to_dict()
            except NotFound:
                return None

        return self._loop.run_until_complete(get())

    def delete_objects(self, refs: list[tuple[str, str, str]]) -> dict[str, KubernetesError | None]:
        async def delete(ref: tuple[str, str, str]) -> None:
            resource = self._resource(ref[0], ref[1])
            try:
                await self._call(lambda: self._client.delete(resource, ref[2]))
            except NotFound:
                pass

        return self._each({ref[2]: ref for ref in refs}, delete)

    # The daemon's Lease (bridge/lease.py): read by the resume hook, held by the daemon.

    def get_lease(self, name: str) -> dict[str, Any] | None:
        async def get() -> dict[str, Any] | None:
            try:
                return (await self._call(lambda: self._client.get(_lease(), name))).to_dict()
            except NotFound:
                return None

        return self._loop.run_until_complete(get())

    def create_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        lease = _lease().from_dict(manifest)
        return self._loop.run_until_complete(self._call(lambda: self._client.create(lease))).to_dict()

    def replace_lease(self, manifest: dict[str, Any]) -> dict[str, Any]:
        lease = _lease().from_dict(manifest)
        return self._loop.run_until_complete(self._call(lambda: self._client.replace(lease))).to_dict()

    @staticmethod
    def _resource(api_version: str, kind: str) -> Any:
        """lightkube's class for a custom kind, declared on first use."""
        from lightkube.generic_resource import create_namespaced_resource, get_generic_resource

        found = get_generic_resource(api_version, kind)
        if found is not None:
            return found
        group, version = api_version.split("/")
        return create_namespaced_resource(group, version, kind, _PLURALS[kind])

    def _each(self, items: dict[str, T], action: Callable[[T], Awaitable[None]]) -> dict[str, KubernetesError | None]:
        async def one(key: str, item: T) -> tuple[str, KubernetesError | None]:
            try:
                await action(item)
                return key, None
            except KubernetesError as e:
                return key, e

        async def everything() -> list[tuple[str, KubernetesError | None]]:
            return await asyncio.gather(*(one(k, v) for k, v in items.items()))

        return dict(self._loop.run_until_complete(everything()))

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One API call: rate-limited, retried while transient, errors translated.

        Once a call has spent the whole retry budget on an unreachable server, later calls of
        this client try once: a hook must not wait the budget again for every call."""
        import stamina

        attempts = 1 if self._unreachable else 8
        try:
            async for attempt in stamina.retry_context(on=_retry_hint, attempts=attempts,
                                                       timeout=self._retry_seconds, wait_initial=0.2, wait_max=5.0):
                with attempt:
                    await self._limiter.acquire()
                    try:
                        async with self._in_flight:
                            answer = await request()
                        self._unreachable = False  # back: a long-lived client's calls get their retries again
                        return answer
                    except Exception as e:  # noqa: BLE001 - translated just below, never swallowed
                        error = _credential_error(e, self._exec, self._settings) or translate(
                            e, self._server, timeout=self._settings.timeout)
                        if not isinstance(error, KubernetesUnavailable):
                            self._unreachable = False  # it answered (a 404, a 409): it is reachable
                        raise error from e
        except KubernetesUnavailable:
            self._unreachable = True
            raise
        raise AssertionError("unreachable: stamina re-raises the last error")


_CREDENTIALS_CODE = os.path.join("lightkube", "config", "client_adapter.py")


def exec_command(config: Any) -> str | None:
    """The credential plugin a loaded kubeconfig's user runs, if any."""
    return config.user.exec.command if config.user is not None and config.user.exec is not None else None


def _credential_error(error: BaseException, exec_command: str | None,
                      settings: KubernetesSettings) -> CredentialsError | None:
    """The error of a request that failed on the kubeconfig user's credentials, which lightkube
    gets as it sends (an exec plugin run, a token file read): raised inside its auth code, not
    by the server's answer. A config error for an admin, not an unreachable server to retry."""
    from lightkube import ConfigError as LightkubeConfigError

    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    if not isinstance(error, LightkubeConfigError) and not any(f.endswith(_CREDENTIALS_CODE) for f in frames):
        return None
    if isinstance(error, LightkubeConfigError):
        what = _one_line(error).rstrip(": ")  # "Exec ... returned 1: " and what it wrote to stderr, if anything
    elif isinstance(error, OSError) and exec_command is not None and error.filename == exec_command:
        what = f"its credential plugin {exec_command} cannot run: {error.strerror}"
    elif isinstance(error, OSError):
        what = f"cannot read its credentials: {error.filename or ''}: {error.strerror}"
    elif exec_command is not None:  # json.loads(output)["status"]["token"]
        what = (f"its credential plugin {exec_command} did not print an ExecCredential with status.token: "
                f"{type(error).__name__}: {_one_line(error)}")
    else:
        what = f"its credentials: {type(error).__name__}: {_one_line(error)}"
    return CredentialsError(f"kubernetes: kubeconfig {_where(settings)}: {what}")


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _core_v1(kind: str, plural: str) -> Any:
    """A dict-backed class for a core/v1 kind; the typed one where this process already
    registered it (lightkube allows one class per kind)."""
    from lightkube.generic_resource import create_namespaced_resource

    try:
        return create_namespaced_resource("", "v1", kind, plural)
    except ValueError:
        import lightkube.resources.core_v1 as typed

        return getattr(typed, kind)


def _lease() -> Any:
    """A dict-backed Lease class; the typed one where this process already registered it."""
    from lightkube.generic_resource import create_namespaced_resource, get_generic_resource

    found = get_generic_resource("coordination.k8s.io/v1", "Lease")
    if found is not None:
        return found
    try:
        return create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")
    except ValueError:
        from lightkube.resources.coordination_v1 import Lease

        return Lease


def _kubeconfig(settings: KubernetesSettings) -> Any:
    import yaml
    from lightkube import ConfigError as LightkubeConfigError, KubeConfig

    try:
        if settings.in_cluster:
            return KubeConfig.from_service_account().get()
        if settings.kubeconfig:
            if os.path.isdir(settings.kubeconfig):
                raise ConfigError(f"kubernetes: kubeconfig {settings.kubeconfig} is a directory, not a file")
            if os.path.isfile(settings.kubeconfig) and os.path.getsize(settings.kubeconfig) == 0:
                raise ConfigError(f"kubernetes: kubeconfig {settings.kubeconfig} is empty")
            config = KubeConfig.from_file(settings.kubeconfig).get(context_name=settings.context)
        else:
            config = KubeConfig.from_env().get(context_name=settings.context)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"kubernetes: kubeconfig {_where(settings)} is not YAML ({at}"
                          f"{getattr(e, 'problem', None) or _one_line(e)})") from e
    except (TypeError, AttributeError, KeyError, RecursionError) as e:
        # lightkube walks the file as dicts and lists; anything else is not a kubeconfig.
        raise ConfigError(f"kubernetes: kubeconfig {_where(settings)} is not a kubeconfig (a mapping with clusters, "
                          f"contexts, users and current-context): {type(e).__name__}: {_one_line(e)}") from e
    except (LightkubeConfigError, OSError, ValueError) as e:
        raise ConfigError(f"kubernetes: cannot load kubeconfig {_where(settings)}: {_one_line(e)}") from e
    _check_server(config.cluster.server, settings)
    return config


def _check_server(server: str, settings: KubernetesSettings) -> None:
    """The cluster's server is an http(s) URL with a host; lightkube's default when a cluster
    names none (http://localhost:8080) would send the token in clear to whatever listens there."""
    from urllib.parse import urlsplit

    if server == "http://localhost:8080":
        raise ConfigError(f"kubernetes: kubeconfig {_where(settings)}: its cluster names no server")
    try:
        url = urlsplit(server)
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as e:
        raise ConfigError(f"kubernetes: kubeconfig {_where(settings)}: server {server!r}: {e}") from None
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ConfigError(f"kubernetes: kubeconfig {_where(settings)}: server {server!r} is not an https:// URL")


def _where(settings: KubernetesSettings) -> str:
    if settings.kubeconfig or settings.in_cluster:
        return settings.kubeconfig or "in-cluster service account"
    return "$KUBECONFIG" if os.environ.get("KUBECONFIG") else "~/.kube/config ($KUBECONFIG is not set)"


def _retry_hint(error: Exception) -> bool | float:
    """stamina's hook: retry transient errors, after ``Retry-After`` when the server says."""
    if not isinstance(error, KubernetesError) or not error.transient:
        return False
    return error.retry_after or True


def translate(error: Exception, server: str, *, timeout: float | None = None) -> KubernetesError:
    """Whatever lightkube/httpx raise → ours, with the server's Status reason and message where
    there is one. Raises ``error`` itself when it is none of the HTTP stack's (a bug of ours)."""
    import httpx2
    import msgspec
    from lightkube import ApiError

    if isinstance(error, KubernetesError):
        return error
    if isinstance(error, ApiError) and error.status is not None:
        status, response = error.status, error.response
        code = status.code or (response.status_code if response is not None else None)
        return _status_error(code, status.reason, status.message or "", response)
    answer = _http_status_error(error)
    if answer is not None:
        return _from_response(answer.response, server)
    if isinstance(error, httpx2.TimeoutException):
        return KubernetesUnavailable(f"the Kubernetes API at {server} did not answer: timed out after {timeout:g} s"
                                     if timeout else f"the Kubernetes API at {server} timed out")
    if isinstance(error, (httpx2.TransportError, OSError)):
        return KubernetesUnavailable(f"cannot reach the Kubernetes API at {server}: {_one_line(error)}")
    if isinstance(error, (httpx2.HTTPError, msgspec.DecodeError, msgspec.ValidationError)):
        # A 2xx body that is not the object asked for: a proxy's page in the API's place.
        return KubernetesError(f"unreadable answer from the Kubernetes API at {server}: {_one_line(error)}",
                               transient=True)
    raise error


def _http_status_error(error: BaseException) -> Any:
    """The HTTP error answer behind ``error``: httpx's own, or the one lightkube failed to read
    while raising (it looks up Content-Type and decodes the body as a Status, which a proxy's
    or a plain-text 404's body is not)."""
    import httpx2

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, httpx2.HTTPStatusError):
            return seen
        seen = seen.__context__
    return None


def _status_error(code: int | None, reason: str | None, message: str, response: Any) -> KubernetesError:
    text = f"{reason or code}: {message}"
    retry_after = _retry_after(response)
    if code == 404:
        return NotFound(text, code=code, reason=reason)
    if code == 409:
        return Conflict(text, code=code, reason=reason)
    if code in (401, 403):
        return Forbidden(text, code=code, reason=reason)
    return KubernetesError(text, code=code, reason=reason, transient=code in _TRANSIENT_CODES, retry_after=retry_after)


def _from_response(response: Any, server: str) -> KubernetesError:
    """An error answer whose body is not a Status: a group/version the server does not serve
    (kube-apiserver's plain-text ``404 page not found``), or a proxy's or load balancer's page."""
    import json

    try:
        status = json.loads(response.content)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return _status_error(status.get("code") or response.status_code, status.get("reason"),
                             status.get("message") or "", response)
    code = response.status_code
    if code == 404:
        api_version = _api_version(response.request.url.path)
        return NotServed(f"{api_version} is not served by the Kubernetes API at {server}", api_version=api_version)
    body = _one_line(re.sub(r"<[^>]*>", " ", response.text)) or "(no body)"
    if code == 429:  # API Priority and Fairness answers in plain text too (http.Error)
        return _status_error(code, "TooManyRequests", body, response)
    return _status_error(code, response.reason_phrase or str(code), f"{body} (not an answer of the Kubernetes API "
                         f"itself: a proxy or load balancer in front of {server}?)", response)


def _api_version(path: str) -> str:
    """``/apis/scheduling.volcano.sh/v1beta1/namespaces/...`` → ``scheduling.volcano.sh/v1beta1``."""
    parts = path.strip("/").split("/")
    if parts[0] == "apis" and len(parts) >= 3:
        return f"{parts[1]}/{parts[2]}"
    return parts[1] if parts[0] == "api" and len(parts) >= 2 else path


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After", "") if response is not None else ""
    return float(value) if value.isdigit() else None


def _one_line(error: object, limit: int = 200) -> str:
    """An error as one short line (YAML and HTML errors span several)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def event_manifest(pod: dict[str, Any], *, reason: str, message: str, warning: bool) -> dict[str, Any]:
    """A core/v1 Event on ``pod`` from the bridge."""
    meta = pod["metadata"]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": NAME},
        "reportingComponent": NAME,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
