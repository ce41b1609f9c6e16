"""Access reviews (`kubectl auth can-i`) and impersonation (`kubectl --as`).

Both ask the same authorizer the server uses for real requests, so a test
can check a role file against the bridge's needs without making the calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import errors as e
from .auth import AuthConfig, User, implied_groups
from .gvk import GroupResource
from .jsonobj import JsonObject
from .requestinfo import RequestInfo

REVIEW_KINDS = {"selfsubjectaccessreviews": "SelfSubjectAccessReview", "subjectaccessreviews": "SubjectAccessReview"}


def _attributes(spec: JsonObject) -> RequestInfo:
    resource = spec.get("resourceAttributes")
    if resource is not None:
        return RequestInfo(
            True,
            "",
            resource.get("verb", ""),
            "apis",
            resource.get("group", ""),
            resource.get("version", ""),
            resource.get("namespace", ""),
            resource.get("resource", ""),
            resource.get("name", ""),
            resource.get("subresource", ""),
        )
    other = spec.get("nonResourceAttributes") or {}
    return RequestInfo(False, other.get("path", ""), other.get("verb", ""))


def review(auth: AuthConfig, requester: User, plural: str, body: Any) -> JsonObject:
    """The review with its status filled in; raises ApiError 400 for a body that is not a review."""
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise e.bad_request(f"the object provided is unrecognized (must be of type {REVIEW_KINDS[plural]})")
    spec = body["spec"]
    subject = requester
    if plural == "subjectaccessreviews":
        name = spec.get("user", "")
        subject = User(name, implied_groups(name) + tuple(spec.get("groups") or ()), auth.is_admin_name(name))
    allowed = auth.allows(subject, _attributes(spec))
    status: JsonObject = {"allowed": allowed}
    if allowed:
        status["reason"] = "allowed by the stand-in's authorizer"
    return {
        "kind": REVIEW_KINDS[plural],
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }


def impersonate(auth: AuthConfig, requester: User, headers: Mapping[str, str], groups: list[str]) -> User:
    """The user a request with Impersonate-* headers acts as; raises ApiError 403 if not allowed."""
    name = headers.get("Impersonate-User", "")
    if not name:
        if groups:
            raise e.bad_request("requested [Impersonate-Group] without impersonating a user")
        return requester
    target = "serviceaccounts" if name.startswith("system:serviceaccount:") else "users"
    check = RequestInfo(True, "", "impersonate", "api", "", "v1", "", target, name.split(":")[-1])
    if not auth.allows(requester, check):
        cause = f'User "{requester.name}" cannot impersonate resource "{target}" in API group "" at the cluster scope'
        raise e.forbidden(GroupResource("", target), name.split(":")[-1], cause)
    return User(name, implied_groups(name) + tuple(groups), auth.is_admin_name(name))
