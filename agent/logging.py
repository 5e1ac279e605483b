"""structlog set-up: JSON lines for journald/log shippers, readable console lines on a TTY.

`RateLimitedLog` keeps one bad sensor from flooding the journal: a repeated warning is written at
most once per interval per key, with how many were suppressed since the last one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: a test runner (or
    anything else) that swaps and later closes its stderr must not leave the agent writing to a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(format: LogFormat = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog globally; `auto` picks console on a TTY and JSON otherwise (systemd)."""
    if level.lower() not in _LEVELS:
        raise ValueError(f"logging.level must be one of {sorted(_LEVELS)}, got {level!r}")
    if format not in ("auto", "json", "console"):
        raise ValueError(f"logging.format must be auto, json or console, got {format!r}")
    stream = stream or _CurrentStderr()  # type: ignore[assignment]
    use_console = format == "console" or (format == "auto" and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    _route_stdlib_logging(stream, renderer, shared, _LEVELS[level.lower()])
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.lower()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def _route_stdlib_logging(stream: TextIO, renderer: Any, shared: list[Any], level: int) -> None:
    """Render stdlib `logging` records (transport, service, paho) with the same processors, so the
    journal holds one format whichever module wrote the line."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_mad_handler", False)]:
        root.removeHandler(old)  # configure_logging may run more than once (tests, restarts)
    handler._mad_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class RateLimitedLog:
    """Log `event` at most once per `interval_s` per key; the next one carries `suppressed=N`."""

    def __init__(
        self, logger: Any, interval_s: float = 60.0, now: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.logger, self.interval_s, self.now, self.max_keys = logger, interval_s, now, max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None when `key` had its line less than `interval_s` ago (this one is counted as suppressed);
        otherwise the number suppressed since that line (0 the first time): the caller writes its line."""
        now = self.now()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if len(self._last) >= self.max_keys and key not in self._last:
            self._last.clear()  # bounded: forgetting old keys only risks one extra line each
            self._suppressed.clear()
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def warning(self, key: str, event: str, **fields: Any) -> bool:
        """Returns True when the line was written."""
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        self.logger.warning(event, key=key, suppressed=suppressed, **fields)
        return True
