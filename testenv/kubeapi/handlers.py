"""Requests for resources (/api/..., /apis/...): route to the verb, shape the HTTP answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from . import errors as e
from . import tables
from .deletion import Deleter, parse_delete_options
from .jsonobj import JsonObject
from .keys import AUDIT
from .listing import selection
from .podlogs import pod_log
from .requestinfo import RequestInfo
from .resources import Registry, ResourceType
from .responses import JSON, dumps, json_response
from .rest import Rest, WriteOptions, parse_json_body
from .tables import wants_table
from .watch import WatchOptions, WatchStream, parse_resource_version


@dataclass(frozen=True)
class WatchSettings:
    default_timeout: float = 300.0  # the real default is 30-60 minutes; tests want streams to end
    bookmark_interval: float = 60.0


class ResourceHandler:
    def __init__(self, rest: Rest, deleter: Deleter, watch: WatchSettings) -> None:
        self.rest = rest
        self.deleter = deleter
        self.registry: Registry = rest.registry
        self.watch_settings = watch

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        rt = self._resource_type(info)
        namespace = info.namespace if rt.namespaced else ""
        if info.verb == "watch":
            return await self._watch(request, rt, info)
        if info.subresource:
            return await self._subresource(request, rt, info, namespace)
        query = request.query
        table = wants_table(request.headers.get("Accept", ""))
        include = query.get("includeObject", "Metadata")
        if info.verb == "get":
            obj = self.rest.get(rt, namespace, info.name)
            return json_response(tables.table(rt, [obj], {}, include) if table else obj)
        if info.verb == "list":
            body = self.rest.list(rt, namespace or None, query)
            return json_response(tables.table(rt, body["items"], body["metadata"], include) if table else body)
        if info.verb == "create":
            return await self._create(request, rt, namespace)
        if info.verb == "update":
            body, created = self.rest.update(rt, namespace, info.name, await _body(request), _write_options(query))
            return json_response(body, 201 if created else 200)
        if info.verb == "patch":
            return await self._patch(request, rt, namespace, info.name, "")
        if info.verb == "delete":
            options = parse_delete_options(await _optional_body(request), query)
            return json_response(self.deleter.delete(rt, namespace, info.name, options))
        if info.verb == "deletecollection":
            options = parse_delete_options(await _optional_body(request), query)
            return json_response(self.deleter.delete_collection(rt, namespace or None, query, options))
        raise e.method_not_allowed()

    def _resource_type(self, info: RequestInfo) -> ResourceType:
        rt = self.registry.lookup(info.group, info.version, info.resource)
        served = self.registry.in_group_version(info.group, info.version)
        if rt is None and not any(t.builtin for t in served):
            # No API group/version there at all (e.g. a CRD not installed), or one only CRDs
            # serve: the apiextensions handler passes a resource with no CRD of its own on to
            # the NotFound handler (customresource_handler.go ServeHTTP), a plain-text 404.
            raise e.page_not_found()
        if rt is None or (info.namespace and not rt.namespaced and rt.plural != "namespaces"):
            raise e.resource_not_found()
        allowed = rt.verbs
        if info.subresource:
            sub = rt.subresource(info.subresource)
            if sub is None:
                raise e.resource_not_found()
            allowed = sub.verbs
        if info.verb not in allowed:
            raise e.method_not_allowed()
        named = bool(info.name)
        if info.verb in ("update", "patch") and not named or info.verb == "create" and named and not info.subresource:
            raise e.method_not_allowed()
        if rt.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            raise e.method_not_allowed()
        return rt

    async def _create(self, request: web.Request, rt: ResourceType, namespace: str) -> web.Response:
        body = await _body(request)
        opts = _write_options(request.query)
        if rt.plural == "bindings" and rt.group == "":
            pods = self.registry.lookup("", "v1", "pods")
            assert pods is not None
            name = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
            return json_response(self.rest.bind(pods, namespace, name, body, opts), 201)
        return json_response(self.rest.create(rt, namespace, body, opts), 201)

    async def _patch(self, request: web.Request, rt: ResourceType, namespace: str, name: str, sub: str) -> web.Response:
        raw = await request.read()
        opts = _write_options(request.query)
        content_type = request.headers.get("Content-Type", "")
        body, created = self.rest.patch(rt, namespace, name, content_type, raw, opts, sub)
        return json_response(body, 201 if created else 200)

    async def _subresource(
        self, request: web.Request, rt: ResourceType, info: RequestInfo, namespace: str
    ) -> web.StreamResponse:
        sub = info.subresource
        if sub == "binding":
            body = await _body(request)
            return json_response(self.rest.bind(rt, namespace, info.name, body, _write_options(request.query)), 201)
        if sub == "log":
            return await pod_log(self.rest, rt, namespace, info.name, request.query)
        if info.verb == "get":
            return json_response(self.rest.get(rt, namespace, info.name))
        if info.verb == "update":
            body, _ = self.rest.update(
                rt, namespace, info.name, await _body(request), _write_options(request.query), sub
            )
            return json_response(body)
        if info.verb == "patch":
            return await self._patch(request, rt, namespace, info.name, sub)
        raise e.method_not_allowed()

    async def _watch(self, request: web.Request, rt: ResourceType, info: RequestInfo) -> web.StreamResponse:
        query = dict(request.query)
        if info.name:  # a watch on one object is a watch on a name selector
            name_term = f"metadata.name={info.name}"
            query["fieldSelector"] = ",".join(x for x in (query.get("fieldSelector"), name_term) if x)
        namespace = info.namespace if rt.namespaced and info.namespace else None
        chosen = selection(rt, namespace, query)
        stream = WatchStream(rt, chosen, self.rest.store, self._watch_options(query))
        initial = stream.start()
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        request[AUDIT](200)

        as_table = wants_table(request.headers.get("Accept", ""))
        include = query.get("includeObject", "Metadata")

        async def send(item: JsonObject) -> None:
            if as_table and item["type"] in ("ADDED", "MODIFIED", "DELETED"):
                # kubectl get -w: each event carries a one-row Table
                rv = {"resourceVersion": item["object"]["metadata"].get("resourceVersion", "")}
                item = {"type": item["type"], "object": tables.table(rt, [item["object"]], rv, include)}
            await response.write(dumps(item) + b"\n")

        try:
            await stream.run(send, initial)
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away
        return response

    def _watch_options(self, query: Any) -> WatchOptions:
        timeout = self.watch_settings.default_timeout
        if query.get("timeoutSeconds"):
            text = query["timeoutSeconds"]
            if not text.isdigit():  # an int64 in ListOptions; "0.5" does not decode on a real server either
                raise e.bad_request(
                    f'timeoutSeconds: Invalid value: "{text}": strconv.ParseInt: parsing "{text}": invalid syntax'
                )
            timeout = float(text)
        return WatchOptions(
            resource_version=parse_resource_version(query.get("resourceVersion")),
            bookmarks=query.get("allowWatchBookmarks", "").lower() in ("true", "1"),
            timeout=timeout,
            bookmark_interval=self.watch_settings.bookmark_interval,
            send_initial_events=query.get("sendInitialEvents", "").lower() in ("true", "1"),
        )


def _write_options(query: Any) -> WriteOptions:
    dry_run = query.getall("dryRun", []) if hasattr(query, "getall") else [query.get("dryRun")]
    dry_run = [d for d in dry_run if d]
    for value in dry_run:
        if value != "All":
            raise e.bad_request(
                f'Invalid dry run value: "{value}": dryRun: Unsupported value: "{value}": supported values: "All"'
            )
    return WriteOptions(dry_run=bool(dry_run), field_manager=query.get("fieldManager", "") or "")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip()
    if content_type in ("application/yaml", "application/x-yaml"):
        try:
            return yaml.safe_load(raw.decode())
        except yaml.YAMLError as err:
            raise e.bad_request(f"error decoding YAML: {err}") from err
    return parse_json_body(raw)


async def _optional_body(request: web.Request) -> Any:
    raw = await request.read()
    return parse_json_body(raw) if raw.strip() else None
