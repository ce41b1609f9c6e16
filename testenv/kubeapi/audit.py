"""An in-memory audit log: which user called which verb on which resource, and the answer.

Tests read it to learn the verbs the bridge really uses, so the RBAC
manifests can grant exactly those (`permissions()` groups them the way
PolicyRules do).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from .requestinfo import RequestInfo


@dataclass(frozen=True)
class AuditEntry:
    time: float
    user: str
    method: str
    path: str
    query: str
    verb: str
    api_group: str
    resource: str  # "pods" or "pods/status"
    namespace: str
    name: str
    code: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    """Thread-safe: the server appends on its loop, tests read from theirs."""

    def __init__(self, limit: int = 100_000) -> None:
        self._entries: deque[AuditEntry] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def record(self, when: float, user: str, method: str, info: RequestInfo, query: str, code: int) -> None:
        entry = AuditEntry(
            when,
            user,
            method,
            info.path,
            query,
            info.verb,
            info.group,
            info.resource_with_sub if info.is_resource else "",
            info.namespace,
            info.name,
            code,
        )
        with self._lock:
            self._entries.append(entry)

    def entries(self, user: str | None = None) -> list[AuditEntry]:
        with self._lock:
            return [a for a in self._entries if user is None or a.user == user]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def permissions(self, user: str | None = None) -> set[tuple[str, str, str]]:
        """(apiGroup, resource, verb) triples the user's resource requests needed."""
        return {(a.api_group, a.resource, a.verb) for a in self.entries(user) if a.resource}
