"""Per-sensor 20 s tumbling windows in event time, aligned to the epoch.

Every sample gets a global index `window_number * N + round((t - window_start) * rate / 1e9)`
(N = 20 * rate), computed once per chunk in exact integer/fraction arithmetic; the chunk is then
copied into preallocated window buffers by slice. A window closes when the sensor's watermark
(latest sample index seen minus the reorder tolerance) passes its end, when the sensor has been
silent for `idle_close_s` on the injected clock, or when the per-sensor cap on open windows forces
the oldest out. Data for an already-closed window is late: counted and dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from agent.core.clock import Clock, seconds_to_ns
from agent.core.types import SampleChunk
from agent.settings import WindowingSection
from mad.constants import SAMPLE_RATE_HZ, WINDOW_SECONDS

WINDOW_NS = WINDOW_SECONDS * 1_000_000_000
_SEEN_SEQS_KEPT = 4096  # enough to catch MQTT redeliveries without growing forever


class SensorStreamError(ValueError):
    """A chunk this sensor's stream cannot take (rate change, impossible rate); the agent carries on."""


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    sensor_id: str
    window_start_ns: int
    sample_rate_hz: float
    power_freq_hz: float
    samples: np.ndarray  # (20 * rate,) float32 ADC counts, gaps filled
    missing_samples: int  # samples that never arrived (filled with the window median)
    gap_runs: int  # contiguous runs of missing samples

    @property
    def window_end_ns(self) -> int:
        return self.window_start_ns + WINDOW_NS


@dataclass
class WindowingCounters:
    windows_closed: int = 0
    windows_dropped: int = 0  # closed with too many missing samples for the gap policy
    windows_forced: int = 0  # closed early by the open-window cap
    gap_samples: int = 0
    gap_runs: int = 0
    late_samples: int = 0
    duplicate_samples: int = 0
    duplicate_chunks: int = 0
    rejected_chunks: int = 0


@dataclass
class _OpenWindow:
    samples: np.ndarray
    present: np.ndarray


@dataclass
class _SensorStream:
    sample_rate_hz: float
    power_freq_hz: float
    rate: Fraction
    samples_per_window: int
    tolerance_samples: int
    open_windows: dict[int, _OpenWindow] = field(default_factory=dict)
    closed_before: int = 0  # global sample index below which every window is closed
    max_seen_end: int = 0
    last_arrival_ns: int = 0
    seen_seqs: set[int] = field(default_factory=set)
    seen_order: deque[int] = field(default_factory=deque)


def samples_per_window(sample_rate_hz: float) -> int:
    count = Fraction(sample_rate_hz) * WINDOW_SECONDS
    if count.denominator != 1 or count <= 0:
        raise SensorStreamError(
            f"sample_rate_hz={sample_rate_hz} gives a non-integer number of samples per {WINDOW_SECONDS} s window"
        )
    return int(count)


class Windower:
    def __init__(self, config: WindowingSection, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.counters = WindowingCounters()
        self._streams: dict[str, _SensorStream] = {}

    def sensors(self) -> list[str]:
        return list(self._streams)

    def open_window_starts(self, sensor_id: str) -> list[int]:
        stream = self._streams.get(sensor_id)
        if stream is None:
            return []
        return sorted(w * WINDOW_NS for w in stream.open_windows)

    def forget(self, sensor_id: str) -> None:
        """Drop a sensor's stream (open windows included) so it may come back with new parameters."""
        self._streams.pop(sensor_id, None)

    def add(self, chunk: SampleChunk) -> list[ClosedWindow]:
        """Place `chunk` and return the windows it closed, oldest first. Raises SensorStreamError."""
        stream = self._stream_for(chunk)
        stream.last_arrival_ns = self.clock.now_ns()
        if chunk.seq in stream.seen_seqs:
            self.counters.duplicate_chunks += 1
            self.counters.duplicate_samples += chunk.n
            return []
        self._remember_seq(stream, chunk.seq)
        if chunk.n == 0:
            return []

        n_per_window = stream.samples_per_window
        first_window, offset_ns = divmod(chunk.t0_ns, WINDOW_NS)
        start = first_window * n_per_window + round(Fraction(offset_ns) * stream.rate / 1_000_000_000)
        end = start + chunk.n
        samples = np.asarray(chunk.samples)

        if start < stream.closed_before:
            late = min(end, stream.closed_before) - start
            self.counters.late_samples += late
            samples = samples[late:]
            start += late
        for window_number in range(start // n_per_window, (end - 1) // n_per_window + 1) if start < end else ():
            window_first = window_number * n_per_window
            lo, hi = max(start, window_first), min(end, window_first + n_per_window)
            window = stream.open_windows.get(window_number)
            if window is None:
                window = _OpenWindow(np.zeros(n_per_window, np.float32), np.zeros(n_per_window, bool))
                stream.open_windows[window_number] = window
            present = window.present[lo - window_first : hi - window_first]
            self.counters.duplicate_samples += int(np.count_nonzero(present))
            # First arrival wins: a duplicate never overwrites what is already there.
            np.copyto(
                window.samples[lo - window_first : hi - window_first],
                samples[lo - start : hi - start],
                where=~present,
                casting="unsafe",
            )
            present[:] = True
        stream.max_seen_end = max(stream.max_seen_end, end)
        return self._close_ready(chunk.sensor_id, stream)

    def close_idle(self) -> list[ClosedWindow]:
        """Close every open window of sensors silent for `idle_close_s` on the clock."""
        now = self.clock.now_ns()
        idle_ns = seconds_to_ns(self.config.idle_close_s)
        closed: list[ClosedWindow] = []
        for sensor_id, stream in self._streams.items():
            if stream.open_windows and now - stream.last_arrival_ns >= idle_ns:
                closed += self._close_through(sensor_id, stream, max(stream.open_windows))
        return closed

    def close_all(self) -> list[ClosedWindow]:
        """End of a replay or shutdown: close everything still open."""
        closed: list[ClosedWindow] = []
        for sensor_id, stream in self._streams.items():
            if stream.open_windows:
                closed += self._close_through(sensor_id, stream, max(stream.open_windows))
        return closed

    def _stream_for(self, chunk: SampleChunk) -> _SensorStream:
        stream = self._streams.get(chunk.sensor_id)
        if stream is not None:
            if (chunk.sample_rate_hz, chunk.power_freq_hz) != (stream.sample_rate_hz, stream.power_freq_hz):
                self.counters.rejected_chunks += 1
                raise SensorStreamError(
                    f"sensor {chunk.sensor_id!r} changed stream parameters mid-stream: "
                    f"sample_rate_hz {stream.sample_rate_hz} -> {chunk.sample_rate_hz}, "
                    f"power_freq_hz {stream.power_freq_hz} -> {chunk.power_freq_hz}"
                )
            return stream
        try:
            n_per_window = samples_per_window(chunk.sample_rate_hz)
        except SensorStreamError:
            self.counters.rejected_chunks += 1
            raise
        if self.config.off_rate_policy == "reject" and chunk.sample_rate_hz != SAMPLE_RATE_HZ:
            self.counters.rejected_chunks += 1
            raise SensorStreamError(
                f"sensor {chunk.sensor_id!r}: sample_rate_hz={chunk.sample_rate_hz} is not the model's "
                f"{SAMPLE_RATE_HZ} Hz and windowing.off_rate_policy is 'reject'"
            )
        rate = Fraction(chunk.sample_rate_hz)
        stream = _SensorStream(
            sample_rate_hz=chunk.sample_rate_hz,
            power_freq_hz=chunk.power_freq_hz,
            rate=rate,
            samples_per_window=n_per_window,
            tolerance_samples=round(Fraction(self.config.reorder_tolerance_s) * rate),
        )
        self._streams[chunk.sensor_id] = stream
        return stream

    @staticmethod
    def _remember_seq(stream: _SensorStream, seq: int) -> None:
        stream.seen_seqs.add(seq)
        stream.seen_order.append(seq)
        if len(stream.seen_order) > _SEEN_SEQS_KEPT:
            stream.seen_seqs.discard(stream.seen_order.popleft())

    def _close_ready(self, sensor_id: str, stream: _SensorStream) -> list[ClosedWindow]:
        watermark = stream.max_seen_end - stream.tolerance_samples
        ready = [w for w in stream.open_windows if (w + 1) * stream.samples_per_window <= watermark]
        closed = self._close_through(sensor_id, stream, max(ready)) if ready else []
        while len(stream.open_windows) > self.config.max_open_windows:
            self.counters.windows_forced += 1
            closed += self._close_through(sensor_id, stream, min(stream.open_windows))
        return closed

    def _close_through(self, sensor_id: str, stream: _SensorStream, last_window: int) -> list[ClosedWindow]:
        closed = []
        for window_number in sorted(w for w in stream.open_windows if w <= last_window):
            window = stream.open_windows.pop(window_number)
            result = self._finish(sensor_id, stream, window_number, window)
            if result is not None:
                closed.append(result)
        stream.closed_before = max(stream.closed_before, (last_window + 1) * stream.samples_per_window)
        return closed

    def _finish(
        self, sensor_id: str, stream: _SensorStream, window_number: int, window: _OpenWindow
    ) -> ClosedWindow | None:
        missing_mask = ~window.present
        missing = int(np.count_nonzero(missing_mask))
        runs = int(missing_mask[0]) + int(np.count_nonzero(missing_mask[1:] & ~missing_mask[:-1]))
        self.counters.gap_samples += missing
        self.counters.gap_runs += runs
        if missing and (
            self.config.gap_policy == "drop" or missing > self.config.max_missing_fraction * stream.samples_per_window
        ):
            self.counters.windows_dropped += 1
            return None
        if missing:
            # The median keeps the robust per-window normalisation unchanged by the filler.
            window.samples[missing_mask] = np.median(window.samples[window.present])
        self.counters.windows_closed += 1
        return ClosedWindow(
            sensor_id=sensor_id,
            window_start_ns=window_number * WINDOW_NS,
            sample_rate_hz=stream.sample_rate_hz,
            power_freq_hz=stream.power_freq_hz,
            samples=window.samples,
            missing_samples=missing,
            gap_runs=runs,
        )
