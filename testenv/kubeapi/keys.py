"""Typed per-request storage shared by the middlewares and the handlers."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from .auth import User
from .requestinfo import RequestInfo


class AuditRecorder(Protocol):
    """Records the request in the audit log now (watches do it when their stream starts)."""

    def __call__(self, code: int) -> None: ...


INFO = web.RequestKey("info", RequestInfo)
USER = web.RequestKey("user", User)
AUDIT = web.RequestKey("audit", AuditRecorder)
