"""The shape objects have inside the server: decoded JSON, as clients send and receive it."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
