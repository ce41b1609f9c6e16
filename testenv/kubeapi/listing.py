"""What a list, watch or deletecollection selects, and list pagination.

`Selection` is the namespace + labelSelector + fieldSelector of a request;
`paginate` cuts a list into `limit`-sized pages with opaque `continue`
tokens, as the etcd-backed list does (pages are sorted by namespace/name).
A token whose revision the store no longer holds (the kind's change window has
moved past it, as etcd compaction does, every 5 minutes by default) is answered
410 Expired, with an inconsistent token for the rest, as the etcd3 storage does.
Pages are cut from the objects as they are now, not from the token's snapshot.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import errors as e
from .jsonobj import JsonObject
from .resources import ResourceType
from .selector import (
    FieldGetter,
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)


@dataclass(frozen=True)
class Selection:
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    getters: Mapping[str, FieldGetter]

    def matches(self, obj: JsonObject) -> bool:
        """`obj` is in the API version of the request (field names differ between versions)."""
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj, self.getters)

    @property
    def filters(self) -> bool:
        return not self.labels.empty or bool(self.fields.terms)


def selection(rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Selection:
    """Parse the selectors of a request; raises ApiError 400 with the parser's message."""
    getters = rt.strategy.field_getters(rt)
    try:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), getters)
    except SelectorError as err:
        raise e.bad_request(str(err)) from err
    return Selection(namespace, labels, fields, getters)


@dataclass(frozen=True)
class Page:
    items: list[JsonObject]
    resource_version: str
    continue_token: str
    remaining: int | None


def _encode_token(rv: str, last_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": int(rv), "start": last_key + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return str(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError) as err:
        raise e.bad_request(f"continue key is not valid: {err}") from err


def _key(obj: JsonObject) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def parse_limit(query: Mapping[str, str]) -> int:
    text = query.get("limit", "0") or "0"
    try:
        return max(int(text), 0)
    except ValueError as err:
        raise e.bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax') from err


EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


def paginate(stored: list[JsonObject], query: Mapping[str, str], current_rv: str, count_remaining: bool,
             oldest_rv: int, view: Callable[[JsonObject], JsonObject | None]) -> Page:
    """`stored` are the objects in key order; `view` presents one as the request's version
    serves it, or None when the selectors leave it out; `current_rv` is the store's revision
    now, `oldest_rv` the oldest it can still list at (older tokens expire). Objects past the
    page are not presented: a page costs its own objects, as an etcd range read with a limit."""
    limit = parse_limit(query)
    rv = current_rv
    token = query.get("continue", "")
    if token:
        rv, start = _decode_token(token)
        if rv == "-1":  # the inconsistent token of a 410: the rest as it is now
            rv = current_rv
        elif int(rv) < oldest_rv:
            raise _expired_continue(start)
        stored = [i for i in stored if _key(i) + "\x00" > start]
    page: list[JsonObject] = []
    for position, obj in enumerate(stored):
        if (shown := view(obj)) is None:
            continue
        if limit and len(page) == limit:
            remaining = len(stored) - position if count_remaining else None
            return Page(page, rv, _encode_token(rv, _key(page[-1])), remaining)
        page.append(shown)
    return Page(page, rv, "", None)


def _expired_continue(start: str) -> e.ApiError:
    error = e.expired(EXPIRED_CONTINUE)
    error.status["metadata"] = {"continue": _encode_token("-1", start.removesuffix("\x00"))}
    return error
