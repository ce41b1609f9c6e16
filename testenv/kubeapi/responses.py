"""JSON responses with exactly the Content-Type the real server sends.

lightkube only turns an error body into `ApiError` (with its Status) when
the Content-Type is exactly "application/json"; aiohttp's json_response
would add "; charset=utf-8".
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import ApiError, PageNotFound

JSON = "application/json"


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type=JSON, headers=headers)


def error_response(err: ApiError) -> web.Response:
    if isinstance(err, PageNotFound):
        headers = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=err.TEXT.encode(), status=404, headers=headers)
    return json_response(err.status, err.code, err.headers)


def text_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain")
