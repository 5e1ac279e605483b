"""The MQTT wire contract (docs/mqtt.md): topics, binary frames in, JSON/retained payloads out.

The one owner of the wire format: the agent decodes with it, the simulator and the recorder encode
with it. Decoding never raises anything but `WireError` whatever the bytes.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from agent.core.types import PrpdFrame, SampleChunk
from mad.constants import IMAGE_SIZE
from mad.data.prpd import amplitude_edges, render_prpd_from_matrix

WIRE_VERSION = 1

# ---- PD sample chunk: fixed 36-byte little-endian header, then the samples -------------------------------
PD_MAGIC = b"MADP"
# magic, version, dtype code, flags (must be 0), seq, t0_ns, sample rate, power frequency, count
PD_HEADER = struct.Struct("<4sBBHQqffI")
# dtype code on the wire -> numpy dtype (always little-endian on the wire)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<i2"),
    2: np.dtype("<i4"),
    3: np.dtype("<u2"),
    4: np.dtype("<f4"),
    5: np.dtype("u1"),
    6: np.dtype("i1"),
}
DTYPE_CODES: dict[str, int] = {dt.name: code for code, dt in DTYPES.items()}

# ---- PRPD frame: fixed 20-byte little-endian header, then PNG or JPEG bytes -------------------------------
PRPD_MAGIC = b"MADI"
# magic, version, image format code, flags (must be 0), window start ns, image byte count
PRPD_HEADER = struct.Struct("<4sBBHqI")
IMAGE_FORMATS: dict[int, str] = {1: "PNG", 2: "JPEG"}
IMAGE_FORMAT_CODES: dict[str, int] = {name: code for code, name in IMAGE_FORMATS.items()}

# ---- PRPD count matrix: fixed 36-byte little-endian header, then n_phase x n_amp counts (phase-major) ------
# Real instruments export a PRPD as counts per (phase bin, amplitude bin); the agent redraws it with the
# project's renderer so the model always sees one drawing style, whatever the vendor's screen looks like.
PRPD_MATRIX_MAGIC = b"MADM"
# magic, version, counts dtype code, flags (must be 0), window start ns, n_phase, n_amp, amplitude scale code,
# reserved (must be 0), amplitude full scale, amplitude floor, n_cycles
PRPD_MATRIX_HEADER = struct.Struct("<4sBBHqHHHHfff")
# The PD chunk's codes where they overlap (5 uint8, 3 uint16, 4 float32), taken from its table; 7 is counts-only.
COUNT_DTYPES: dict[int, np.dtype] = {5: DTYPES[5], 3: DTYPES[3], 7: np.dtype("<u4"), 4: DTYPES[4]}
COUNT_DTYPE_CODES: dict[str, int] = {dt.name: code for code, dt in COUNT_DTYPES.items()}
AMPLITUDE_SCALES: dict[int, str] = {1: "linear", 2: "log"}
AMPLITUDE_SCALE_CODES: dict[str, int] = {name: code for code, name in AMPLITUDE_SCALES.items()}
MATRIX_FORMAT = "matrix"  # the `mad-format` user property value of a count matrix

# MQTT v5 alternative: raw samples / raw image as the payload, the header fields as user properties.
PROP_PREFIX = "mad-"
PD_PROPERTIES = ("version", "seq", "t0-ns", "rate-hz", "power-hz", "dtype", "count")
PRPD_PROPERTIES = ("version", "window-start-ns", "format")
PRPD_MATRIX_PROPERTIES = ("version", "window-start-ns", "format", "dtype", "n-phase", "n-amp", "amp-scale",
                          "full-scale", "floor", "n-cycles")

# The one sensor-id rule, for topics, the allow-list, the agent id, file names and CLIs: a letter or digit
# first (no hidden files, nothing that reads as an option), then up to 63 of [A-Za-z0-9_.-].
SENSOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SENSOR_ID_RULE = "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
# 2000-01-01 .. 2200-01-01 in UTC ns: anything outside is a broken sensor clock, not a measurement.
MIN_TIMESTAMP_NS = 946_684_800 * 10**9
MAX_TIMESTAMP_NS = 7_258_118_400 * 10**9

SENSOR_STATES = ("ok", "interference", "uncertain", "alarm", "stale", "offline")
AGENT_STATUSES = ("online", "offline", "stopped")


class WireError(ValueError):
    """A payload that breaks the wire contract. `reason` is a stable code used in metrics and dead letters."""

    def __init__(self, reason: str, field: str, value: object, message: str) -> None:
        self.reason = reason
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{reason}: {field}={_short(value)}: {message}")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds on what a sensor may send; anything past them is rejected, never buffered."""

    max_payload_bytes: int = 4 * 1024 * 1024
    max_samples: int = 1_000_000  # per chunk
    sample_min: float = -(2.0**31)  # inclusive ADC range (float dtypes are also checked against it)
    sample_max: float = 2.0**31 - 1
    # The contract's range; the agent admits a narrower, configured one (limits.sample_rate_min_hz/max_hz or
    # the allow-list's own rate) before any memory is set aside. 10 MHz is the most an allow-list entry may
    # state; past it a 20 s window (200 M samples) is no longer a thing an edge agent should hold.
    min_sample_rate_hz: float = 1.0
    max_sample_rate_hz: float = 10e6
    min_power_freq_hz: float = 15.0  # 16.7 Hz railway .. 60 Hz grid, with margin
    max_power_freq_hz: float = 100.0
    max_future_skew_ns: int = 24 * 3600 * 10**9  # only checked when the caller passes now_ns
    # PRPD count matrices: instruments use 32..400 phase and 32..256 amplitude bins; 8..1024 leaves margin
    # while bounding the redraw (a 1024 x 1024 matrix takes ~30 ms; its bytes are also capped by the payload).
    min_matrix_bins: int = 8
    max_matrix_bins: int = 1024
    # Supply cycles a matrix was accumulated over: one cycle up to ~28 h at 100 Hz (instruments: seconds..minutes).
    min_matrix_cycles: float = 1.0
    max_matrix_cycles: float = 1e7


DEFAULT_LIMITS = WireLimits()


# ======================================== topics ========================================


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic patterns; `{sensor}` / `{agent}` are placeholders. Defaults are the documented contract."""

    pd: str = "mad/sensors/{sensor}/pd"
    prpd: str = "mad/sensors/{sensor}/prpd"
    alarms: str = "mad/alarms/{sensor}"
    state: str = "mad/state/{sensor}"
    deadletter: str = "mad/deadletter/{sensor}"
    status: str = "mad/agent/{agent}/status"
    stats: str = "mad/agent/{agent}/stats"

    def __post_init__(self) -> None:
        for name in ("pd", "prpd", "alarms", "state", "deadletter"):
            pattern = getattr(self, name)
            if pattern.count("{sensor}") != 1 or any(c in pattern for c in "+#"):
                raise ValueError(f"topics.{name}={pattern!r}: needs exactly one {{sensor}} and no wildcards")
        for name in ("status", "stats"):
            if getattr(self, name).count("{agent}") != 1:
                raise ValueError(f"topics.{name}={getattr(self, name)!r}: needs exactly one {{agent}}")

    def subscriptions(self) -> list[str]:
        """The MQTT filters that receive every sensor's input."""
        return [self.pd.replace("{sensor}", "+"), self.prpd.replace("{sensor}", "+")]

    def route(self, topic: str) -> tuple[str, str]:
        """Input topic -> ("pd" | "prpd", sensor_id); WireError("unknown_topic" / "bad_sensor_id") otherwise."""
        for kind in ("pd", "prpd"):
            prefix, suffix = getattr(self, kind).split("{sensor}")
            if topic.startswith(prefix) and topic.endswith(suffix) and len(topic) > len(prefix) + len(suffix):
                sensor = topic[len(prefix) : len(topic) - len(suffix)]
                if not SENSOR_ID_RE.match(sensor):
                    raise WireError("bad_sensor_id", "topic", topic, f"sensor id must match {SENSOR_ID_RULE}")
                return kind, sensor
        raise WireError("unknown_topic", "topic", topic, "not a pd or prpd input topic")

    def for_sensor(self, name: str, sensor_id: str) -> str:
        return getattr(self, name).replace("{sensor}", sensor_id)

    def for_agent(self, name: str, agent_id: str) -> str:
        return getattr(self, name).replace("{agent}", agent_id)


# ==================================== encoding (simulator, recorder, tests) ====================================


def encode_pd_chunk(
    seq: int, t0_ns: int, samples: np.ndarray, sample_rate_hz: float, power_freq_hz: float
) -> bytes:
    """One PD chunk frame: header + little-endian samples (dtype must be one of DTYPES)."""
    samples = np.asarray(samples)
    code = DTYPE_CODES.get(samples.dtype.name)
    if code is None or samples.ndim != 1:
        raise ValueError(f"samples: dtype {samples.dtype} / shape {samples.shape} not encodable; "
                         f"use 1-D {list(DTYPE_CODES)}")
    header = PD_HEADER.pack(
        PD_MAGIC, WIRE_VERSION, code, 0, seq, t0_ns, sample_rate_hz, power_freq_hz, samples.shape[0]
    )
    return header + samples.astype(DTYPES[code], copy=False).tobytes()


def pd_user_properties(
    seq: int, t0_ns: int, samples: np.ndarray, sample_rate_hz: float, power_freq_hz: float
) -> list[tuple[str, str]]:
    """MQTT v5 user properties for a raw-samples payload (`samples.astype('<dtype').tobytes()`)."""
    values = (WIRE_VERSION, seq, t0_ns, repr(float(sample_rate_hz)), repr(float(power_freq_hz)),
              np.asarray(samples).dtype.name, len(samples))
    return [(PROP_PREFIX + key, str(value)) for key, value in zip(PD_PROPERTIES, values, strict=True)]


def encode_prpd_frame(window_start_ns: int, image_bytes: bytes, image_format: str = "PNG") -> bytes:
    """One PRPD frame: header + the PNG/JPEG bytes as the sensor produced them."""
    header = PRPD_HEADER.pack(PRPD_MAGIC, WIRE_VERSION, IMAGE_FORMAT_CODES[image_format], 0, window_start_ns,
                              len(image_bytes))
    return header + image_bytes


def prpd_user_properties(window_start_ns: int, image_format: str = "PNG") -> list[tuple[str, str]]:
    values = (WIRE_VERSION, window_start_ns, image_format)
    return [(PROP_PREFIX + key, str(value)) for key, value in zip(PRPD_PROPERTIES, values, strict=True)]


def _count_code(counts: np.ndarray) -> int:
    code = COUNT_DTYPE_CODES.get(counts.dtype.name)
    if code is None or counts.ndim != 2:
        raise ValueError(f"counts: dtype {counts.dtype} / shape {counts.shape} not encodable; "
                         f"use 2-D (n_phase, n_amp) {list(COUNT_DTYPE_CODES)}")
    return code


def encode_prpd_matrix(
    window_start_ns: int,
    counts: np.ndarray,
    n_cycles: float,
    full_scale: float,
    amplitude_scale: str = "linear",
    floor: float = 0.0,
) -> bytes:
    """One PRPD count-matrix frame: header + counts (n_phase, n_amp), phase-major, little-endian."""
    counts = np.asarray(counts)
    code = _count_code(counts)
    n_phase, n_amp = counts.shape
    header = PRPD_MATRIX_HEADER.pack(PRPD_MATRIX_MAGIC, WIRE_VERSION, code, 0, window_start_ns, n_phase, n_amp,
                                     AMPLITUDE_SCALE_CODES[amplitude_scale], 0, full_scale, floor, n_cycles)
    return header + np.ascontiguousarray(counts, dtype=COUNT_DTYPES[code]).tobytes()


def prpd_matrix_user_properties(
    window_start_ns: int,
    counts: np.ndarray,
    n_cycles: float,
    full_scale: float,
    amplitude_scale: str = "linear",
    floor: float = 0.0,
) -> list[tuple[str, str]]:
    """MQTT v5 user properties for a raw-counts payload (`counts.astype('<dtype').tobytes()`, phase-major)."""
    counts = np.asarray(counts)
    _count_code(counts)
    values = (WIRE_VERSION, window_start_ns, MATRIX_FORMAT, counts.dtype.name, counts.shape[0], counts.shape[1],
              amplitude_scale, repr(float(full_scale)), repr(float(floor)), repr(float(n_cycles)))
    return [(PROP_PREFIX + key, str(value)) for key, value in zip(PRPD_MATRIX_PROPERTIES, values, strict=True)]


def image_to_png(image: np.ndarray) -> bytes:
    """(256, 256, 3) uint8 RGB -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# ======================================== decoding (agent) ========================================


def decode_message(
    topic: str,
    payload: bytes,
    user_properties: Iterable[tuple[str, str]] | None = None,
    *,
    topics: Topics | None = None,
    limits: WireLimits = DEFAULT_LIMITS,
    now_ns: int | None = None,
) -> SampleChunk | PrpdFrame:
    """Route by topic and decode; the header may come in the payload or (MQTT v5) as `mad-*` user properties."""
    kind, sensor_id = (topics or Topics()).route(topic)
    props = {k: v for k, v in (user_properties or ()) if k.startswith(PROP_PREFIX)}
    if kind == "pd":
        if props:
            return decode_pd_properties(sensor_id, payload, props, limits=limits, now_ns=now_ns)
        return decode_pd_chunk(sensor_id, payload, limits=limits, now_ns=now_ns)
    if props:
        return decode_prpd_properties(sensor_id, payload, props, limits=limits, now_ns=now_ns)
    return decode_prpd_frame(sensor_id, payload, limits=limits, now_ns=now_ns)


def decode_pd_chunk(
    sensor_id: str, payload: bytes, *, limits: WireLimits = DEFAULT_LIMITS, now_ns: int | None = None
) -> SampleChunk:
    _check_size(payload, limits)
    if len(payload) < PD_HEADER.size:
        raise WireError("truncated_header", "payload", len(payload), f"need at least {PD_HEADER.size} header bytes")
    magic, version, dtype_code, flags, seq, t0_ns, rate, power, count = PD_HEADER.unpack_from(payload)
    if magic != PD_MAGIC:
        raise WireError("bad_magic", "magic", magic, f"expected {PD_MAGIC!r}")
    return _build_chunk(sensor_id, memoryview(payload)[PD_HEADER.size :], version, dtype_code, flags, seq, t0_ns,
                        rate, power, count, limits, now_ns)


def decode_pd_properties(
    sensor_id: str,
    payload: bytes,
    props: Mapping[str, str],
    *,
    limits: WireLimits = DEFAULT_LIMITS,
    now_ns: int | None = None,
) -> SampleChunk:
    _check_size(payload, limits)
    version = _int_prop(props, "version")
    dtype_name = _prop(props, "dtype")
    dtype_code = DTYPE_CODES.get(dtype_name)
    if dtype_code is None:
        raise WireError("unknown_dtype", "mad-dtype", dtype_name, f"expected one of {sorted(DTYPE_CODES)}")
    return _build_chunk(sensor_id, memoryview(payload), version, dtype_code, 0, _int_prop(props, "seq"),
                        _int_prop(props, "t0-ns"), _float_prop(props, "rate-hz"), _float_prop(props, "power-hz"),
                        _int_prop(props, "count"), limits, now_ns)


def decode_prpd_frame(
    sensor_id: str, payload: bytes, *, limits: WireLimits = DEFAULT_LIMITS, now_ns: int | None = None
) -> PrpdFrame:
    """An image (`MADI`) or a count-matrix (`MADM`) frame: both arrive on the prpd topic, told apart by magic."""
    _check_size(payload, limits)
    if bytes(payload[:4]) == PRPD_MATRIX_MAGIC:
        return decode_prpd_matrix(sensor_id, payload, limits=limits, now_ns=now_ns)
    if len(payload) < PRPD_HEADER.size:
        raise WireError("truncated_header", "payload", len(payload), f"need at least {PRPD_HEADER.size} header bytes")
    magic, version, format_code, flags, window_start_ns, image_len = PRPD_HEADER.unpack_from(payload)
    if magic != PRPD_MAGIC:
        raise WireError("bad_magic", "magic", magic, f"expected {PRPD_MAGIC!r} or {PRPD_MATRIX_MAGIC!r}")
    _check_version(version)
    if flags != 0:
        raise WireError("bad_flags", "flags", flags, "reserved flags must be 0")
    image_format = IMAGE_FORMATS.get(format_code)
    if image_format is None:
        raise WireError("unknown_image_format", "format", format_code, f"expected one of {sorted(IMAGE_FORMATS)}")
    body = payload[PRPD_HEADER.size :]
    if len(body) != image_len:
        raise WireError("length_mismatch", "image_len", image_len, f"header says {image_len} bytes, got {len(body)}")
    _check_timestamp("window_start_ns", window_start_ns, limits, now_ns)
    return PrpdFrame(sensor_id, int(window_start_ns), _decode_image(body, image_format))


def decode_prpd_properties(
    sensor_id: str,
    payload: bytes,
    props: Mapping[str, str],
    *,
    limits: WireLimits = DEFAULT_LIMITS,
    now_ns: int | None = None,
) -> PrpdFrame:
    _check_size(payload, limits)
    _check_version(_int_prop(props, "version"))
    image_format = _prop(props, "format")
    if image_format == MATRIX_FORMAT:
        return _decode_matrix_properties(sensor_id, payload, props, limits, now_ns)
    if image_format not in IMAGE_FORMAT_CODES:
        raise WireError("unknown_image_format", "mad-format", image_format,
                        f"expected one of {[*IMAGE_FORMAT_CODES, MATRIX_FORMAT]}")
    window_start_ns = _int_prop(props, "window-start-ns")
    _check_timestamp("mad-window-start-ns", window_start_ns, limits, now_ns)
    return PrpdFrame(sensor_id, window_start_ns, _decode_image(bytes(payload), image_format))


def decode_prpd_matrix(
    sensor_id: str, payload: bytes, *, limits: WireLimits = DEFAULT_LIMITS, now_ns: int | None = None
) -> PrpdFrame:
    """A `MADM` count matrix, redrawn as the project's PRPD image (`PrpdFrame.source == "matrix"`)."""
    _check_size(payload, limits)
    if len(payload) < PRPD_MATRIX_HEADER.size:
        raise WireError("truncated_header", "payload", len(payload),
                        f"need at least {PRPD_MATRIX_HEADER.size} header bytes")
    (magic, version, dtype_code, flags, window_start_ns, n_phase, n_amp, scale_code, reserved, full_scale, floor,
     n_cycles) = PRPD_MATRIX_HEADER.unpack_from(payload)
    if magic != PRPD_MATRIX_MAGIC:
        raise WireError("bad_magic", "magic", magic, f"expected {PRPD_MATRIX_MAGIC!r}")
    _check_version(version)
    if flags != 0:
        raise WireError("bad_flags", "flags", flags, "reserved flags must be 0")
    if reserved != 0:
        raise WireError("bad_flags", "reserved", reserved, "reserved field must be 0")
    scale = AMPLITUDE_SCALES.get(scale_code)
    if scale is None:
        raise WireError("unknown_amplitude_scale", "amp_scale", scale_code,
                        f"expected one of {sorted(AMPLITUDE_SCALES)}")
    return _build_matrix(sensor_id, memoryview(payload)[PRPD_MATRIX_HEADER.size :], dtype_code, window_start_ns,
                         n_phase, n_amp, scale, full_scale, floor, n_cycles, limits, now_ns)


def _decode_matrix_properties(
    sensor_id: str, payload: bytes, props: Mapping[str, str], limits: WireLimits, now_ns: int | None
) -> PrpdFrame:
    dtype_name = _prop(props, "dtype")
    dtype_code = COUNT_DTYPE_CODES.get(dtype_name)
    if dtype_code is None:
        raise WireError("unknown_dtype", "mad-dtype", dtype_name, f"expected one of {sorted(COUNT_DTYPE_CODES)}")
    scale = _prop(props, "amp-scale")
    if scale not in AMPLITUDE_SCALE_CODES:
        raise WireError("unknown_amplitude_scale", "mad-amp-scale", scale,
                        f"expected one of {list(AMPLITUDE_SCALE_CODES)}")
    # The floor only means something on a log axis; a linear sensor may leave it out.
    floor = _float_prop(props, "floor") if scale == "log" or PROP_PREFIX + "floor" in props else 0.0
    return _build_matrix(sensor_id, memoryview(payload), dtype_code, _int_prop(props, "window-start-ns"),
                         _int_prop(props, "n-phase"), _int_prop(props, "n-amp"), scale,
                         _float_prop(props, "full-scale"), floor, _float_prop(props, "n-cycles"), limits, now_ns)


def _build_matrix(
    sensor_id: str,
    body: memoryview,
    dtype_code: int,
    window_start_ns: int,
    n_phase: int,
    n_amp: int,
    scale: str,
    full_scale: float,
    floor: float,
    n_cycles: float,
    limits: WireLimits,
    now_ns: int | None,
) -> PrpdFrame:
    dtype = COUNT_DTYPES.get(dtype_code)
    if dtype is None:
        raise WireError("unknown_dtype", "dtype", dtype_code, f"expected one of {sorted(COUNT_DTYPES)}")
    _check_timestamp("window_start_ns", window_start_ns, limits, now_ns)
    for name, bins in (("n_phase", n_phase), ("n_amp", n_amp)):
        if not limits.min_matrix_bins <= bins <= limits.max_matrix_bins:
            raise WireError("bad_matrix_shape", name, bins,
                            f"expected {limits.min_matrix_bins}..{limits.max_matrix_bins} bins")
    if not (math.isfinite(full_scale) and full_scale > 0):
        raise WireError("bad_amplitude_range", "full_scale", full_scale, "must be finite and > 0")
    if scale == "log" and not (math.isfinite(floor) and 0 < floor < full_scale):
        raise WireError("bad_amplitude_range", "floor", floor, f"a log axis needs 0 < floor < full_scale={full_scale}")
    if scale == "linear" and floor != 0:
        raise WireError("bad_amplitude_range", "floor", floor, "a linear axis starts at 0: floor must be 0")
    if not (math.isfinite(n_cycles) and limits.min_matrix_cycles <= n_cycles <= limits.max_matrix_cycles):
        raise WireError("bad_cycles", "n_cycles", n_cycles,
                        f"expected {limits.min_matrix_cycles}..{limits.max_matrix_cycles} supply cycles")
    # Sizes come from the (already bounded) header and are checked against the bytes present before
    # any array is made, so no header can make the decoder allocate more than the payload it got.
    expected = n_phase * n_amp * dtype.itemsize
    if len(body) != expected:
        raise WireError("length_mismatch", "counts", len(body),
                        f"{n_phase} x {n_amp} x {dtype.itemsize} B = {expected} B declared, {len(body)} B present")
    counts = np.frombuffer(body, dtype=dtype).reshape(n_phase, n_amp)
    if dtype.kind == "f":
        bad = ~np.isfinite(counts) | (counts < 0)
        if bad.any():
            raise WireError("bad_counts", "counts", int(bad.sum()), "counts must be finite and >= 0")
    # The renderer only looks at the edges' ratios, so they are expressed as fractions of the full scale:
    # the same drawing, without float trouble from a sensor's unit (pC, V, ADC counts).
    try:
        edges = amplitude_edges(n_amp, 1.0, scale, floor / full_scale if scale == "log" else None)
        image = render_prpd_from_matrix(counts, float(n_cycles), amplitude_edges=edges)
    except ValueError as error:  # the checks above should make this unreachable; never leak a non-WireError
        raise WireError("bad_counts", "counts", (n_phase, n_amp), f"cannot draw the matrix: {error}") from None
    return PrpdFrame(sensor_id, int(window_start_ns), image, source="matrix")


# ---------------------------------------- validation helpers ----------------------------------------


def _check_size(payload: bytes, limits: WireLimits) -> None:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise WireError("bad_payload_type", "payload", type(payload).__name__, "payload must be bytes")
    if len(payload) > limits.max_payload_bytes:
        raise WireError("oversized", "payload", len(payload), f"limit is {limits.max_payload_bytes} bytes")


def _check_version(version: int) -> None:
    if version != WIRE_VERSION:
        raise WireError("unsupported_version", "version", version, f"this agent speaks version {WIRE_VERSION}")


def _check_timestamp(field: str, value: int, limits: WireLimits, now_ns: int | None) -> None:
    if not MIN_TIMESTAMP_NS <= value < MAX_TIMESTAMP_NS:
        raise WireError("bad_timestamp", field, value, "UTC ns outside 2000-01-01..2200-01-01")
    if now_ns is not None and value > now_ns + limits.max_future_skew_ns:
        raise WireError("bad_timestamp", field, value, f"more than {limits.max_future_skew_ns} ns in the future")


def _build_chunk(
    sensor_id: str,
    body: memoryview,
    version: int,
    dtype_code: int,
    flags: int,
    seq: int,
    t0_ns: int,
    rate: float,
    power: float,
    count: int,
    limits: WireLimits,
    now_ns: int | None,
) -> SampleChunk:
    _check_version(version)
    if flags != 0:
        raise WireError("bad_flags", "flags", flags, "reserved flags must be 0")
    dtype = DTYPES.get(dtype_code)
    if dtype is None:
        raise WireError("unknown_dtype", "dtype", dtype_code, f"expected one of {sorted(DTYPES)}")
    if not 0 <= seq < 2**64:
        raise WireError("bad_seq", "seq", seq, "sequence number must be an unsigned 64-bit integer")
    if not (math.isfinite(rate) and limits.min_sample_rate_hz <= rate <= limits.max_sample_rate_hz):
        raise WireError("bad_sample_rate", "sample_rate_hz", rate,
                        f"expected {limits.min_sample_rate_hz}..{limits.max_sample_rate_hz}")
    if not (math.isfinite(power) and limits.min_power_freq_hz <= power <= limits.max_power_freq_hz):
        raise WireError("bad_power_freq", "power_freq_hz", power,
                        f"expected {limits.min_power_freq_hz}..{limits.max_power_freq_hz}")
    _check_timestamp("t0_ns", t0_ns, limits, now_ns)
    if count <= 0:
        raise WireError("empty", "count", count, "a chunk carries at least one sample")
    if count > limits.max_samples:
        raise WireError("oversized", "count", count, f"limit is {limits.max_samples} samples per chunk")
    if len(body) != count * dtype.itemsize:
        raise WireError("length_mismatch", "count", count,
                        f"{count} x {dtype.itemsize} B samples declared, {len(body)} B present")
    # Copy once into native byte order so the core never holds a view on the MQTT buffer.
    samples = np.frombuffer(body, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)
    if dtype.kind == "f" and not np.isfinite(samples).all():
        raise WireError("nan_samples", "samples", int((~np.isfinite(samples)).sum()), "NaN or infinite samples")
    if samples.min() < limits.sample_min or samples.max() > limits.sample_max:
        raise WireError("out_of_range", "samples", (samples.min().item(), samples.max().item()),
                        f"ADC range is {limits.sample_min}..{limits.sample_max}")
    return SampleChunk(sensor_id, int(seq), int(t0_ns), float(rate), float(power), samples)


def _decode_image(data: bytes, image_format: str) -> np.ndarray:
    """PNG/JPEG bytes -> (256, 256, 3) uint8; the size is checked before pixels are decompressed."""
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise WireError("bad_image_size", "image", image.size, f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            if image.mode != "RGB":
                raise WireError("bad_image_mode", "image", image.mode, "expected RGB")
            image.load()
            pixels = np.asarray(image, dtype=np.uint8)
    except WireError:
        raise
    except Exception as error:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...) on bad bytes
        raise WireError("corrupt_image", "image", len(data), f"{image_format} decode failed: {error}") from None
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise WireError("bad_image_size", "image", pixels.shape, f"expected ({IMAGE_SIZE}, {IMAGE_SIZE}, 3)")
    return pixels


def _prop(props: Mapping[str, str], key: str) -> str:
    value = props.get(PROP_PREFIX + key)
    if value is None:
        raise WireError("missing_property", PROP_PREFIX + key, None, "required user property is missing")
    return value


def _int_prop(props: Mapping[str, str], key: str) -> int:
    raw = _prop(props, key)
    try:
        return int(raw, 10)
    except ValueError:
        raise WireError("bad_property", PROP_PREFIX + key, raw, "expected a decimal integer") from None


def _float_prop(props: Mapping[str, str], key: str) -> float:
    raw = _prop(props, key)
    try:
        return float(raw)
    except ValueError:
        raise WireError("bad_property", PROP_PREFIX + key, raw, "expected a number") from None


# ======================================== outputs (agent -> subscribers) ========================================


def state_payload(state: str) -> bytes:
    """Retained per-sensor state: the bare word, so dashboards need no JSON parsing."""
    if state not in SENSOR_STATES:
        raise ValueError(f"state={state!r}: expected one of {SENSOR_STATES}")
    return state.encode()


def mark_historical(alarm_json: bytes | str) -> bytes:
    """The same alarm JSON with `"historical": true`: it was re-sent from the outbox after an outage/restart."""
    event = json.loads(alarm_json)
    event["historical"] = True
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def deadletter_envelope(sensor_id: str, topic: str, reason: str, payload: bytes, message: str) -> bytes:
    """MQTT 3.1.1 dead letter (no user properties): JSON with the reason and the payload in hex (first 4 KiB)."""
    return json.dumps({"sensor": sensor_id, "topic": topic, "reason": reason, "message": message,
                       "payload_len": len(payload), "payload_hex": bytes(payload[:4096]).hex()},
                      separators=(",", ":")).encode()


def home_assistant_discovery(
    agent_id: str, sensor_id: str, topics: Topics | None = None, prefix: str = "homeassistant"
) -> list[tuple[str, bytes]]:
    """Retained Home Assistant MQTT-discovery configs: one entity for the sensor state, one for its last alarm."""
    topics = topics or Topics()
    device = {"identifiers": [f"mad_{agent_id}_{sensor_id}"], "name": f"MAD PD sensor {sensor_id}",
              "manufacturer": "MAD", "model": "PD classifier", "via_device": f"mad_agent_{agent_id}"}
    availability = {"topic": topics.for_agent("status", agent_id),
                    "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}
    object_id = re.sub(r"[^a-zA-Z0-9_-]", "_", f"mad_{agent_id}_{sensor_id}")
    state_config = {
        "name": "PD state", "unique_id": f"{object_id}_state", "object_id": f"{object_id}_state",
        "state_topic": topics.for_sensor("state", sensor_id), "icon": "mdi:flash-alert",
        "device_class": "enum", "options": list(SENSOR_STATES),
        "availability": [availability], "device": device,
    }
    alarm_config = {
        "name": "PD last alarm", "unique_id": f"{object_id}_alarm", "object_id": f"{object_id}_alarm",
        "state_topic": topics.for_sensor("alarms", sensor_id), "value_template": "{{ value_json.kind }}",
        "json_attributes_topic": topics.for_sensor("alarms", sensor_id), "icon": "mdi:alert",
        "availability": [availability], "device": device,
    }
    return [
        (f"{prefix}/sensor/{object_id}/state/config", json.dumps(state_config, sort_keys=True).encode()),
        (f"{prefix}/sensor/{object_id}/alarm/config", json.dumps(alarm_config, sort_keys=True).encode()),
    ]
