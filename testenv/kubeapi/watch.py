"""Watch streams with the watch cache's semantics.

- no resourceVersion, or "0": synthetic ADDED for every matching object, then live events;
- a resourceVersion: replay what happened after it from the bounded history, or, if
  that is too old, one ERROR event (410, reason Expired) and the end of the stream;
- selectors apply to both the old and the new state of a change, so an object that
  stops matching is sent as DELETED and one that starts matching as ADDED;
- BOOKMARK events when asked for, the end of the stream at timeoutSeconds (or the
  server's default), and at server shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import errors as e
from .jsonobj import JsonObject
from .listing import Selection
from .resources import ResourceType
from .rest import present
from .store import Change, Store

Send = Callable[[JsonObject], Awaitable[None]]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class WatchOptions:
    resource_version: str
    bookmarks: bool
    timeout: float
    bookmark_interval: float
    send_initial_events: bool = False


def parse_resource_version(text: str | None) -> str:
    """Raises ApiError 400 for a resourceVersion that is not a number."""
    if text in (None, "", "0"):
        return text or ""
    assert text is not None
    if not text.isdigit():
        raise e.bad_request(
            f'resourceVersion: Invalid value: "{text}": strconv.ParseUint: parsing "{text}": invalid syntax'
        )
    return text


def event(kind: str, obj: JsonObject) -> JsonObject:
    return {"type": kind, "object": obj}


class WatchStream:
    def __init__(self, rt: ResourceType, chosen: Selection, store: Store, options: WatchOptions) -> None:
        self.rt = rt
        self.chosen = chosen
        self.store = store
        self.options = options
        self.storage = rt.storage_key
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()

    # Watcher protocol, called by the store on the loop thread.
    def offer(self, change: Change) -> None:
        self.queue.put_nowait(change)

    def close(self) -> None:
        self.queue.put_nowait(None)

    def start(self) -> list[JsonObject]:
        """Initial events; subscribes in the same step so no change falls in between."""
        rv = self.options.resource_version
        if rv == "0":
            rv = ""  # "any version": the cache's current state, as ADDED events, as with none
        oldest = self.store.oldest_replayable(self.storage)
        if rv and int(rv) < oldest:
            expired = e.expired(f"too old resource version: {rv} ({oldest})")
            self.queue.put_nowait(None)
            return [event("ERROR", expired.status)]
        if rv:
            initial = [t for c in self.store.changes_after(self.storage, int(rv)) if (t := self.translate(c))]
        else:
            objects = [present(self.rt, o) for o in self.store.items(self.storage, self.chosen.namespace)]
            initial = [event("ADDED", o) for o in objects if self.chosen.matches(o)]
            if self.options.send_initial_events:
                initial.append(self.bookmark(initial_end=True))
        self.store.add_watcher(self)
        return initial

    def translate(self, change: Change) -> JsonObject | None:
        new = present(self.rt, change.obj)
        new_match = self.chosen.matches(new)
        old_match = change.old is not None and self.chosen.matches(present(self.rt, change.old))
        if change.type == "ADDED":
            return event("ADDED", new) if new_match else None
        if change.type == "DELETED":
            return event("DELETED", new) if new_match or old_match else None
        if new_match and old_match:
            return event("MODIFIED", new)
        if new_match:
            return event("ADDED", new)
        if old_match:
            # cache_watcher.go: the previous object's content with the event's resourceVersion.
            gone = present(self.rt, change.old)
            gone["metadata"] = {**gone["metadata"], "resourceVersion": new["metadata"]["resourceVersion"]}
            return event("DELETED", gone)
        return None

    def bookmark(self, initial_end: bool = False) -> JsonObject:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return event("BOOKMARK", {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta})

    async def run(self, send: Send, initial: list[JsonObject]) -> None:
        """Send events until the timeout, server shutdown, or an ERROR; always unsubscribes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout
        next_bookmark = loop.time() + self.options.bookmark_interval
        try:
            for item in initial:
                await send(item)
            while True:
                now = loop.time()
                if now >= deadline:
                    return
                wake = min(deadline, next_bookmark) if self.options.bookmarks else deadline
                try:
                    change = await asyncio.wait_for(self.queue.get(), max(wake - now, 0))
                except TimeoutError:
                    if self.options.bookmarks and loop.time() >= next_bookmark:
                        await send(self.bookmark())
                        next_bookmark = loop.time() + self.options.bookmark_interval
                    continue
                if change is None:
                    return
                translated = self.translate(change)
                if translated is not None:
                    await send(translated)
        finally:
            self.store.remove_watcher(self)
