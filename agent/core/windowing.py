"""Per-sensor 20 s tumbling windows in event time, aligned to the epoch.

Every sample gets a global index `window_number * N + round((t - window_start) * rate / 1e9)`
(N = 20 * rate), computed once per chunk in exact integer/fraction arithmetic; the chunk is then
copied into preallocated window buffers by slice. A window closes when the sensor's watermark
(latest sample index seen minus the reorder tolerance) passes its end, when the sensor has been
silent for `idle_close_s` on the injected clock, or when the per-sensor cap on open windows forces
the oldest out. Data for an already-closed window is late: counted and dropped.

Memory is bounded by configuration, never by what a chunk claims (`limits.*`, docs/agent-config.md):
- a sensor's stream (sample rate, power frequency, sample dtype) is admitted before anything is set
  aside for it; a window is allocated only when a chunk's samples land in it;
- an open window holds its samples in the sensor's own dtype (int16 for PD sensors) plus a 1-byte
  presence mask; a sensor holds at most min(`max_open_windows`, `max_window_bytes_per_sensor` //
  window bytes) open windows, all sensors together at most `max_window_bytes_total` bytes: making room
  closes the sensor's oldest window early (`windows_forced`); a stream whose one window does not fit its
  budget is refused (`window_too_large`), a chunk that finds the shared budget spent (`memory_budget`);
- a chunk may touch at most `max_open_windows` windows (`chunk_too_long`), so one message can never
  make more windows (each one a model input and a model call) than a sensor may hold open;
- a chunk with other stream parameters starts a new stream: the current stream's windows close first
  (judged by the gap policy like any other), the new stream's windows start with the next window, counted
  in `streams_changed`; more than `max_stream_changes_per_minute` changes a minute are refused
  (`stream_change_limit`) and the current stream carries on.
Every check runs before any state changes, so a refused chunk leaves its sensor as it was.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from agent.core.clock import Clock, seconds_to_ns
from agent.core.types import SampleChunk
from agent.settings import LimitsSection, WindowingSection
from mad.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES, WINDOW_SECONDS

WINDOW_NS = WINDOW_SECONDS * 1_000_000_000
_SEEN_SEQS_KEPT = 4096  # enough to catch MQTT redeliveries without growing forever
_CHANGE_PERIOD_NS = 60 * 1_000_000_000  # limits.max_stream_changes_per_minute counts over this
_FILL_MEDIAN_SAMPLES = 1 << 20  # the gap filler's median is taken over at most ~this many present samples
# The wire's sample dtypes are kept as they come; anything else (float64 from a test or a replay) as float32.
_STORED_DTYPES = frozenset(np.dtype(name) for name in ("i1", "u1", "i2", "u2", "i4", "f4"))


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a sensor's open windows hold its samples in: its own, when it is one of the wire's."""
    native = np.dtype(dtype).newbyteorder("=")
    return native if native in _STORED_DTYPES else np.dtype(np.float32)


class SensorStreamError(ValueError):
    """A chunk this sensor's stream cannot take; `reason` is its rejection code (docs/mqtt.md). The agent
    carries on, and the sensor's stream is left as it was."""

    def __init__(self, message: str, reason: str = "stream_error") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    sensor_id: str
    window_start_ns: int
    sample_rate_hz: float
    power_freq_hz: float
    # (20 * rate,) ADC counts, gaps filled: float32 up to the model's rate (7,680 Hz); a faster sensor's
    # window keeps its own dtype (int16: half the bytes) until `to_model_signal` resamples it to float32.
    samples: np.ndarray
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
    streams_changed: int = 0  # a sensor's rate, power frequency or dtype changed: new stream (module docstring)
    open_window_bytes: int = 0  # now, all sensors: at most limits.max_window_bytes_total


@dataclass
class _OpenWindow:
    samples: np.ndarray
    present: np.ndarray


@dataclass
class _SensorStream:
    sample_rate_hz: float
    power_freq_hz: float
    dtype: np.dtype
    rate: Fraction
    samples_per_window: int
    tolerance_samples: int
    window_bytes: int  # one open window: samples + presence mask
    open_windows: dict[int, _OpenWindow] = field(default_factory=dict)
    closed_before: int = 0  # global sample index below which every window is closed
    max_seen_end: int = 0
    last_arrival_ns: int = 0
    seen_seqs: set[int] = field(default_factory=set)
    seen_order: deque[int] = field(default_factory=deque)

    def matches(self, chunk: SampleChunk, dtype: np.dtype) -> bool:
        return (chunk.sample_rate_hz, chunk.power_freq_hz, dtype) == (self.sample_rate_hz, self.power_freq_hz,
                                                                      self.dtype)

    @property
    def held_bytes(self) -> int:
        return len(self.open_windows) * self.window_bytes


def samples_per_window(sample_rate_hz: float) -> int:
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise SensorStreamError(f"sample_rate_hz={sample_rate_hz} is not a finite rate > 0", "bad_sample_rate")
    count = Fraction(sample_rate_hz) * WINDOW_SECONDS
    if count.denominator != 1 or count <= 0:
        raise SensorStreamError(
            f"sample_rate_hz={sample_rate_hz} gives a non-integer number of samples per {WINDOW_SECONDS} s window",
            "bad_sample_rate",
        )
    return int(count)


class Windower:
    def __init__(self, config: WindowingSection, clock: Clock, limits: LimitsSection | None = None) -> None:
        self.config = config
        self.clock = clock
        self.limits = limits if limits is not None else LimitsSection()
        self.counters = WindowingCounters()
        self._streams: dict[str, _SensorStream] = {}
        self._changes: dict[str, deque[int]] = {}  # per sensor: clock times of its recent stream changes

    def sensors(self) -> list[str]:
        return list(self._streams)

    def open_window_starts(self, sensor_id: str) -> list[int]:
        stream = self._streams.get(sensor_id)
        if stream is None:
            return []
        return sorted(w * WINDOW_NS for w in stream.open_windows)

    def forget(self, sensor_id: str) -> None:
        """Drop a sensor's stream (open windows included) so it may come back with new parameters."""
        stream = self._streams.pop(sensor_id, None)
        if stream is not None:
            self._release(stream, len(stream.open_windows))
        self._changes.pop(sensor_id, None)

    @property
    def held_bytes(self) -> int:
        """Bytes held by every open window now (never above limits.max_window_bytes_total)."""
        return self.counters.open_window_bytes

    def add(self, chunk: SampleChunk) -> list[ClosedWindow]:
        """Place `chunk` and return the windows it closed, oldest first. Raises SensorStreamError."""
        current = self._streams.get(chunk.sensor_id)
        dtype = storage_dtype(np.asarray(chunk.samples).dtype)
        changing = current is not None and not current.matches(chunk, dtype)
        stream = current if current is not None and not changing else self._admit(chunk, dtype, current)
        n_per_window = stream.samples_per_window
        first_window, offset_ns = divmod(chunk.t0_ns, WINDOW_NS)
        start = first_window * n_per_window + round(Fraction(offset_ns) * stream.rate / 1_000_000_000)
        end = start + chunk.n
        cap = self._check_budget(chunk, stream, current, start, end)
        now = self.clock.now_ns()
        if changing:
            self._check_change_rate(chunk, current, now)
        # -- every check passed: from here on the chunk is accepted --
        closed: list[ClosedWindow] = []
        if changing:
            closed += self._close_through(chunk.sensor_id, current, max(current.open_windows, default=-1))
            self._changes.setdefault(chunk.sensor_id, deque()).append(now)
            self.counters.streams_changed += 1
        self._streams[chunk.sensor_id] = stream
        stream.last_arrival_ns = now
        if chunk.seq in stream.seen_seqs:
            self.counters.duplicate_chunks += 1
            self.counters.duplicate_samples += chunk.n
            return closed
        self._remember_seq(stream, chunk.seq)
        if chunk.n == 0:
            return closed

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
                if not self._make_room(chunk.sensor_id, stream, window_number, cap, closed):
                    self.counters.late_samples += hi - lo  # older than every open window and no room for it
                    continue
                window = _OpenWindow(np.zeros(n_per_window, stream.dtype), np.zeros(n_per_window, bool))
                stream.open_windows[window_number] = window
                self.counters.open_window_bytes += stream.window_bytes
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
        return closed + self._close_ready(chunk.sensor_id, stream)

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

    def _refuse(self, message: str, reason: str) -> SensorStreamError:
        self.counters.rejected_chunks += 1
        return SensorStreamError(message, reason)

    def _admit(self, chunk: SampleChunk, dtype: np.dtype, previous: _SensorStream | None) -> _SensorStream:
        """A new stream for `chunk`'s parameters, not yet registered: nothing is allocated here."""
        try:
            n_per_window = samples_per_window(chunk.sample_rate_hz)
        except SensorStreamError:
            self.counters.rejected_chunks += 1
            raise
        if self.config.off_rate_policy == "reject" and chunk.sample_rate_hz != SAMPLE_RATE_HZ:
            raise self._refuse(
                f"sensor {chunk.sensor_id!r}: sample_rate_hz={chunk.sample_rate_hz} is not the model's "
                f"{SAMPLE_RATE_HZ} Hz and windowing.off_rate_policy is 'reject'",
                "bad_sample_rate",
            )
        window_bytes = n_per_window * (dtype.itemsize + 1)
        budget = min(self.limits.max_window_bytes_per_sensor, self.limits.max_window_bytes_total)
        if window_bytes > budget:
            raise self._refuse(
                f"sensor {chunk.sensor_id!r}: one window at {chunk.sample_rate_hz} Hz {dtype.name} takes "
                f"{window_bytes} bytes, more than limits.max_window_bytes_per_sensor={budget}",
                "window_too_large",
            )
        rate = Fraction(chunk.sample_rate_hz)
        closed_before = 0
        if previous is not None:
            # The previous stream's windows all close at the change; the new one starts after the last of them.
            n_old = previous.samples_per_window
            next_window = max(-(-previous.closed_before // n_old), max(previous.open_windows, default=-1) + 1)
            closed_before = next_window * n_per_window
        return _SensorStream(
            sample_rate_hz=chunk.sample_rate_hz,
            power_freq_hz=chunk.power_freq_hz,
            dtype=dtype,
            rate=rate,
            samples_per_window=n_per_window,
            tolerance_samples=round(Fraction(self.config.reorder_tolerance_s) * rate),
            window_bytes=window_bytes,
            closed_before=closed_before,
            max_seen_end=closed_before,
        )

    def _check_budget(
        self, chunk: SampleChunk, stream: _SensorStream, current: _SensorStream | None, start: int, end: int
    ) -> int:
        """How many windows `stream` may hold open for this chunk; raises when the chunk cannot be placed."""
        n_per_window = stream.samples_per_window
        if end > start and (end - 1) // n_per_window - start // n_per_window + 1 > self.config.max_open_windows:
            raise self._refuse(
                f"sensor {chunk.sensor_id!r}: {chunk.n} samples at {chunk.sample_rate_hz} Hz span "
                f"{((end - 1) // n_per_window - start // n_per_window + 1)} windows, more than "
                f"windowing.max_open_windows={self.config.max_open_windows}",
                "chunk_too_long",
            )
        # A changing stream's windows all close before the new one allocates: they do not count against it.
        others = self.counters.open_window_bytes - (current.held_bytes if current is not None else 0)
        cap = min(
            self.config.max_open_windows,
            self.limits.max_window_bytes_per_sensor // stream.window_bytes,
            max(0, self.limits.max_window_bytes_total - others) // stream.window_bytes,
        )
        lo = max(start, stream.closed_before)
        needs_window = lo < end and any(
            w not in stream.open_windows for w in range(lo // n_per_window, (end - 1) // n_per_window + 1)
        )
        if cap == 0 and needs_window:
            raise self._refuse(
                f"sensor {chunk.sensor_id!r}: limits.max_window_bytes_total={self.limits.max_window_bytes_total} "
                f"is taken by other sensors' open windows ({others} bytes); a window here needs "
                f"{stream.window_bytes}",
                "memory_budget",
            )
        return cap

    def _check_change_rate(self, chunk: SampleChunk, current: _SensorStream, now: int) -> None:
        recent = self._changes.setdefault(chunk.sensor_id, deque())
        while recent and now - recent[0] >= _CHANGE_PERIOD_NS:
            recent.popleft()
        limit = self.limits.max_stream_changes_per_minute
        if len(recent) >= limit:
            raise self._refuse(
                f"sensor {chunk.sensor_id!r} changed stream parameters mid-stream "
                f"(sample_rate_hz {current.sample_rate_hz} -> {chunk.sample_rate_hz}, power_freq_hz "
                f"{current.power_freq_hz} -> {chunk.power_freq_hz}, dtype {current.dtype.name} -> "
                f"{storage_dtype(np.asarray(chunk.samples).dtype).name}) more than "
                f"limits.max_stream_changes_per_minute={limit} times in a minute; the current stream carries on",
                "stream_change_limit",
            )

    def _make_room(
        self, sensor_id: str, stream: _SensorStream, window_number: int, cap: int, closed: list[ClosedWindow]
    ) -> bool:
        """Close the sensor's oldest windows until a new one fits `cap`; False if only newer ones are open."""
        while len(stream.open_windows) >= cap:
            oldest = min(stream.open_windows)
            if oldest > window_number:
                return False
            self.counters.windows_forced += 1
            closed += self._close_through(sensor_id, stream, oldest)
        return True

    def _release(self, stream: _SensorStream, windows: int) -> None:
        self.counters.open_window_bytes -= windows * stream.window_bytes

    @staticmethod
    def _remember_seq(stream: _SensorStream, seq: int) -> None:
        stream.seen_seqs.add(seq)
        stream.seen_order.append(seq)
        if len(stream.seen_order) > _SEEN_SEQS_KEPT:
            stream.seen_seqs.discard(stream.seen_order.popleft())

    def _close_ready(self, sensor_id: str, stream: _SensorStream) -> list[ClosedWindow]:
        watermark = stream.max_seen_end - stream.tolerance_samples
        ready = [w for w in stream.open_windows if (w + 1) * stream.samples_per_window <= watermark]
        return self._close_through(sensor_id, stream, max(ready)) if ready else []

    def _close_through(self, sensor_id: str, stream: _SensorStream, last_window: int) -> list[ClosedWindow]:
        closed = []
        for window_number in sorted(w for w in stream.open_windows if w <= last_window):
            window = stream.open_windows.pop(window_number)
            self._release(stream, 1)
            result = self._finish(sensor_id, stream, window_number, window)
            if result is not None:
                closed.append(result)
        stream.closed_before = max(stream.closed_before, (last_window + 1) * stream.samples_per_window)
        return closed

    def _finish(
        self, sensor_id: str, stream: _SensorStream, window_number: int, window: _OpenWindow
    ) -> ClosedWindow | None:
        n = stream.samples_per_window
        missing = n - int(np.count_nonzero(window.present))
        runs = 0
        if missing:
            missing_mask = ~window.present
            runs = int(missing_mask[0]) + int(np.count_nonzero(missing_mask[1:] & window.present[:-1]))
        self.counters.gap_samples += missing
        self.counters.gap_runs += runs
        if missing and (self.config.gap_policy == "drop" or missing > self.config.max_missing_fraction * n):
            self.counters.windows_dropped += 1
            return None
        samples = window.samples
        if missing:
            # The median keeps the robust per-window normalisation unchanged by the filler; over an even
            # subsample of a large window (the gap policy keeps at least 95 % present by default) it costs
            # ~20 ms at 2 MHz instead of ~0.5 s.
            step = max(1, n // _FILL_MEDIAN_SAMPLES)
            present = samples[::step][window.present[::step]]
            fill = np.median(present if present.size else samples[window.present])
            samples[missing_mask] = np.rint(fill) if samples.dtype.kind in "iu" else fill
        if n <= WINDOW_SAMPLES and samples.dtype != np.float32:
            samples = samples.astype(np.float32)  # the model's rate or slower: at most 600 KB, what the model takes
        self.counters.windows_closed += 1
        return ClosedWindow(
            sensor_id=sensor_id,
            window_start_ns=window_number * WINDOW_NS,
            sample_rate_hz=stream.sample_rate_hz,
            power_freq_hz=stream.power_freq_hz,
            samples=samples,
            missing_samples=missing,
            gap_runs=runs,
        )
