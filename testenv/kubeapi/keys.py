"""Typed per-request storage shared by the middlewares and the handlers."""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from .auth import User
from .requestinfo import RequestInfo

INFO = web.RequestKey("info", RequestInfo)
USER = web.RequestKey("user", User)
# Records the request in the audit log now (watches do it when their stream starts).
AUDIT = web.RequestKey("audit", Callable[[int], None])
