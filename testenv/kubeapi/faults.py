"""Test-only fault injection: make the API refuse, throttle, fail or stall chosen requests.

This is not part of the Kubernetes API. It lets a test reproduce what an
admission webhook (403/400 with its message), an outage (503), API
Priority and Fairness (429 with Retry-After) or a slow server (a delay,
then the normal answer or a timeout) would do to exactly the requests it
names. Rules are kept in memory, matched in the order they were added,
and are safe to change from the test's thread while the server runs.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from . import errors as e
from .requestinfo import RequestInfo

DEFAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
DEFAULT_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be processing the request",
}


class FaultRuleError(ValueError):
    """A fault rule names an unknown field or has a bad value."""


@dataclass
class FaultRule:
    """Which requests to hit (all given fields must match) and what to answer instead."""

    # matching
    method: str | None = None  # GET, POST, PUT, PATCH, DELETE
    verb: str | None = None  # create, get, list, watch, update, patch, delete, deletecollection
    resource: str | None = None  # "pods", or "pods/binding" for a subresource
    namespace: str | None = None
    name: str | None = None  # regular expression, matched in full against the object's name
    labels: dict[str, str] | None = None  # all must be on the object in the request body
    user: str | None = None
    # response
    code: int = 0  # 0: answer normally (after delay_seconds)
    reason: str = ""
    message: str = ""
    retry_after: int | None = None
    delay_seconds: float = 0.0
    count: int | None = None  # how many requests to hit; None until the rule is removed
    # bookkeeping
    id: int = 0
    hits: int = field(default=0)

    def matches(self, info: RequestInfo, method: str, user: str, name: str, labels: dict[str, str]) -> bool:
        checks = (
            self.method is None or self.method.upper() == method,
            self.verb is None or self.verb == info.verb,
            self._resource_matches(info),
            self.namespace is None or self.namespace == info.namespace,
            self.name is None or re.fullmatch(self.name, name) is not None,
            self.labels is None or all(labels.get(k) == v for k, v in self.labels.items()),
            self.user is None or self.user == user,
        )
        return all(checks)

    def _resource_matches(self, info: RequestInfo) -> bool:
        # "pods" means the pods resource itself, not pods/status: as in RBAC.
        if self.resource is None:
            return True
        if "/" in self.resource:
            return self.resource == info.resource_with_sub
        return self.resource == info.resource and not info.subresource

    def error(self) -> e.ApiError:
        reason = self.reason or DEFAULT_REASONS.get(self.code, "InternalError")
        message = self.message or DEFAULT_MESSAGES.get(self.code, f"injected fault {self.id}")
        details: dict[str, Any] | None = (
            {"retryAfterSeconds": self.retry_after} if self.retry_after is not None else None
        )
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return e.ApiError(e.status_body(self.code, reason, message, details), headers)


_FIELDS = set(FaultRule.__dataclass_fields__) - {"id", "hits"}


def rule_from_json(data: Any) -> FaultRule:
    """Build a rule from the JSON a test POSTs; raises FaultRuleError."""
    if not isinstance(data, dict):
        raise FaultRuleError("a fault rule is a JSON object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise FaultRuleError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
    rule = FaultRule(**data)
    if rule.code and not 100 <= rule.code <= 599:
        raise FaultRuleError(f"code must be an HTTP status, not {rule.code}")
    if rule.name is not None:
        try:
            re.compile(rule.name)
        except re.error as err:
            raise FaultRuleError(f"name is not a regular expression: {err}") from err
    return rule


class Faults:
    """The rule set; thread-safe so tests can change it while requests are served."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def take(self, info: RequestInfo, method: str, user: str, name: str, labels: dict[str, str]) -> FaultRule | None:
        """The first matching rule, counted as used (and dropped when its count is spent)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(info, method, user, name, labels):
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._rules.remove(rule)
                    return rule
        return None
