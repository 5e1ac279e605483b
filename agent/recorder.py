"""Capture live sensor topics into a `recorded.h5` (mad.data.recording), so a plant can replay what it saw.

The paho network thread only enqueues (the agent's `Intake`); the caller's thread decodes with
`agent.wire` and appends with `RecordingWriter`. The recording format holds one contiguous int16
series per sensor, so the recorder places each chunk by its timestamp: a gap is filled with the
chunk's median (counted), an overlap or repeat is trimmed (counted), and a jump of more than
`max_gap_s` or a change of sample rate is refused (counted). Samples outside int16 are refused.

By default each sensor is stored at its own rate, as it arrived (lossless). With `rate_hz` (`mad-agent
record --rate 7680`) every sensor is stored at that rate instead, converted by the agent's own
`peak_hold_resample` (a 1 MHz sensor then takes 130x less disk, and its pulses survive as they do in
the agent). The native series is placed first (gaps, overlaps as above), then converted in blocks of
about one second that end on a common boundary of both grids, so the output bins are exactly those of
one conversion of the whole series (block-wise, only the floor estimate the gate uses is per block).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from agent import wire
from agent.core.types import PrpdFrame, SampleChunk
from agent.intake import Intake, RawMessage
from agent.simulator import BrokerUrl, connect_client, new_client_id
from mad.constants import WINDOW_SECONDS
from mad.data.recording import RecordingWriter
from mad.data.resample import peak_hold_resample

MAX_GAP_S = 60.0
_INT16 = np.iinfo(np.int16)


def check_record_rate(rate_hz: float) -> float:
    """A storage rate must be > 0 and give a whole number of samples per 20 s window (the agent's rule)."""
    if not (np.isfinite(rate_hz) and rate_hz > 0) or (Fraction(rate_hz) * WINDOW_SECONDS).denominator != 1:
        raise ValueError(f"rate_hz={rate_hz!r} must be > 0 and give a whole number of samples per "
                         f"{WINDOW_SECONDS} s window")
    return float(rate_hz)


class _RateConverter:
    """Native samples in, samples at `out_hz` out, through `peak_hold_resample` on aligned blocks.

    q native samples span exactly p output samples (p / q = out_hz / in_hz in lowest terms), so a block
    of k q native samples maps onto k p output bins with the same edges as a single whole-series call.
    Blocks of about a second keep the per-block floor estimate robust and the buffer small.
    """

    def __init__(self, in_hz: float, out_hz: float) -> None:
        ratio = Fraction(out_hz) / Fraction(in_hz)
        self.p, self.q = ratio.numerator, ratio.denominator
        self.block = max(1, round(in_hz) // self.q) * self.q  # ~1 s, a multiple of q
        self._pending: list[np.ndarray] = []
        self._held = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        self._pending.append(samples)
        self._held += samples.size
        if self._held < self.block:
            return np.zeros(0, np.int16)
        return self._convert((self._held // self.q) * self.q)

    def flush(self) -> np.ndarray:
        """The remainder at the end of the recording: its share of output bins, rounded (a tail shorter
        than half an output sample is dropped)."""
        return self._convert(self._held)

    def _convert(self, n_in: int) -> np.ndarray:
        held = np.concatenate(self._pending) if self._pending else np.zeros(0, np.int16)
        block, rest = held[:n_in], held[n_in:]
        self._pending, self._held = ([rest] if rest.size else []), rest.size
        n_out = round(Fraction(n_in * self.p, self.q))  # exact for whole blocks (n_in a multiple of q)
        if n_out == 0:
            return np.zeros(0, np.int16)
        # Every output value is one of the input's samples, so int16 holds it exactly.
        return peak_hold_resample(block, n_out).astype(np.int16)


@dataclass
class _SensorTrack:
    start_ns: int
    sample_rate_hz: float
    power_freq_hz: float
    written: int = 0  # native samples placed = index of the next expected sample
    last_frame_ns: int | None = None
    converter: _RateConverter | None = None  # set when stored at another rate than the sensor's


@dataclass
class RecordReport:
    chunks: Counter = field(default_factory=Counter)  # sensor -> chunks written
    frames: Counter = field(default_factory=Counter)  # sensor -> frames written
    problems: Counter = field(default_factory=Counter)  # reason -> count (rejected or adjusted input)
    gap_samples: int = 0
    trimmed_samples: int = 0


class Recorder:
    """Decode raw messages and append them to a recording; one bad message is counted, never fatal."""

    def __init__(self, writer: RecordingWriter, sensors: set[str] | None = None,
                 topics: wire.Topics | None = None, max_gap_s: float = MAX_GAP_S,
                 rate_hz: float | None = None) -> None:
        self.writer, self.sensors, self.topics, self.max_gap_s = writer, sensors, topics or wire.Topics(), max_gap_s
        self.rate_hz = None if rate_hz is None else check_record_rate(rate_hz)  # None: each sensor's own rate
        self.report = RecordReport()
        self._tracks: dict[str, _SensorTrack] = {}

    def handle(self, message: RawMessage) -> None:
        try:
            item = wire.decode_message(message.topic, message.payload, message.user_properties, topics=self.topics)
        except wire.WireError as error:
            self.report.problems[f"wire:{error.reason}"] += 1
            return
        if self.sensors is not None and item.sensor_id not in self.sensors:
            return
        if isinstance(item, SampleChunk):
            self._chunk(item)
        else:
            self._frame(item)

    def _chunk(self, chunk: SampleChunk) -> None:
        samples = chunk.samples
        if samples.min() < _INT16.min or samples.max() > _INT16.max or (samples.dtype.kind == "f" and not np.all(
                samples == np.round(samples))):
            self.report.problems["not_int16"] += 1
            return
        track = self._tracks.get(chunk.sensor_id) or self._new_track(chunk)
        if track is None:
            return
        if (chunk.sample_rate_hz, chunk.power_freq_hz) != (track.sample_rate_hz, track.power_freq_hz):
            self.report.problems["rate_changed"] += 1
            return
        index = round((chunk.t0_ns - track.start_ns) * track.sample_rate_hz / 1e9)
        gap = index - track.written
        if gap > self.max_gap_s * track.sample_rate_hz:
            self.report.problems["gap_too_large"] += 1
            return
        if gap > 0:
            self._store(chunk.sensor_id, track, np.full(gap, int(np.median(samples)), np.int16))
            self.report.gap_samples += gap
            self.report.problems["gap_filled"] += 1
        elif gap < 0:
            trim = min(-gap, samples.size)
            samples = samples[trim:]
            self.report.trimmed_samples += trim
            self.report.problems["overlap_trimmed"] += 1
            if not samples.size:
                return
        self._store(chunk.sensor_id, track, samples.astype(np.int16))
        track.written += max(gap, 0) + samples.size
        self.report.chunks[chunk.sensor_id] += 1

    def _new_track(self, chunk: SampleChunk) -> _SensorTrack | None:
        converter = None
        if self.rate_hz is not None and chunk.sample_rate_hz != self.rate_hz:
            try:
                check_record_rate(chunk.sample_rate_hz)
            except ValueError:
                self.report.problems["rate_not_convertible"] += 1  # the agent could not window it either
                return None
            converter = _RateConverter(chunk.sample_rate_hz, self.rate_hz)
        track = self._tracks[chunk.sensor_id] = _SensorTrack(chunk.t0_ns, chunk.sample_rate_hz,
                                                             chunk.power_freq_hz, converter=converter)
        stored_hz = chunk.sample_rate_hz if converter is None else self.rate_hz
        self.writer.add_sensor(chunk.sensor_id, sample_rate_hz=stored_hz, start_time_ns=chunk.t0_ns,
                               power_freq_hz=chunk.power_freq_hz)
        return track

    def _store(self, sensor_id: str, track: _SensorTrack, samples: np.ndarray) -> None:
        out = samples if track.converter is None else track.converter.push(samples)
        if out.size:
            self.writer.append_samples(sensor_id, out)

    def flush(self) -> None:
        """Write what the rate converters still hold; call once, before closing the writer."""
        for sensor_id, track in self._tracks.items():
            if track.converter is not None and (out := track.converter.flush()).size:
                self.writer.append_samples(sensor_id, out)

    def _frame(self, frame: PrpdFrame) -> None:
        track = self._tracks.get(frame.sensor_id)
        if track is None:
            self.report.problems["frame_before_samples"] += 1
            return
        if track.last_frame_ns is not None and frame.window_start_ns <= track.last_frame_ns:
            self.report.problems["frame_out_of_order"] += 1
            return
        self.writer.append_prpd_frame(frame.sensor_id, frame.window_start_ns, frame.image)
        track.last_frame_ns = frame.window_start_ns
        self.report.frames[frame.sensor_id] += 1


class RecordSession:
    """Subscribe to the sensor topics and feed a Recorder until `stop` is set or the deadline passes."""

    def __init__(self, broker: BrokerUrl, out: Path, *, sensors: list[str] | None = None,
                 topics: wire.Topics | None = None, overwrite: bool = False, ca_file: Path | None = None,
                 rate_hz: float | None = None) -> None:
        self.topics = topics or wire.Topics()
        self.intake = Intake(max_messages=10_000, max_bytes=256 * 1024 * 1024)
        self.subscribed = threading.Event()
        filters = ([self.topics.for_sensor(kind, s) for s in sensors for kind in ("pd", "prpd")] if sensors
                   else self.topics.subscriptions())
        self._client = connect_client(broker, new_client_id("mad-record"), ca_file)  # no file left if this fails
        try:
            self.writer = RecordingWriter(out, overwrite=overwrite)
        except BaseException:
            self._client.disconnect()
            self._client.loop_stop()
            raise
        self.recorder = Recorder(self.writer, set(sensors) if sensors else None, self.topics, rate_hz=rate_hz)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.subscribe([(topic, 1) for topic in filters])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        props = tuple(getattr(message.properties, "UserProperty", ())) if message.properties is not None else ()
        self.intake.put(RawMessage(message.topic, bytes(message.payload), time.time_ns(), props))

    def run(self, duration_s: float, stop: threading.Event | None = None) -> RecordReport:
        """Record for `duration_s` wall seconds (or until `stop`), then drain and close the file."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration_s
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                for message in self.intake.get_batch(256, timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                    self.recorder.handle(message)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self.intake.close()
            while batch := self.intake.get_batch(1024, timeout=0):
                for message in batch:
                    self.recorder.handle(message)
            self.recorder.flush()
            self.writer.close()
        if self.intake.dropped:
            self.recorder.report.problems["intake_dropped"] += self.intake.dropped
        return self.recorder.report
