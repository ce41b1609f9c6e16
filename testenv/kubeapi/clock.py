"""Timestamps as the server writes them (RFC 3339, whole seconds, "Z")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(after_seconds: float = 0) -> str:
    return rfc3339(now() + timedelta(seconds=after_seconds))
