"""Logging: one JSON object per line to the configured file; readable lines on a terminal.

Hooks run with no terminal (slurmctld discards their output), so the file is what an admin
reads; a person running the CLI by hand also gets a console rendering on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import structlog

from bridge.config import LogSettings

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Sinks:
    """The last processor: writes the event to every sink, then drops it."""

    def __init__(self, file: TextIO | None, console: bool) -> None:
        self.file = file
        self.console = structlog.dev.ConsoleRenderer(colors=False) if console else None

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> Any:
        if self.file is not None:
            self.file.write(json.dumps(event, default=str) + "\n")
            self.file.flush()
        if self.console is not None:
            sys.stderr.write(self.console(logger, method, dict(event)) + "\n")
        raise structlog.DropEvent


def configure(settings: LogSettings | None, **context: Any) -> structlog.typing.FilteringBoundLogger:
    """Set up logging for this process and return a logger with ``context`` bound.

    A log file that cannot be opened falls back to JSON on stderr (and says so), rather
    than failing the hook.
    """
    settings = settings or LogSettings()
    tty = sys.stderr.isatty()
    file, problem = _open(settings.file)
    if file is None and not tty:
        file = sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _Sinks(file, console=tty),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.level]),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger().bind(**context)
    if problem:
        log.warning("log file unavailable", file=settings.file, error=problem)
    return log


def _open(path: str | None) -> tuple[TextIO | None, str | None]:
    if not path:
        return None, None
    try:
        return open(path, "a", buffering=1), None
    except OSError as e:
        return None, e.strerror
