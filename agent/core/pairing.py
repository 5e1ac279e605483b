"""Pair each closed window with its PRPD frame by timestamp, waiting up to a grace period.

A sensor's windows leave in window order: a window whose frame arrived waits behind an older one
still in its grace period, so the alarm state machine always sees windows in order. Without a
frame the window goes on signal-only or with a PRPD rendered from its own samples, marked degraded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from agent.core.clock import Clock, seconds_to_ns
from agent.core.types import PrpdFrame
from agent.core.windowing import ClosedWindow
from agent.settings import PairingSection
from mad.constants import SAMPLE_RATE_HZ

Renderer = Callable[[np.ndarray, float, float], np.ndarray]


@dataclass(frozen=True, slots=True)
class ReadyWindow:
    """A window ready for the model: signal (20, 7680) float32, image uint8 (256,256,3) or None."""

    window: ClosedWindow
    signal: np.ndarray
    activity: float
    image: np.ndarray | None = None
    degraded_reasons: tuple[str, ...] = ()


@dataclass
class PairingCounters:
    frames_paired: int = 0
    frames_paired_matrix: int = 0  # of frames_paired: count matrices the agent drew itself
    frames_orphaned: int = 0  # arrived after their window left, or evicted unused
    windows_without_frame: int = 0
    render_failures: int = 0


@dataclass
class _Pending:
    ready: ReadyWindow
    deadline_ns: int
    frame: PrpdFrame | None = None


@dataclass
class _SensorPairing:
    pending: deque[_Pending] = field(default_factory=deque)
    frames: deque[PrpdFrame] = field(default_factory=deque)
    released_through_ns: int = -1  # window start of the last window that left


def default_renderer(series: np.ndarray, sample_rate_hz: float, power_freq_hz: float) -> np.ndarray:
    from mad.data.prpd import render_prpd_from_series  # the one PRPD renderer, shared with the generator

    return render_prpd_from_series(series, sample_rate_hz, power_freq_hz)


class Pairer:
    def __init__(self, config: PairingSection, clock: Clock, renderer: Renderer | None = None) -> None:
        self.config = config
        self.clock = clock
        self.renderer = renderer or default_renderer
        self.counters = PairingCounters()
        self._tolerance_ns = seconds_to_ns(config.tolerance_s)
        self._sensors: dict[str, _SensorPairing] = {}

    def add_window(self, ready: ReadyWindow) -> list[ReadyWindow]:
        sensor = self._sensors.setdefault(ready.window.sensor_id, _SensorPairing())
        entry = _Pending(ready, self.clock.now_ns() + seconds_to_ns(self.config.grace_s))
        for frame in list(sensor.frames):
            if self._matches(frame, ready.window):
                sensor.frames.remove(frame)
                entry.frame = frame
                break
        sensor.pending.append(entry)
        return self._release(sensor, force=False)

    def add_frame(self, frame: PrpdFrame) -> list[ReadyWindow]:
        sensor = self._sensors.setdefault(frame.sensor_id, _SensorPairing())
        for entry in sensor.pending:
            if entry.frame is None and self._matches(frame, entry.ready.window):
                entry.frame = frame
                return self._release(sensor, force=False)
        if frame.window_start_ns <= sensor.released_through_ns + self._tolerance_ns:
            self.counters.frames_orphaned += 1  # its window already went on without it
            return []
        sensor.frames.append(frame)  # early: its window has not closed yet
        while len(sensor.frames) > self.config.max_frames_per_sensor:
            sensor.frames.popleft()
            self.counters.frames_orphaned += 1
        return []

    def expire(self) -> list[ReadyWindow]:
        """Release windows whose grace period is over (with or without a frame)."""
        released: list[ReadyWindow] = []
        for sensor in self._sensors.values():
            released += self._release(sensor, force=False)
        return released

    def release_all(self) -> list[ReadyWindow]:
        released: list[ReadyWindow] = []
        for sensor in self._sensors.values():
            released += self._release(sensor, force=True)
        return released

    def pending_count(self) -> int:
        return sum(len(sensor.pending) for sensor in self._sensors.values())

    def _matches(self, frame: PrpdFrame, window: ClosedWindow) -> bool:
        return abs(frame.window_start_ns - window.window_start_ns) <= self._tolerance_ns

    def _release(self, sensor: _SensorPairing, force: bool) -> list[ReadyWindow]:
        now = self.clock.now_ns()
        released = []
        while sensor.pending:
            head = sensor.pending[0]
            if head.frame is None and not force and now < head.deadline_ns:
                break
            sensor.pending.popleft()
            sensor.released_through_ns = max(sensor.released_through_ns, head.ready.window.window_start_ns)
            released.append(self._complete(head))
        # frames for windows that have left can never pair now
        while sensor.frames and sensor.frames[0].window_start_ns <= sensor.released_through_ns + self._tolerance_ns:
            sensor.frames.popleft()
            self.counters.frames_orphaned += 1
        return released

    def _complete(self, entry: _Pending) -> ReadyWindow:
        ready = entry.ready
        if entry.frame is not None:
            self.counters.frames_paired += 1
            self.counters.frames_paired_matrix += int(entry.frame.source == "matrix")
            return replace(ready, image=entry.frame.image)
        self.counters.windows_without_frame += 1
        if self.config.missing_policy == "signal_only":
            return replace(ready, degraded_reasons=(*ready.degraded_reasons, "prpd_missing:signal_only"))
        try:
            image = self.renderer(ready.signal, float(SAMPLE_RATE_HZ), ready.window.power_freq_hz)
        except Exception:  # a renderer bug must not stop the window: fall back to signal-only
            self.counters.render_failures += 1
            return replace(ready, degraded_reasons=(*ready.degraded_reasons, "prpd_missing:render_failed"))
        return replace(ready, image=image, degraded_reasons=(*ready.degraded_reasons, "prpd_missing:rendered"))
