"""Simulator: broker URLs, the message plan (chunks rebuild the generator's windows, frames at window end),
the reused synth-recording schedule, window pools, and pacing."""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest

from agent import wire
from agent.commands.simulate import _bins
from agent.simulator import (
    SimulationConfig,
    SimulationError,
    WindowSource,
    load_schedule,
    parse_broker_url,
    plan_messages,
    prpd_counts,
    run_simulation,
)
from mad.constants import CLASS_NAMES, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from mad.data.prpd import detect_pulses
from mad.data.synthetic import generate_stream_segment

START_NS = 1_767_225_600 * 10**9  # 2026-01-01, a 20 s boundary


def config(**overrides) -> SimulationConfig:
    base = dict(sensors=2, duration_s=40.0, start_ns=START_NS, preset="easy",
                schedule=load_schedule({"0": [{"from_min": 0, "label": "Void", "intensity": 1.0}]}, 2, 40.0))
    base.update(overrides)
    return SimulationConfig(**base)


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://localhost", ("localhost", 1883, False, None, None)),
    ("mqtts://broker.plant:8884", ("broker.plant", 8884, True, None, None)),
    ("mqtts://sim@10.0.0.5", ("10.0.0.5", 8883, True, "sim", None)),
    ("mqtt://sim:p%40ss@h:1", ("h", 1, False, "sim", "p@ss")),
])
def test_broker_url_forms(url, expected):
    b = parse_broker_url(url)
    assert (b.host, b.port, b.tls, b.username, b.password) == expected
    assert "p@ss" not in repr(b)


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:99999", "mqtt://h/topic", "h:1883"])
def test_bad_broker_url_is_named(url):
    with pytest.raises(SimulationError, match="--broker"):
        parse_broker_url(url)


def test_chunks_rebuild_the_generator_windows_and_frames_follow_each_window():
    messages = list(plan_messages(config(), WindowSource("easy", 0, 60.0)))
    chunks = [wire.decode_message(m.topic, m.payload) for m in messages if m.payload[:4] == wire.PD_MAGIC]
    frames = [(i, wire.decode_message(m.topic, m.payload)) for i, m in enumerate(messages)
              if m.payload[:4] == wire.PRPD_MAGIC]
    assert len(chunks) == 2 * 40 and len(frames) == 2 * 2
    for s, label in ((0, CLASS_NAMES.index("Void")), (1, CLASS_NAMES.index("Normal"))):
        mine = [c for c in chunks if c.sensor_id == f"sensor-{s}"]
        assert [c.seq for c in mine] == list(range(40))
        assert [c.t0_ns for c in mine] == [START_NS + k * 10**9 for k in range(40)]
        assert all(c.n == SAMPLE_RATE_HZ and c.sample_rate_hz == SAMPLE_RATE_HZ for c in mine)
        for w in range(2):
            truth = generate_stream_segment("easy", 0, s, w, label, 1.0 if s == 0 else 0.7, 60.0)
            got = np.concatenate([c.samples for c in mine[20 * w:20 * (w + 1)]])
            np.testing.assert_array_equal(got, truth.series.reshape(-1))
            frame = next(f for _, f in frames if f.sensor_id == f"sensor-{s}" and
                         f.window_start_ns == START_NS + w * 20 * 10**9)
            np.testing.assert_array_equal(frame.image, truth.image)
    due = [m.due_s for m in messages]
    assert due == sorted(due) and due[-1] == 40.0
    first_frame_index = frames[0][0]
    assert messages[first_frame_index - 1].due_s == 20.0  # the frame leaves with the window's last chunk


def test_duration_cuts_mid_window_without_a_frame():
    messages = list(plan_messages(config(sensors=1, duration_s=23.0), WindowSource("easy", 0, 60.0, pool=1)))
    kinds = [m.payload[:4] for m in messages]
    assert kinds.count(wire.PD_MAGIC) == 23 and kinds.count(wire.PRPD_MAGIC) == 1


def test_a_stream_started_mid_window_skips_the_earlier_chunks():
    messages = list(plan_messages(config(sensors=1, duration_s=10.0, start_ns=START_NS + 15_500_000_000),
                                  WindowSource("easy", 0, 60.0, pool=1)))
    chunks = [wire.decode_message(m.topic, m.payload) for m in messages if m.payload[:4] == wire.PD_MAGIC]
    assert [c.t0_ns - START_NS for c in chunks] == [k * 10**9 for k in range(16, 26)]
    assert [m.due_s for m in messages][:1] == [1.0]  # due times count from the first chunk sent
    frames = [wire.decode_message(m.topic, m.payload) for m in messages if m.payload[:4] == wire.PRPD_MAGIC]
    assert [f.window_start_ns for f in frames] == [START_NS]


def test_a_stream_started_in_the_last_chunk_of_a_window_sends_no_frame_for_it():
    # 19.5 s into a window with 1 s chunks: the window's every chunk is skipped, so is its frame
    messages = list(plan_messages(config(sensors=1, duration_s=5.0, start_ns=START_NS + 19_500_000_000),
                                  WindowSource("easy", 0, 60.0, pool=1)))
    chunks = [wire.decode_message(m.topic, m.payload) for m in messages if m.payload[:4] == wire.PD_MAGIC]
    assert [c.t0_ns - START_NS for c in chunks] == [k * 10**9 for k in range(20, 25)]
    assert not [m for m in messages if m.payload[:4] == wire.PRPD_MAGIC]


def test_pool_cycles_a_few_windows_per_class():
    source = WindowSource("easy", 0, 60.0, pool=2)
    a = [source.window(s, w, 4, 0.5) for s in range(3) for w in range(3)]
    assert len({id(x) for x in a}) == 2  # only two windows ever generated for this class
    assert source.window(0, 0, 0, 0.5).label == 0


def test_schedule_uses_the_synth_recording_parser():
    with pytest.raises(SimulationError, match="label"):
        load_schedule({"0": [{"from_min": 0, "label": "Arcing"}]}, 1, 60.0)
    with pytest.raises(SimulationError, match="index below"):
        load_schedule({"5": [{"from_min": 0, "label": "Void"}]}, 2, 60.0)
    default = load_schedule(None, 2, 600.0)
    assert default[0][-1]["label"] == "Void"


@pytest.mark.parametrize(("field", "value"), [("sensors", 0), ("duration_s", 0.0), ("speed", 0.0),
                                              ("chunk_s", 0.7), ("start_ns", 5),
                                              ("sensor_prefix", "bad/")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(SimulationError, match=field.split("_")[0]):
        config(**{field: value})


def test_pacing_follows_speed_and_stop_ends_early():
    cfg = config(sensors=1, duration_s=4.0, speed=20.0, chunk_s=0.5)
    sent: list[str] = []
    report = run_simulation(cfg, WindowSource("easy", 0, 60.0, pool=1), lambda t, p: sent.append(t))
    assert report.chunks == 8 and report.frames == 0 and len(sent) == 8
    assert report.wall_s >= 4.0 / 20.0 * 0.95  # event time ran 20x the wall clock, not faster
    stop = threading.Event()
    stop.set()
    assert run_simulation(cfg, WindowSource("easy", 0, 60.0, pool=1), lambda t, p: None, stop).chunks == 0


def test_matrix_format_sends_the_windows_pulses_as_count_matrices():
    source = WindowSource("easy", 0, 60.0, prpd_format="matrix", matrix_bins=(100, 32))
    messages = list(plan_messages(config(duration_s=20.0), source))
    frames = [m for m in messages if m.payload[:4] != wire.PD_MAGIC]
    assert len(frames) == 2 and all(m.payload[:4] == wire.PRPD_MATRIX_MAGIC for m in frames)
    for s, label in ((0, CLASS_NAMES.index("Void")), (1, CLASS_NAMES.index("Normal"))):
        truth = generate_stream_segment("easy", 0, s, 0, label, 1.0 if s == 0 else 0.7, 60.0)
        payload = next(m.payload for m in frames if m.topic == f"mad/sensors/sensor-{s}/prpd")
        header = wire.PRPD_MATRIX_HEADER.unpack_from(payload)
        assert header[4:9] == (START_NS, 100, 32, wire.AMPLITUDE_SCALE_CODES["linear"], 0)
        assert header[11] == 1200.0  # 20 s at 60 Hz
        counts = np.frombuffer(payload, wire.COUNT_DTYPES[header[2]], offset=wire.PRPD_MATRIX_HEADER.size)
        index, amplitude = detect_pulses(truth.series)
        assert counts.sum() == index.size  # every pulse the renderer would draw, binned once
        assert amplitude.size == 0 or amplitude.max() < header[9]  # the full scale holds the largest pulse
        frame = wire.decode_message(f"mad/sensors/sensor-{s}/prpd", payload)
        assert frame.source == "matrix" and frame.window_start_ns == START_NS


def test_prpd_counts_bins_phase_from_the_window_start():
    series = np.full(WINDOW_SAMPLES, 100, np.int16)
    series[::2] += np.random.default_rng(0).integers(-2, 3, WINDOW_SAMPLES // 2).astype(np.int16)
    series[32] = 900  # 32 samples = 1/4 of a 60 Hz cycle at 7,680 samples/s: 90 deg
    counts, full_scale = prpd_counts(series, 60.0, 64, 16)
    assert counts.sum() == 1 and np.argwhere(counts).tolist() == [[16, 14]]
    assert full_scale == pytest.approx(1.1 * 800)


def test_bad_prpd_format_or_matrix_bins_are_named():
    with pytest.raises(SimulationError, match="prpd_format"):
        WindowSource("easy", 0, 60.0, prpd_format="bmp")
    for bins in ((4, 64), (128, 2048), (128,)):
        with pytest.raises(SimulationError, match="matrix_bins"):
            WindowSource("easy", 0, 60.0, prpd_format="matrix", matrix_bins=bins)
    assert _bins("360x128") == (360, 128)
    for text in ("360", "x128", "a x b", "-1x5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _bins(text)
