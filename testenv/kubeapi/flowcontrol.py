"""API Priority and Fairness, as much of it as a client of ours can notice.

kube-apiserver (staging/src/k8s.io/apiserver/pkg/util/flowcontrol, and
pkg/server/filters/priority-and-fairness.go) gives each priority level a number of seats
(concurrent requests). A request that finds none free waits in its flow's queue; one that finds
its queue full, or waits past the queue's time limit, is answered 429 with a ``Retry-After``
header and a plain-text body (``http.Error``), not a Status. Members of system:masters match the
``exempt`` FlowSchema and never wait; a watch takes a seat while it starts, not while it
streams (the filter exempts only long-running requests that are not watches).

Modelled: one priority level with ``seats``; one queue per user (a flow is a user here, and
queues are served round-robin, the fairness between flows); ``queue_length`` waiting requests
per flow; ``queue_wait`` seconds in a queue at most; ``request_latency`` seconds each request
holds its seat on top of the stand-in's own work, standing in for a server's storage round trip.
Left out: several priority levels and FlowSchemas, shuffle sharding, borrowing between levels,
request width (list cost), and Retry-After growing while rejections go on (always 1 here).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from .keys import INFO, USER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOO_MANY = "Too many requests, please try again later.\n"
RETRY_AFTER = "1"


@dataclass(frozen=True)
class FlowControl:
    seats: int
    queue_length: int = 50
    queue_wait: float = 15.0  # a quarter of the default 60 s request timeout, as the real server
    request_latency: float = 0.0


class _Level:
    """One priority level: seats in use and each flow's queue of waiting requests."""

    def __init__(self, settings: FlowControl) -> None:
        self.settings = settings
        self.in_use = 0
        self.queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    async def acquire(self, flow: str) -> bool:
        """True once a seat is this request's; False when it must be rejected."""
        if self.in_use < self.settings.seats and not any(self.queues.values()):
            self.in_use += 1
            return True
        queue = self.queues.setdefault(flow, deque())
        if len(queue) >= self.settings.queue_length:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.settings.queue_wait)
            return True
        except TimeoutError:
            if waiter.done():  # a seat was handed over just as time ran out: keep it
                return True
            queue.remove(waiter)
            return False
        except asyncio.CancelledError:  # the client went away while waiting
            if waiter.done():
                self.release()
            else:
                queue.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the seat to the next flow in turn, or free it."""
        while self.queues:
            flow, queue = next(iter(self.queues.items()))
            self.queues.move_to_end(flow)
            if not queue:
                del self.queues[flow]
                continue
            queue.popleft().set_result(None)
            return
        self.in_use -= 1


def flow_control(settings: FlowControl | None) -> Middleware:
    level = _Level(settings) if settings else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user, info = request.get(USER), request[INFO]
        exempt = user is None or user.admin or "system:masters" in user.groups
        if level is None or exempt or not info.is_resource:
            return await handler(request)
        if not await level.acquire(user.name):
            return web.Response(body=TOO_MANY.encode(), status=429, headers={
                "Retry-After": RETRY_AFTER, "Content-Type": "text/plain; charset=utf-8",
                "X-Content-Type-Options": "nosniff"})
        if info.verb == "watch":
            # A watch is admitted like any request (priority-and-fairness.go exempts only the
            # long-running requests that are not watches); its seat is held while it starts
            # (request_latency here), not while it streams.
            try:
                if level.settings.request_latency:
                    await asyncio.sleep(level.settings.request_latency)
            finally:
                level.release()
            return await handler(request)
        try:
            if level.settings.request_latency:
                await asyncio.sleep(level.settings.request_latency)
            return await handler(request)
        finally:
            level.release()

    return middleware
