"""Synthetic PD sensors on the wire: the demo source and the load generator for `mad-agent simulate`.

Each sensor streams `chunk_s` chunks of 7,680 samples/s (the wire's PD chunk) and, when a 20 s window
ends, one PRPD frame: a PNG rendered by the generator for that window, or (`prpd_format="matrix"`) a
count matrix of the window's pulses, as many instruments export it. Faults follow the same schedule
JSON as `mad-train synth-recording` (its parser is reused). Event time starts at a window boundary
and runs `speed` times faster than the wall clock; the agent's core only uses event time.

Windows come from `mad.data.synthetic.generate_stream_segment` (about 4 ms each plus 8-40 ms of PNG
encoding), or, with `pool=N`, from N windows per class generated once and cycled: one process can
then feed hundreds of sensors, at the price of repeating data (fine for load, not for accuracy).
"""

from __future__ import annotations

import math
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from mad.constants import DEFAULT_POWER_FREQ_HZ, SAMPLE_RATE_HZ, WINDOW_SECONDS
from mad.data.prpd import FULL_SCALE_HEADROOM, MIN_FULL_SCALE_SIGMA, detect_pulses, noise_floor
from mad.data.schedule import ScheduleError, default_schedule, parse_schedule, sensor_steps, state_at
from mad.data.synthetic import PRESETS, generate_stream_segment

WINDOW_NS = WINDOW_SECONDS * 1_000_000_000
POOL_INTENSITY = 0.8  # pooled windows ignore the schedule's intensity ramp
PRPD_FORMATS = ("png", "matrix")
DEFAULT_MATRIX_BINS = (128, 64)  # phase x amplitude: a common instrument export


class SimulationError(ValueError):
    """Bad simulator input (URL, schedule, durations); the message names the argument and value."""


# ---------------------------------------------------------------- broker URL


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://[user[:password]@]host[:port]` (default 1883) or `mqtts://...` (TLS, default 8883)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        raise SimulationError(f"--broker {url!r}: scheme must be mqtt:// or mqtts://")
    try:
        port = parsed.port
    except ValueError:
        raise SimulationError(f"--broker {url!r}: port must be 1..65535") from None
    if not parsed.hostname:
        raise SimulationError(f"--broker {url!r}: no host")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise SimulationError(f"--broker {url!r}: no path, query or fragment allowed")
    tls = parsed.scheme == "mqtts"
    return BrokerUrl(parsed.hostname, port or (8883 if tls else 1883), tls,
                     urllib.parse.unquote(parsed.username) if parsed.username else None,
                     urllib.parse.unquote(parsed.password) if parsed.password else None)


def connect_client(broker: BrokerUrl, client_id: str, ca_file: Path | None = None,
                   timeout_s: float = 10.0) -> mqtt.Client:
    """A started paho client, connected (or SimulationError naming the broker)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as error:
        raise SimulationError(f"broker {broker.host}:{broker.port}: cannot connect ({error})") from None
    client.loop_start()
    if not connected.wait(timeout_s) or refused:
        client.loop_stop()
        raise SimulationError(f"broker {broker.host}:{broker.port}: no CONNACK in {timeout_s}s"
                              if not refused else f"broker {broker.host}:{broker.port}: refused: {refused[0]}")
    return client


# ---------------------------------------------------------------- schedule and windows


def load_schedule(raw: object | None, sensors: int, duration_s: float) -> dict[int, list[dict]]:
    """The synth-recording schedule ({sensor index: [{from_min, label, intensity?, to_intensity?}]})."""
    if raw is None:
        raw = default_schedule(sensors)
    try:
        return parse_schedule(raw, sensors)
    except ScheduleError as exc:
        raise SimulationError(str(exc)) from None


@dataclass(frozen=True)
class SimulatedWindow:
    series: np.ndarray  # (20, 7680) int16
    png: bytes | None  # the generator's PRPD image (prpd_format "png")
    label: int
    counts: np.ndarray | None = None  # (n_phase, n_amp) pulse counts (prpd_format "matrix")
    full_scale: float = 0.0  # upper edge of the matrix's linear amplitude axis, ADC counts above baseline


def prpd_counts(
    series: np.ndarray, power_freq_hz: float, n_phase: int, n_amp: int
) -> tuple[np.ndarray, float]:
    """A window's pulses as an instrument's count matrix: (n_phase, n_amp) counts and the full scale.

    The pulses are the renderer's own (`detect_pulses`), phase 0 at the window's first sample as in
    the generator's images; the linear amplitude axis runs to the window's own maximum (with the
    renderer's headroom and 50-sigma minimum), as instruments with an auto range do.
    """
    flat = np.asarray(series).reshape(-1)
    _, sigma = noise_floor(flat)
    index, amplitude = detect_pulses(flat)
    top = FULL_SCALE_HEADROOM * float(amplitude.max()) if amplitude.size else 0.0
    full_scale = max(top, MIN_FULL_SCALE_SIGMA * sigma)
    phase = np.mod(index * (power_freq_hz / SAMPLE_RATE_HZ), 1.0)
    phase_bin = np.minimum((phase * n_phase).astype(np.int64), n_phase - 1)
    amp_bin = np.clip((amplitude / full_scale * n_amp).astype(np.int64), 0, n_amp - 1)
    counts = np.bincount(phase_bin * n_amp + amp_bin, minlength=n_phase * n_amp).reshape(n_phase, n_amp)
    dtype = np.uint16 if counts.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    return counts.astype(dtype), full_scale


class WindowSource:
    """Windows per (sensor, window index): fresh from the generator, or cycled from a per-class pool."""

    def __init__(self, preset: str, seed: int, power_freq_hz: float, pool: int = 0, prpd_format: str = "png",
                 matrix_bins: tuple[int, int] = DEFAULT_MATRIX_BINS) -> None:
        if preset not in PRESETS:
            raise SimulationError(f"preset {preset!r}: expected one of {sorted(PRESETS)}")
        if pool < 0:
            raise SimulationError(f"pool={pool}: must be >= 0 (0 = no pool)")
        if prpd_format not in PRPD_FORMATS:
            raise SimulationError(f"prpd_format={prpd_format!r}: expected one of {list(PRPD_FORMATS)}")
        limits = wire.DEFAULT_LIMITS
        if len(matrix_bins) != 2 or not all(limits.min_matrix_bins <= b <= limits.max_matrix_bins
                                            for b in matrix_bins):
            raise SimulationError(f"matrix_bins={matrix_bins!r}: expected (phase, amplitude) bins, each "
                                  f"{limits.min_matrix_bins}..{limits.max_matrix_bins}")
        self.preset, self.seed, self.power_freq_hz, self.pool = preset, seed, power_freq_hz, pool
        self.prpd_format, self.matrix_bins = prpd_format, (int(matrix_bins[0]), int(matrix_bins[1]))
        self._pools: dict[int, list[SimulatedWindow]] = {}

    def window(self, sensor_index: int, window_index: int, label: int, intensity: float) -> SimulatedWindow:
        if self.pool:
            windows = self._pools.get(label)
            if windows is None:
                windows = self._pools[label] = [self._make(j, 0, label, POOL_INTENSITY) for j in range(self.pool)]
            return windows[(sensor_index + window_index) % self.pool]
        return self._make(sensor_index, window_index, label, intensity)

    def _make(self, sensor_index: int, window_index: int, label: int, intensity: float) -> SimulatedWindow:
        window = generate_stream_segment(self.preset, self.seed, sensor_index, window_index, label, intensity,
                                         self.power_freq_hz)
        if self.prpd_format == "matrix":  # no PNG to encode: the agent draws the matrix itself
            counts, full_scale = prpd_counts(window.series, self.power_freq_hz, *self.matrix_bins)
            return SimulatedWindow(window.series, None, label, counts, full_scale)
        return SimulatedWindow(window.series, wire.image_to_png(window.image), label)


# ---------------------------------------------------------------- the message plan


@dataclass(frozen=True)
class SimulationConfig:
    sensors: int
    duration_s: float  # event-time seconds of stream per sensor
    schedule: dict[int, list[dict]]
    start_ns: int  # event time of the stream's start; chunks stay on a grid aligned to the 20 s windows
    speed: float = 1.0
    chunk_s: float = 1.0
    seed: int = 0
    preset: str = "standard"
    power_freq_hz: float = float(DEFAULT_POWER_FREQ_HZ)
    pool: int = 0
    sensor_prefix: str = "sensor-"
    topics: wire.Topics = field(default_factory=wire.Topics)

    def __post_init__(self) -> None:
        if not 1 <= self.sensors <= 100_000:
            raise SimulationError(f"sensors={self.sensors}: expected 1..100000")
        if not self.duration_s > 0:
            raise SimulationError(f"duration_s={self.duration_s}: must be > 0")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise SimulationError(f"speed={self.speed}: must be > 0 (1 = real time)")
        chunk_samples = self.chunk_s * SAMPLE_RATE_HZ
        if not (0 < self.chunk_s <= WINDOW_SECONDS and chunk_samples == int(chunk_samples)
                and (WINDOW_SECONDS * SAMPLE_RATE_HZ) % int(chunk_samples) == 0):
            raise SimulationError(f"chunk_s={self.chunk_s}: must divide a 20 s window into whole samples")
        if not wire.MIN_TIMESTAMP_NS <= self.start_ns < wire.MAX_TIMESTAMP_NS:
            raise SimulationError(f"start_ns={self.start_ns}: outside 2000..2200 UTC")
        for s in range(self.sensors):
            self.sensor_id(s)  # raises on a bad prefix

    def sensor_id(self, index: int) -> str:
        sensor_id = f"{self.sensor_prefix}{index}"
        if not wire.SENSOR_ID_RE.match(sensor_id):
            raise SimulationError(f"sensor id {sensor_id!r} (from --prefix) must match {wire.SENSOR_ID_RULE}")
        return sensor_id

    @property
    def chunk_samples(self) -> int:
        return int(self.chunk_s * SAMPLE_RATE_HZ)

    @property
    def chunk_ns(self) -> int:
        return self.chunk_samples * 1_000_000_000 // SAMPLE_RATE_HZ

    @property
    def first_window_ns(self) -> int:
        return self.start_ns - self.start_ns % WINDOW_NS

    @property
    def skipped_chunks(self) -> int:
        """Chunks of the first window before `start_ns` (a sensor switched on mid-window sends none of them)."""
        return -(-(self.start_ns - self.first_window_ns) // self.chunk_ns)

    @property
    def windows(self) -> int:
        return math.ceil((self.skipped_chunks * self.chunk_ns / 1e9 + self.duration_s) / WINDOW_SECONDS)


@dataclass(frozen=True)
class Message:
    due_s: float  # event seconds after the start at which it is sent (divide by speed for wall time)
    topic: str
    payload: bytes


def plan_messages(config: SimulationConfig, source: WindowSource) -> Iterator[Message]:
    """Every sensor's chunks in event-time order; a window's PRPD frame right after its last chunk."""
    per_window = WINDOW_SECONDS * SAMPLE_RATE_HZ // config.chunk_samples
    chunk_ns = config.chunk_ns
    first_ns = config.first_window_ns + config.skipped_chunks * chunk_ns  # t0 of the first chunk sent
    end_minute = config.duration_s / 60
    seq = 0
    for w in range(config.windows):
        windows = []
        for s in range(config.sensors):
            label, intensity = state_at(sensor_steps(config.schedule, s),
                                         w * WINDOW_SECONDS / 60, end_minute)
            windows.append(source.window(s, w, label, intensity))
        window_start_ns = config.first_window_ns + w * WINDOW_NS
        due_s = None  # when this window's last sent chunk leaves; None while none of it was sent
        for c in range(per_window):
            t0_ns = window_start_ns + c * chunk_ns
            elapsed_ns = t0_ns - first_ns
            if elapsed_ns < 0:
                continue
            if elapsed_ns >= config.duration_s * 1e9:
                return
            due_s = (elapsed_ns + chunk_ns) / 1e9  # a chunk leaves when its last sample was taken
            for s, window in enumerate(windows):
                samples = window.series.reshape(-1)[c * config.chunk_samples:(c + 1) * config.chunk_samples]
                payload = wire.encode_pd_chunk(seq, t0_ns, samples, SAMPLE_RATE_HZ, config.power_freq_hz)
                yield Message(due_s, config.topics.for_sensor("pd", config.sensor_id(s)), payload)
            seq += 1
        if due_s is None:
            continue  # the stream started in this window's last chunk: none of it went out, so no frame
        for s, window in enumerate(windows):
            yield Message(due_s, config.topics.for_sensor("prpd", config.sensor_id(s)),
                          _prpd_payload(window, window_start_ns, config.power_freq_hz))


def _prpd_payload(window: SimulatedWindow, window_start_ns: int, power_freq_hz: float) -> bytes:
    if window.counts is not None:
        return wire.encode_prpd_matrix(window_start_ns, window.counts, WINDOW_SECONDS * power_freq_hz,
                                       window.full_scale)
    return wire.encode_prpd_frame(window_start_ns, window.png or b"")  # png is set whenever counts is not


@dataclass
class SimulationReport:
    chunks: int = 0
    frames: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    max_lag_s: float = 0.0  # how far the publisher fell behind its schedule (0 = kept real rate)


def run_simulation(
    config: SimulationConfig,
    source: WindowSource,
    publish: Callable[[str, bytes], None],
    stop: threading.Event | None = None,
    progress: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    """Pace `plan_messages` against the wall clock (`due_s / speed`) and hand each to `publish`."""
    stop = stop or threading.Event()
    report = SimulationReport()
    started = time.monotonic()
    last_due = -1.0
    for message in plan_messages(config, source):
        due_wall = started + message.due_s / config.speed
        if message.due_s != last_due:
            last_due = message.due_s
            if stop.wait(max(0.0, due_wall - time.monotonic())):  # pacing to the sensors' real rate
                break
            report.max_lag_s = max(report.max_lag_s, time.monotonic() - due_wall)
            if progress is not None:
                progress(report)
        publish(message.topic, message.payload)
        if message.payload[:4] == wire.PD_MAGIC:
            report.chunks += 1
        else:
            report.frames += 1
        report.bytes += len(message.payload)
    report.wall_s = time.monotonic() - started
    return report


def new_client_id(prefix: str = "mad-sim") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"

