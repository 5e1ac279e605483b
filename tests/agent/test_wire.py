"""The wire contract: round trips, every rejection reason, fuzzed bytes, and the docs' hex example."""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from agent import wire
from agent.core.types import PrpdFrame, SampleChunk
from agent.settings import SENSOR_ID_PATTERN
from agent.wire import WireError
from mad.data.prpd import amplitude_edges, render_prpd_from_matrix

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
DOCS = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


def _encode(img: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    png = bytearray(_encode(np.zeros((1, 1, 3), np.uint8)))
    ihdr = bytearray(png[12:29])  # b"IHDR" + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    png[12:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(png)


def _samples(dtype: str, n: int = 500) -> np.ndarray:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    rng = np.random.default_rng(1)
    if info is None:
        return rng.normal(0, 1000, n).astype(dtype)
    return rng.integers(info.min, info.max, n, endpoint=True).astype(dtype)


def _reason(call) -> str:
    with pytest.raises(WireError) as caught:
        call()
    return caught.value.reason


def _pd(payload: bytes, **kw):
    return wire.decode_message("mad/sensors/s1/pd", payload, **kw)


GOOD_PD = wire.encode_pd_chunk(3, T0, np.arange(10, dtype=np.int16), 7680.0, 60.0)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", sorted(wire.DTYPE_CODES))
def test_pd_chunk_round_trips_every_dtype_in_header_and_property_form(dtype: str) -> None:
    samples = _samples(dtype)
    framed = _pd(wire.encode_pd_chunk(41, T0, samples, 7680.0, 50.0))
    props = wire.pd_user_properties(41, T0, samples, 7680.0, 50.0)
    raw = _pd(samples.astype(samples.dtype.newbyteorder("<")).tobytes(), user_properties=props)
    for chunk in (framed, raw):
        assert isinstance(chunk, SampleChunk)
        assert (chunk.sensor_id, chunk.seq, chunk.t0_ns, chunk.sample_rate_hz, chunk.power_freq_hz) == (
            "s1", 41, T0, 7680.0, 50.0)
        assert chunk.samples.dtype == samples.dtype
        np.testing.assert_array_equal(chunk.samples, samples)


def test_decoded_samples_do_not_alias_the_mqtt_buffer() -> None:
    payload = bytearray(GOOD_PD)
    chunk = _pd(payload)
    payload[wire.PD_HEADER.size :] = bytes(len(payload) - wire.PD_HEADER.size)
    assert chunk.samples[5] == 5


def test_prpd_round_trips_png_exactly_and_jpeg_approximately() -> None:
    image = _image()
    frame = wire.decode_message("mad/sensors/s1/prpd", wire.encode_prpd_frame(T0, _encode(image)))
    assert isinstance(frame, PrpdFrame)
    assert (frame.sensor_id, frame.window_start_ns) == ("s1", T0)
    np.testing.assert_array_equal(frame.image, image)
    smooth = np.zeros((256, 256, 3), np.uint8) + np.arange(256, dtype=np.uint8)[:, None, None]
    jpeg = wire.decode_message("mad/sensors/s1/prpd", _encode(smooth, "JPEG"),
                               user_properties=wire.prpd_user_properties(T0, "JPEG"))
    assert jpeg.image.shape == (256, 256, 3) and np.abs(jpeg.image.astype(int) - smooth).mean() < 3


def test_docs_hex_example_is_what_the_encoder_produces() -> None:
    text = DOCS.read_text()
    match = re.search(r"<!-- hex-example: pd[^>]*-->\s*```text\n(.*?)```", text, re.S)
    assert match, "docs/mqtt.md lost its hex example"
    documented = bytes.fromhex(match.group(1).replace("\n", " "))
    assert documented == wire.encode_pd_chunk(7, T0, np.array([0, 1, -2, 300], np.int16), 7680, 60)
    header = re.search(r"Example header for a 7-byte image[^`]*`([0-9a-f ]+)`", text).group(1)
    assert bytes.fromhex(header) == wire.encode_prpd_frame(T0, b"1234567")[: wire.PRPD_HEADER.size]
    match = re.search(r"<!-- hex-example: prpd-matrix[^>]*-->\s*```text\n(.*?)```", text, re.S)
    assert match, "docs/mqtt.md lost its count-matrix hex example"
    matrix = wire.encode_prpd_matrix(T0, np.zeros((128, 64), np.uint16), 1200.0, 100.0)
    assert bytes.fromhex(match.group(1).replace("\n", " ")) == matrix[: wire.PRPD_MATRIX_HEADER.size]


# ---------------------------------------------------------------- PRPD count matrices


def _counts(dtype: str = "uint16", shape: tuple[int, int] = (100, 32), seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.3, shape) * rng.integers(1, 40, shape)
    counts[:, shape[1] * 2 // 3 :] = 0  # the top amplitude bins empty, as in a real export
    return counts.astype(dtype)


def _prpd(payload, props=None, **kw):
    return wire.decode_message("mad/sensors/s1/prpd", payload, user_properties=props, **kw)


@pytest.mark.parametrize("dtype", sorted(wire.COUNT_DTYPE_CODES))
@pytest.mark.parametrize(("scale", "floor", "full_scale"), [("linear", 0.0, 250.0), ("log", 0.01, 3.5)])
def test_matrix_round_trips_as_the_projects_own_drawing(dtype: str, scale: str, floor: float,
                                                        full_scale: float) -> None:
    counts = _counts(dtype)
    expected = render_prpd_from_matrix(counts, 1200.0, amplitude_edges=amplitude_edges(
        32, np.float32(full_scale), scale, np.float32(floor) if scale == "log" else None))
    framed = _prpd(wire.encode_prpd_matrix(T0, counts, 1200.0, full_scale, scale, floor))
    props = wire.prpd_matrix_user_properties(T0, counts, 1200.0, full_scale, scale, floor)
    raw = _prpd(counts.astype(counts.dtype.newbyteorder("<")).tobytes(), props)
    for frame in (framed, raw):
        assert isinstance(frame, PrpdFrame)
        assert (frame.sensor_id, frame.window_start_ns, frame.source) == ("s1", T0, "matrix")
        assert frame.image.shape == (256, 256, 3) and frame.image.dtype == np.uint8
        # The wire scales the edges to the full scale (units must not matter); the drawing is the same.
        np.testing.assert_array_equal(frame.image, expected)


def test_matrix_axis_phase_and_scale_reach_the_drawing() -> None:
    counts = np.zeros((64, 32), np.uint16)
    counts[48, 10] = 50  # one cell near 270 deg (negative corona)
    image = _prpd(wire.encode_prpd_matrix(T0, counts, 1200.0, 1.0)).image
    lit = np.argwhere(image.max(axis=2) != image.min(axis=2))  # coloured: not the black ground or grey sine
    assert 0.72 * 256 < lit[:, 1].mean() < 0.78 * 256  # phase bin 48/64 = 270..275.6 deg
    log = _prpd(wire.encode_prpd_matrix(T0, counts, 1200.0, 1.0, "log", 1e-3)).image
    assert not np.array_equal(image, log)  # the same bins mean other amplitudes on a dB axis
    quiet = _prpd(wire.encode_prpd_matrix(T0, np.zeros((64, 32), np.uint8), 1200.0, 1.0))
    assert quiet.image.shape == (256, 256, 3)  # an all-zero matrix is a valid quiet window


def test_old_image_frames_are_still_images() -> None:
    frame = _prpd(wire.encode_prpd_frame(T0, _encode(_image())))
    assert frame.source == "image"


def _matrix_header(**fields) -> bytes:
    values = dict(magic=wire.PRPD_MATRIX_MAGIC, version=1, dtype=3, flags=0, start=T0, n_phase=16, n_amp=8,
                  scale=1, reserved=0, full_scale=10.0, floor=0.0, n_cycles=1200.0)
    values.update(fields)
    return wire.PRPD_MATRIX_HEADER.pack(*values.values())


def _matrix(body: bytes | None = None, **fields) -> bytes:
    itemsize = wire.COUNT_DTYPES.get(fields.get("dtype", 3), np.dtype("<u2")).itemsize
    n_cells = fields.get("n_phase", 16) * fields.get("n_amp", 8)
    return _matrix_header(**fields) + (bytes(n_cells * itemsize) if body is None else body)


MATRIX_CASES = {
    "truncated_header": _matrix()[:30],
    "unsupported_version": _matrix(version=2),
    "bad_flags": _matrix(flags=4),
    "unknown_dtype": _matrix(dtype=1, body=bytes(256)),  # int16 counts: signed, not a count type
    "bad_timestamp": _matrix(start=-1),
    "bad_matrix_shape": _matrix(n_phase=4),
    "unknown_amplitude_scale": _matrix(scale=3),
    "bad_amplitude_range": _matrix(full_scale=float("inf")),
    "bad_cycles": _matrix(n_cycles=0.5),
    "length_mismatch": _matrix(body=bytes(16 * 8 * 2 - 1)),
    "bad_counts": _matrix(dtype=4, body=struct.pack("<128f", *([0.0] * 127 + [-1.0]))),
    "oversized": _matrix(dtype=7, n_phase=1024, n_amp=1024),  # 4 MiB of counts + header > 4 MiB
}


@pytest.mark.parametrize("reason", sorted(MATRIX_CASES))
def test_each_matrix_reason_is_reachable(reason: str) -> None:
    assert _reason(lambda: _prpd(MATRIX_CASES[reason])) == reason


@pytest.mark.parametrize(("fields", "field"), [
    (dict(reserved=1), "reserved"),
    (dict(n_amp=1025), "n_amp"),
    (dict(full_scale=0.0), "full_scale"),
    (dict(full_scale=-3.0), "full_scale"),
    (dict(full_scale=float("nan")), "full_scale"),
    (dict(scale=2, floor=0.0), "floor"),
    (dict(scale=2, floor=10.0), "floor"),  # floor == full scale: an empty dB range
    (dict(scale=2, floor=float("nan")), "floor"),
    (dict(floor=1.0), "floor"),  # linear axes start at 0
    (dict(n_cycles=float("nan")), "n_cycles"),
    (dict(n_cycles=2e7), "n_cycles"),
])
def test_each_bad_matrix_field_is_named(fields: dict, field: str) -> None:
    with pytest.raises(WireError) as caught:
        _prpd(_matrix(**fields))
    assert caught.value.field == field


def test_matrix_nan_and_inf_counts_are_refused() -> None:
    for bad in (float("nan"), float("inf")):
        body = struct.pack("<128f", *([1.0] * 127 + [bad]))
        assert _reason(lambda body=body: _prpd(_matrix(dtype=4, body=body))) == "bad_counts"
    assert _prpd(_matrix(dtype=4, body=struct.pack("<128f", *([0.5] * 128)))).source == "matrix"


def test_matrix_sizes_are_checked_before_any_allocation() -> None:
    # A header alone that claims 1024 x 1024 float32 counts: refused from the header, nothing is allocated.
    claim = _matrix_header(dtype=4, n_phase=1024, n_amp=1024)
    tracemalloc.start()
    try:
        assert _reason(lambda: _prpd(claim)) == "length_mismatch"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    tight = wire.WireLimits(max_payload_bytes=200, max_matrix_bins=64)
    assert _reason(lambda: _prpd(_matrix(n_phase=64, n_amp=64), limits=tight)) == "oversized"
    assert _reason(lambda: _prpd(_matrix(n_phase=128), limits=wire.WireLimits(max_matrix_bins=64))
                   ) == "bad_matrix_shape"
    assert _reason(lambda: _prpd(_matrix(), now_ns=T0 - 2 * 86_400 * 10**9)) == "bad_timestamp"


def test_matrix_property_form_reasons() -> None:
    counts = _counts("uint8", (16, 8))
    props = dict(wire.prpd_matrix_user_properties(T0, counts, 1200.0, 5.0, "log", 0.05))
    body = counts.tobytes()

    def with_props(**changes):
        merged = {**props, **{wire.PROP_PREFIX + k.replace("_", "-"): v for k, v in changes.items()}}
        return lambda: _prpd(body, [(k, v) for k, v in merged.items() if v is not None])

    assert _prpd(body, list(props.items())).source == "matrix"
    assert _reason(with_props(floor=None)) == "missing_property"  # a log axis needs its floor
    assert _reason(with_props(n_cycles=None)) == "missing_property"
    assert _reason(with_props(n_phase="many")) == "bad_property"
    assert _reason(with_props(dtype="int16")) == "unknown_dtype"
    assert _reason(with_props(amp_scale="dB")) == "unknown_amplitude_scale"
    assert _reason(with_props(n_amp="4")) == "bad_matrix_shape"
    assert _reason(with_props(n_amp="9")) == "length_mismatch"
    assert _reason(with_props(full_scale="-1")) == "bad_amplitude_range"
    assert _reason(with_props(n_cycles="inf")) == "bad_cycles"
    assert _reason(with_props(format="BMP")) == "unknown_image_format"
    linear = with_props(amp_scale="linear", floor=None)  # a linear sensor may leave the floor out
    assert linear().source == "matrix"
    assert _reason(with_props(amp_scale="linear", floor="2")) == "bad_amplitude_range"


# ---------------------------------------------------------------- every rejection reason


def _header(**fields) -> bytes:
    values = dict(magic=wire.PD_MAGIC, version=1, dtype=1, flags=0, seq=1, t0=T0, rate=7680.0, power=60.0, count=4)
    values.update(fields)
    return wire.PD_HEADER.pack(*values.values())


def _with_body(**fields) -> bytes:
    return _header(**fields) + bytes(8)


PD_CASES = {
    "truncated_header": GOOD_PD[:20],
    "bad_magic": _with_body(magic=b"XXXX"),
    "unsupported_version": _with_body(version=2),
    "bad_flags": _with_body(flags=1),
    "unknown_dtype": _with_body(dtype=99),
    "bad_sample_rate": _with_body(rate=float("nan")),
    "bad_power_freq": _with_body(power=400.0),
    "bad_timestamp": _with_body(t0=-5),
    "empty": _header(count=0),
    "length_mismatch": _with_body(count=5),
    "nan_samples": _header(dtype=4, count=2) + struct.pack("<2f", 1.0, float("nan")),
    "oversized": _header(count=2_000_000) + bytes(4_000_000),
}


@pytest.mark.parametrize("reason", sorted(PD_CASES))
def test_each_pd_reason_is_reachable(reason: str) -> None:
    assert _reason(lambda: _pd(PD_CASES[reason])) == reason


def test_payload_cap_timestamp_skew_and_adc_range_are_enforced() -> None:
    tight = wire.WireLimits(max_payload_bytes=40, sample_min=0, sample_max=5)
    assert _reason(lambda: _pd(GOOD_PD, limits=tight)) == "oversized"
    limits = wire.WireLimits(sample_min=0, sample_max=5)
    assert _reason(lambda: _pd(GOOD_PD, limits=limits)) == "out_of_range"
    assert _reason(lambda: _pd(GOOD_PD, now_ns=T0 - 2 * 86_400 * 10**9)) == "bad_timestamp"
    assert _pd(GOOD_PD, now_ns=T0).n == 10
    assert _reason(lambda: _pd("not bytes")) == "bad_payload_type"


def test_property_form_reasons() -> None:
    samples = np.arange(4, dtype=np.int16)
    props = dict(wire.pd_user_properties(1, T0, samples, 7680, 60))
    body = samples.tobytes()

    def with_props(**changes):
        merged = {**props, **{wire.PROP_PREFIX + k.replace("_", "-"): v for k, v in changes.items()}}
        return lambda: _pd(body, user_properties=[(k, v) for k, v in merged.items() if v is not None])

    assert _reason(with_props(seq=None)) == "missing_property"
    assert _reason(with_props(seq="seven")) == "bad_property"
    assert _reason(with_props(rate_hz="fast")) == "bad_property"
    assert _reason(with_props(seq="-1")) == "bad_seq"
    assert _reason(with_props(dtype="complex128")) == "unknown_dtype"
    assert _reason(with_props(count="3")) == "length_mismatch"
    prpd = lambda props: wire.decode_message("mad/sensors/s1/prpd", _encode(_image()), user_properties=props)  # noqa: E731
    assert _reason(lambda: prpd([("mad-version", "1"), ("mad-window-start-ns", str(T0)), ("mad-format", "GIF")])
                   ) == "unknown_image_format"


def _prpd_reason(payload: bytes) -> str:
    return _reason(lambda: wire.decode_message("mad/sensors/s1/prpd", payload))


def test_each_prpd_reason_is_reachable() -> None:
    png = _encode(_image())
    frame = wire.encode_prpd_frame(T0, png)
    assert _prpd_reason(frame[:10]) == "truncated_header"
    assert _prpd_reason(b"XXXX" + frame[4:]) == "bad_magic"
    assert _prpd_reason(frame[:4] + b"\x07" + frame[5:]) == "unsupported_version"
    assert _prpd_reason(frame[:5] + b"\x09" + frame[6:]) == "unknown_image_format"
    assert _prpd_reason(frame[:-1]) == "length_mismatch"
    assert _prpd_reason(wire.encode_prpd_frame(10, png)) == "bad_timestamp"
    assert _prpd_reason(wire.encode_prpd_frame(T0, png[:200] + bytes(len(png) - 200))) == "corrupt_image"
    assert _prpd_reason(wire.encode_prpd_frame(T0, b"garbage")) == "corrupt_image"
    small = _encode(np.zeros((64, 64, 3), np.uint8))
    assert _prpd_reason(wire.encode_prpd_frame(T0, small)) == "bad_image_size"
    rgba = _encode(Image.new("RGBA", (256, 256)))
    assert _prpd_reason(wire.encode_prpd_frame(T0, rgba)) == "bad_image_mode"
    # A decompression bomb: a tiny PNG whose header claims a 5,000 x 5,000 canvas (below Pillow's own
    # bomb guard) is refused from its header, before any pixel is decompressed.
    bomb = _png_claiming(5_000, 5_000)
    assert _prpd_reason(wire.encode_prpd_frame(T0, bomb)) == "bad_image_size"


def test_topic_routing() -> None:
    topics = wire.Topics()
    assert topics.route("mad/sensors/bay-3.T1/prpd") == ("prpd", "bay-3.T1")
    assert _reason(lambda: topics.route("mad/sensors/a/b/pd")) == "bad_sensor_id"
    # One rule everywhere: an id the allow-list and the core would refuse is refused at the topic too
    # (`_x` used to be routed by the wire and then refused by the core under another rule).
    for refused in ("_x", ".hidden", "-x", "x" * 65):
        assert _reason(lambda t=refused: topics.route(f"mad/sensors/{t}/pd")) == "bad_sensor_id"
        assert not re.match(SENSOR_ID_PATTERN, refused)
    assert _reason(lambda: topics.route("mad/sensors//pd")) == "unknown_topic"
    assert _reason(lambda: topics.route("other/topic")) == "unknown_topic"
    assert topics.subscriptions() == ["mad/sensors/+/pd", "mad/sensors/+/prpd"]
    custom = wire.Topics(pd="site7/{sensor}/raw")
    assert custom.route("site7/x/raw") == ("pd", "x")
    with pytest.raises(ValueError, match=r"topics\.pd"):
        wire.Topics(pd="site7/+/raw")


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=300), topic=st.sampled_from(["mad/sensors/s/pd", "mad/sensors/s/prpd"]))
def test_random_bytes_only_ever_raise_wire_error(payload: bytes, topic: str) -> None:
    with contextlib.suppress(WireError):
        wire.decode_message(topic, payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=300))
def test_random_bytes_after_a_matrix_magic_only_ever_raise_wire_error(payload: bytes) -> None:
    with contextlib.suppress(WireError):
        wire.decode_message("mad/sensors/s/prpd", wire.PRPD_MATRIX_MAGIC + payload)


SMALL_PNG_FRAME = wire.encode_prpd_frame(T0, _encode(_image()))
SMALL_MATRIX = _counts("float32", (16, 8))
SMALL_MATRIX_FRAME = wire.encode_prpd_matrix(T0, SMALL_MATRIX, 1200.0, 5.0, "log", 0.05)
MATRIX_PROPS = dict(wire.prpd_matrix_user_properties(T0, SMALL_MATRIX, 1200.0, 5.0, "log", 0.05))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(["pd", "prpd", "pdprops", "matrix", "matrixprops"]))
def test_mutated_valid_frames_only_ever_raise_wire_error(data, which: str) -> None:
    base = {"pd": GOOD_PD, "prpd": SMALL_PNG_FRAME[:400] if data.draw(st.booleans()) else SMALL_PNG_FRAME,
            "pdprops": GOOD_PD[wire.PD_HEADER.size :], "matrix": SMALL_MATRIX_FRAME,
            "matrixprops": SMALL_MATRIX_FRAME[wire.PRPD_MATRIX_HEADER.size :]}[which]
    payload = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        # Matrix headers are where the sizes live: aim half of their mutations there.
        hi = wire.PRPD_MATRIX_HEADER.size - 1 if which == "matrix" and data.draw(st.booleans()) else len(payload) - 1
        payload[data.draw(st.integers(0, hi))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    props = None
    if which == "pdprops":
        keys = [wire.PROP_PREFIX + k for k in wire.PD_PROPERTIES]
        props = [(k, data.draw(st.text(max_size=25))) for k in keys if data.draw(st.booleans())]
    if which == "matrixprops":  # valid values, some dropped or replaced by junk or edge numbers
        junk = st.one_of(st.text(max_size=25), st.sampled_from(["0", "-1", "nan", "inf", "1e300", "65536", "8"]))
        props = [(k, data.draw(junk) if data.draw(st.booleans()) else v) for k, v in MATRIX_PROPS.items()
                 if data.draw(st.integers(0, 9))]
    topic = "mad/sensors/s/prpd" if which in ("prpd", "matrix", "matrixprops") else "mad/sensors/s/pd"
    try:
        wire.decode_message(topic, bytes(payload[:cut]), user_properties=props)
    except WireError as error:
        assert error.reason and error.field


# ---------------------------------------------------------------- outputs


def test_historical_flag_and_state_payload() -> None:
    marked = json.loads(wire.mark_historical(b'{"event_id":"e1","kind":"new"}'))
    assert marked == {"event_id": "e1", "kind": "new", "historical": True}
    assert wire.state_payload("stale") == b"stale"
    with pytest.raises(ValueError, match="state"):
        wire.state_payload("broken")


def test_home_assistant_discovery_shape() -> None:
    configs = wire.home_assistant_discovery("edge1", "bay.3")
    assert [t for t, _ in configs] == ["homeassistant/sensor/mad_edge1_bay_3/state/config",
                                       "homeassistant/sensor/mad_edge1_bay_3/alarm/config"]
    state, alarm = (json.loads(p) for _, p in configs)
    assert state["state_topic"] == "mad/state/bay.3" and alarm["state_topic"] == "mad/alarms/bay.3"
    assert state["options"] == list(wire.SENSOR_STATES)
    assert state["unique_id"] != alarm["unique_id"]
    for config in (state, alarm):
        assert config["availability"][0]["topic"] == "mad/agent/edge1/status"
        assert config["device"]["identifiers"] == ["mad_edge1_bay.3"]


def test_deadletter_envelope_is_json_with_reason() -> None:
    envelope = json.loads(wire.deadletter_envelope("s1", "mad/sensors/s1/pd", "bad_magic", b"\x00\x01", "m"))
    assert envelope["reason"] == "bad_magic" and envelope["payload_hex"] == "0001"


def _reference_publisher():
    import importlib.util

    path = DOCS.parent / "reference_publisher.py"
    spec = importlib.util.spec_from_file_location("reference_publisher", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_publisher_speaks_the_same_wire_format() -> None:
    ref = _reference_publisher()
    samples = np.array([0, 1, -2, 300], np.int16)
    assert ref.pd_chunk(7, T0, samples, 7680, 60) == wire.encode_pd_chunk(7, T0, samples, 7680, 60)
    rng = np.random.default_rng(0)
    window = np.concatenate([ref.synthetic_second(rng, i, 7680, 60) for i in range(2)])
    image = ref.prpd_image(window, 0.0, 7680, 60)
    frame = wire.decode_message("mad/sensors/s1/prpd", ref.prpd_frame(T0, ref.png_rgb(image)))
    np.testing.assert_array_equal(frame.image, image)  # the stdlib PNG writer is lossless and valid
