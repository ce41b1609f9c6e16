"""Run a long-lived asyncio service either as a program (CLI) or on a thread of its own (in-process).

The scheduler and the pod runner are both services: `setup()` does the first sync with the API
(errors there are the caller's: a bad kubeconfig must fail `start()`), `serve()` runs until
cancelled, `teardown()` releases everything. `ServiceThread` gives them a blocking
`start()`/`stop()` for tests; `run_until_signal()` gives them SIGTERM/SIGINT handling for the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import Protocol, Self

log = logging.getLogger(__name__)


class Service(Protocol):
    async def setup(self) -> None: ...

    async def serve(self) -> None: ...

    async def teardown(self) -> None: ...


async def _first(*aws: asyncio.Task) -> set[asyncio.Task]:
    done, _ = await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)
    return done


async def _cancel(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_service(service: Service, stop: asyncio.Event, started: threading.Event | None = None) -> None:
    """Set the service up, serve until `stop` is set (or serve() ends), then tear it down."""
    stopping = asyncio.create_task(stop.wait())
    setup = asyncio.create_task(service.setup())
    try:
        if setup not in await _first(setup, stopping):
            return
        setup.result()  # the setup's error is the caller's
        if started is not None:
            started.set()
        serving = asyncio.create_task(service.serve())
        try:
            if serving in await _first(serving, stopping) and serving.exception() is not None:
                log.error("%s stopped on an error", type(service).__name__, exc_info=serving.exception())
        finally:
            await _cancel(serving)
    finally:
        await _cancel(setup, stopping)
        await service.teardown()


def run_until_signal(service: Service) -> None:
    """Run the service in this thread until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_service(service, stop)

    asyncio.run(main())


class ServiceThread:
    """A service on its own thread and event loop, with blocking start() and stop()."""

    def __init__(self, service: Service, *, name: str) -> None:
        self._service = service
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()  # loop and stop event exist
        self._started = threading.Event()  # setup done
        self._error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the service; returns once its setup is done, raising the setup's error if any."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.05):
            if not self._thread.is_alive():
                self._thread.join()
                self._thread = None
                raise RuntimeError(f"{self._name} failed to start: {self._error}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self._name} did not start within {timeout} s")

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the service and wait for its teardown."""
        thread = self._thread
        if thread is None:
            return
        self._ready.wait(timeout)
        if self._loop is not None and self._stop is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{self._name} did not stop within {timeout} s")
        self._thread = None

    def call(self, coro, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        """Run a coroutine on the service's loop from another thread and return its result."""
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_service(self._service, self._stop, self._started)

        try:
            asyncio.run(main())
        except BaseException as e:  # a thread cannot raise to its creator: start() re-raises it
            self._error = e
            if self._started.is_set():
                log.error("%s stopped on an error", self._name, exc_info=e)
        finally:
            self._ready.set()


class OnItsThread:
    """start()/stop()/``with`` for a class that runs ``self._thread`` (a :class:`ServiceThread`):
    the shape the in-process scheduler and pod runner share."""

    _thread: ServiceThread

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
