"""The test-only HTTP surface, kept apart from the Kubernetes API code.

- a middleware that applies fault rules (faults.py) to resource requests,
  after authentication and authorization, before the handler;
- /_testenv/faults: GET lists rules, POST adds one (JSON, fields of
  faults.FaultRule), DELETE clears them, DELETE /_testenv/faults/{id} removes one;
- /_testenv/audit: GET lists entries (?user= filters), DELETE clears them.

Only admins reach /_testenv (app.py's authorization checks that).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import yaml
from aiohttp import web
from aiohttp.typedefs import Middleware

from . import errors as e
from .audit import AuditLog
from .faults import FaultRuleError, Faults, rule_from_json
from .keys import INFO, USER
from .responses import json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fault_injection(faults: Faults) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request[INFO]
        if info.is_resource and faults:  # no rule: no body to read twice (it cost half of a create)
            name, labels = info.name, dict[str, str]()
            if request.method in ("POST", "PUT", "PATCH"):
                name, labels = _name_and_labels(await request.read(), info.name)
            rule = faults.take(info, request.method, request[USER].name, name, labels)
            if rule is not None:
                if rule.delay_seconds:
                    await asyncio.sleep(rule.delay_seconds)
                if rule.code:
                    raise rule.error()
        return await handler(request)

    return middleware


def _name_and_labels(raw: bytes, name: str) -> tuple[str, dict[str, str]]:
    """The object's name and labels from a request body, for rules that match on them."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        try:
            body = yaml.load(raw.decode(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (ValueError, yaml.YAMLError):
            return name, {}
    meta = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(meta, dict):
        return name, {}
    labels = meta.get("labels")
    found = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    return str(name or meta.get("name") or meta.get("generateName") or ""), found


async def testenv_endpoint(faults: Faults, audit: AuditLog, request: web.Request, path: str) -> web.StreamResponse:
    if path == "/_testenv/audit":
        if request.method == "DELETE":
            audit.clear()
            return json_response({"items": []})
        return json_response({"items": [a.as_dict() for a in audit.entries(request.query.get("user"))]})
    if path == "/_testenv/faults":
        if request.method == "POST":
            try:
                rule = faults.add(rule_from_json(json.loads(await request.read() or b"null")))
            except (ValueError, TypeError, FaultRuleError) as err:
                raise e.bad_request(f"invalid fault rule: {err}") from err
            return json_response({"id": rule.id, "rule": faults.rules()[-1]}, 201)
        if request.method == "DELETE":
            faults.clear()
            return json_response({"items": []})
        return json_response({"items": faults.rules()})
    if path.startswith("/_testenv/faults/") and request.method == "DELETE":
        rule_id = path.rsplit("/", 1)[1]
        if not rule_id.isdigit() or not faults.remove(int(rule_id)):
            raise e.ApiError(e.status_body(404, "NotFound", f"fault rule {rule_id} not found"))
        return json_response({"id": int(rule_id)})
    raise e.resource_not_found()
