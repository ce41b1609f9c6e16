"""What a request is about, derived from method and path as the apiserver's RequestInfoFactory does.

/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}
/apis/{group}/{version}/{resource}/{name}
/api/v1/watch/... (deprecated watch paths)

Authorization, auditing and fault injection all key on this, so a rule
written for `pods/status` + `patch` matches exactly what a real RBAC rule
would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    is_resource: bool
    path: str
    verb: str
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    legacy_watch: bool = False

    @property
    def resource_with_sub(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_NON_RESOURCE_VERBS = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}


def _is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("true", "1")


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    non_resource = RequestInfo(False, path, _NON_RESOURCE_VERBS.get(method, method.lower()))
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix = parts[0]
    if prefix == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
        else:
            namespace = ""  # a namespace object itself: /namespaces/{name}[/status]
    if not rest:
        return non_resource
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name and not namespace:
        namespace = name  # RBAC checks a namespace's own requests in that namespace
    verb = _verb(method, bool(name), legacy_watch or _is_watch(query))
    return RequestInfo(True, path, verb, prefix, group, version, namespace, resource, name, subresource, legacy_watch)


def _verb(method: str, named: bool, watch: bool) -> str:
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if named else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return method.lower()
