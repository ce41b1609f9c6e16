"""The aiohttp application: request filters in the real server's order, then routing.

audit -> authentication -> authorization -> priority and fairness -> fault injection -> handler.
Errors anywhere become Status responses; nothing escapes as a traceback.
What is not Kubernetes API (faults, /_testenv) lives in `testenv_api.py`.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import discovery
from . import errors as e
from .audit import AuditLog
from .auth import ANONYMOUS_PATHS, AuthConfig, User, forbidden_error
from .faults import Faults
from .flowcontrol import FlowControl, flow_control
from .handlers import ResourceHandler
from .keys import AUDIT, INFO, USER
from .requestinfo import RequestInfo, request_info
from .resources import Registry
from .responses import error_response, json_response, text_response
from .rest import parse_json_body
from .reviews import REVIEW_KINDS, impersonate, review
from .testenv_api import fault_injection, testenv_endpoint

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))
MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit


@dataclass
class AppState:
    registry: Registry
    handler: ResourceHandler
    auth: AuthConfig
    faults: Faults
    audit: AuditLog
    server_address: str = "127.0.0.1:0"
    flow: FlowControl | None = None


def build_app(state: AppState) -> web.Application:
    app = web.Application(
        # DefaultBuildHandlerChain's order: authentication (audited), impersonation, priority and
        # fairness, then authorization: a refused request may be a 429 before it is a 403.
        middlewares=[_audit(state), _authenticate(state), flow_control(state.flow), _authorize(state),
                     fault_injection(state.faults)],
        client_max_size=MAX_BODY,
    )

    async def dispatch(request: web.Request) -> web.StreamResponse:
        return await _dispatch(state, request)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _info(request: web.Request) -> RequestInfo:
    return request[INFO]


def _audit(state: AppState) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[INFO] = request_info(request.method, request.path, request.query)
        recorded = False

        def record(code: int) -> None:
            # Watches record when their stream starts, like the ResponseStarted audit stage.
            nonlocal recorded
            if not recorded:
                recorded = True
                user = request.get(USER)
                name = user.name if user else ""
                state.audit.record(time.time(), name, request.method, _info(request), request.query_string, code)

        request[AUDIT] = record
        try:
            response = await handler(request)
        except e.ApiError as err:
            response = error_response(err)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(
                e.ApiError(e.status_body(413, "RequestEntityTooLarge", "Request entity too large"))
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug here must reach the client as a 500, not kill the server
            traceback.print_exc(file=sys.stderr)
            response = error_response(e.internal(f"{type(err).__name__}: {err}"))
        record(response.status)
        return response

    return middleware


def _authenticate(state: AppState) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        user = state.auth.authenticate(header)
        if user is None:
            # Credentials that do not authenticate are a 401; none at all make the request
            # system:anonymous (--anonymous-auth defaults to true), which RBAC then refuses: a 403.
            if header:
                raise e.unauthorized()
            user = ANONYMOUS
        request[USER] = impersonate(state.auth, user, request.headers, request.headers.getall("Impersonate-Group", []))
        return await handler(request)

    return middleware


def _authorize(state: AppState) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        info, user = _info(request), request[USER]
        if request.path.startswith("/_testenv"):
            if not (user.admin or "system:masters" in user.groups):
                raise forbidden_error(user, info)
        elif user is ANONYMOUS and request.path not in ANONYMOUS_PATHS:
            raise forbidden_error(user, info)  # system:public-info-viewer: health and version only
        elif user is not ANONYMOUS and not state.auth.allows(user, info):
            raise forbidden_error(user, info)
        return await handler(request)

    return middleware


async def _dispatch(state: AppState, request: web.Request) -> web.StreamResponse:
    info = _info(request)
    if info.is_resource and info.group == "authorization.k8s.io" and info.resource in REVIEW_KINDS:
        if info.verb != "create":
            raise e.method_not_allowed()
        body = review(state.auth, request[USER], info.resource, parse_json_body(await request.read()))
        return json_response(body, 201)
    if info.is_resource:
        return await state.handler.handle(request, info)
    path = request.path.rstrip("/") or "/"
    if path.startswith("/_testenv/"):
        return await testenv_endpoint(state.faults, state.audit, request, path)
    if request.method != "GET":
        raise e.method_not_allowed()
    body = _non_resource(state, path)
    if isinstance(body, str):
        return text_response(body)
    return json_response(body)


def _non_resource(state: AppState, path: str) -> Any:
    if path.split("/")[1] in ("healthz", "livez", "readyz"):
        return "ok"
    if path == "/version":
        return discovery.VERSION_INFO
    if path == "/api":
        return discovery.api_versions(state.server_address)
    if path == "/apis":
        return discovery.group_list(state.registry)
    parts = path.split("/")[1:]
    found = None
    if parts[0] == "api" and len(parts) == 2:
        found = discovery.resource_list(state.registry, "", parts[1])
    elif parts[0] == "apis" and len(parts) == 2:
        found = discovery.api_group(state.registry, parts[1])
    elif parts[0] == "apis" and len(parts) == 3:
        found = discovery.resource_list(state.registry, parts[1], parts[2])
    if found is None:
        raise e.page_not_found()
    return found
