"""Time for the core comes from here: a monotonic clock live, a manual one in replay and tests."""

from __future__ import annotations

import time
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    """Anything with `now_ns()`. The core only measures intervals (idle, grace, max wait, stale)."""

    def now_ns(self) -> int: ...


class MonotonicClock:
    """Live clock: monotonic so NTP steps on the substation host never fire or freeze timers."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock that moves only when told to: replay sets it from event time, tests step it."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = int(start_ns)

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        self._now_ns += round(seconds * NS_PER_S)

    def set_ns(self, now_ns: int) -> None:
        """Move to `now_ns`; a step backwards is ignored so timers stay monotonic."""
        self._now_ns = max(self._now_ns, int(now_ns))


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)
