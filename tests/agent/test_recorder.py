"""Recorder: chunks placed by timestamp (gaps filled, overlaps trimmed, bad input counted), and
simulate -> Mosquitto -> record -> read_recording gives back exactly what the simulator sent."""

from __future__ import annotations

import threading

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.intake import RawMessage
from agent.recorder import Recorder, RecordSession
from agent.simulator import SimulationConfig, WindowSource, load_schedule, parse_broker_url, run_simulation
from mad.constants import CLASS_NAMES
from mad.data.recording import RecordingWriter, read_recording
from mad.data.synthetic import generate_stream_segment

START_NS = 1_767_225_600 * 10**9
TOPICS = wire.Topics()


def chunk(sensor: str, seq: int, t0_ns: int, samples, rate: float = 100.0) -> RawMessage:
    payload = wire.encode_pd_chunk(seq, t0_ns, np.asarray(samples), rate, 60.0)
    return RawMessage(TOPICS.for_sensor("pd", sensor), payload, 0)


def test_chunks_are_placed_by_time_with_gaps_filled_and_overlaps_trimmed(tmp_path):
    out = tmp_path / "r.h5"
    with RecordingWriter(out) as writer:
        recorder = Recorder(writer)
        recorder.handle(chunk("a", 0, START_NS, np.arange(10, dtype=np.int16)))  # 100 Hz: 0.1 s
        recorder.handle(chunk("a", 1, START_NS + 150_000_000, np.full(5, 7, np.int16)))  # 5-sample gap
        recorder.handle(chunk("a", 2, START_NS + 180_000_000, np.arange(4, dtype=np.int16)))  # overlaps 2
        recorder.handle(chunk("a", 3, START_NS + 200_000_000, np.arange(2, dtype=np.int32)))  # all seen before
        recorder.handle(chunk("a", 4, START_NS + 220_000_000, np.array([40_000], np.int32)))  # not int16
        recorder.handle(chunk("a", 5, START_NS + 220_000_000, np.zeros(3, np.int16), rate=200.0))  # rate change
        recorder.handle(chunk("a", 6, START_NS + 10**12, np.zeros(3, np.int16)))  # 1000 s jump
        recorder.handle(RawMessage(TOPICS.for_sensor("pd", "a"), b"junk", 0))
        recorder.handle(RawMessage(TOPICS.for_sensor("prpd", "b"), wire.encode_prpd_frame(
            START_NS, wire.image_to_png(np.zeros((256, 256, 3), np.uint8))), 0))
    with read_recording(out) as recording:
        stream = recording.sensors["a"]
        assert stream.start_time_ns == START_NS and stream.sample_rate_hz == 100.0
        expected = np.concatenate([np.arange(10), np.full(5, 7), np.full(5, 7), [2, 3]])
        np.testing.assert_array_equal(stream.read_samples(0, stream.n_samples), expected)
    problems = recorder.report.problems
    assert problems["gap_filled"] == 1 and recorder.report.gap_samples == 5
    assert problems["overlap_trimmed"] == 2 and recorder.report.trimmed_samples == 4
    assert problems["not_int16"] == 1 and problems["rate_changed"] == 1 and problems["gap_too_large"] == 1
    assert problems["wire:truncated_header"] == 1 and problems["frame_before_samples"] == 1


def test_sensor_filter_ignores_other_sensors(tmp_path):
    with RecordingWriter(tmp_path / "r.h5") as writer:
        recorder = Recorder(writer, sensors={"keep"})
        recorder.handle(chunk("keep", 0, START_NS, np.zeros(4, np.int16)))
        recorder.handle(chunk("drop", 0, START_NS, np.zeros(4, np.int16)))
    assert dict(recorder.report.chunks) == {"keep": 1}


@pytest.mark.mqtt
def test_simulate_broker_record_roundtrip(mqtt_broker, tmp_path, until):
    broker = parse_broker_url(f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}")
    schedule = load_schedule({"0": [{"from_min": 0, "label": "Corona", "intensity": 0.9}]}, 2, 40.0)
    cfg = SimulationConfig(sensors=2, duration_s=40.0, start_ns=START_NS, speed=200.0, preset="easy",
                           schedule=schedule)
    out = tmp_path / "recorded.h5"
    session = RecordSession(broker, out, sensors=["sensor-0", "sensor-1"])
    assert session.subscribed.wait(5)
    stop = threading.Event()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=session.run(60.0, stop)))
    thread.start()

    publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="sim-test")
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    infos = []
    run_simulation(cfg, WindowSource("easy", 0, 60.0), lambda t, p: infos.append(publisher.publish(t, p, qos=1)))
    for info in infos:
        info.wait_for_publish(10)
    until(lambda: sum(session.recorder.report.frames.values()) == 4, 10, "4 PRPD frames recorded")
    stop.set()
    thread.join(10)
    publisher.disconnect()
    publisher.loop_stop()

    report = result["report"]
    assert dict(report.chunks) == {"sensor-0": 40, "sensor-1": 40} and not report.problems
    with read_recording(out) as recording:
        assert sorted(recording.sensors) == ["sensor-0", "sensor-1"] and not recording.errors
        for s, label in ((0, "Corona"), (1, "Normal")):
            stream = recording.sensors[f"sensor-{s}"]
            assert stream.start_time_ns == START_NS and stream.power_freq_hz == 60.0
            truth = [generate_stream_segment("easy", 0, s, w, CLASS_NAMES.index(label), 0.9 if s == 0 else 0.7, 60.0)
                     for w in range(2)]
            np.testing.assert_array_equal(stream.read_samples(0, stream.n_samples),
                                          np.concatenate([t.series.reshape(-1) for t in truth]))
            np.testing.assert_array_equal(stream.prpd_start_ns, [START_NS, START_NS + 20 * 10**9])
            for w in range(2):
                np.testing.assert_array_equal(stream.read_frame(w), truth[w].image)


# ---- --rate: stored at another rate through the agent's own resampler -----------------------------------


def native_stream(rate: int, seconds: int, seed: int = 0) -> np.ndarray:
    """int16 floor (uniform +-3 counts: far below the peak-hold gate) with large pulses of both signs."""
    rng = np.random.default_rng(seed)
    series = 30 + rng.integers(-3, 4, rate * seconds)
    spacing = series.size // 40  # > 3 output samples apart at any rate here: one pulse per output bin
    where = np.arange(40) * spacing + rng.integers(0, spacing // 2, 40)
    series[where] = np.where(np.arange(40) % 2, 400, -300)
    return series.astype(np.int16)


@pytest.mark.parametrize("rate", [76_800, 1_000_000, 3_840])
def test_rate_option_stores_the_agents_conversion_of_the_series(tmp_path, rate):
    """1 s chunks in, 7,680 Hz out: the file holds exactly what peak_hold_resample makes of the whole series
    (the converter's blocks end on common grid boundaries), with the pulses at their amplitude."""
    from mad.data.resample import peak_hold_resample

    series = native_stream(rate, 4)
    out = tmp_path / "r.h5"
    with RecordingWriter(out) as writer:
        recorder = Recorder(writer, rate_hz=7680)
        for second in range(4):
            recorder.handle(chunk("a", second, START_NS + second * 10**9, series[second * rate:(second + 1) * rate],
                                  rate=rate))
        recorder.flush()
    with read_recording(out) as recording:
        stream = recording.sensors["a"]
        stored = stream.read_samples(0, stream.n_samples)
        assert stream.sample_rate_hz == 7680.0 and stream.start_time_ns == START_NS
    expected = peak_hold_resample(series, 4 * 7680)
    np.testing.assert_array_equal(stored, expected)
    if rate > 7680:  # every pulse kept (upsampling holds each twice)
        assert np.count_nonzero(stored == 400) == 20 and np.count_nonzero(stored == -300) == 20
    assert dict(recorder.report.chunks) == {"a": 4} and not recorder.report.problems


def test_rate_option_fills_gaps_before_converting_and_flushes_the_tail(tmp_path):
    rate = 76_800
    out = tmp_path / "r.h5"
    with RecordingWriter(out) as writer:
        recorder = Recorder(writer, rate_hz=7680)
        recorder.handle(chunk("a", 0, START_NS, np.full(rate, 30, np.int16), rate=rate))
        recorder.handle(chunk("a", 1, START_NS + 2 * 10**9, np.full(rate // 2 + 5, 31, np.int16), rate=rate))
        recorder.flush()
    with read_recording(out) as recording:
        stream = recording.sensors["a"]
        stored = stream.read_samples(0, stream.n_samples)
    # 1 s, 1 s of gap filled with the next chunk's median, then 0.5 s + 5 native samples: the tail's
    # 3,840.5 output samples round to 3,840 at the end of the recording.
    assert stored.size == 7680 * 2 + 3840
    assert (stored[:7680] == 30).all() and (stored[7680:] == 31).all()
    assert recorder.report.gap_samples == rate and recorder.report.problems["gap_filled"] == 1


def test_rate_option_refuses_a_sensor_the_agent_could_not_window(tmp_path):
    with RecordingWriter(tmp_path / "r.h5") as writer:
        recorder = Recorder(writer, rate_hz=7680)
        recorder.handle(chunk("a", 0, START_NS, np.zeros(100, np.int16), rate=1000.01))
        recorder.flush()
    assert recorder.report.problems == {"rate_not_convertible": 1} and not recorder.report.chunks
    with pytest.raises(ValueError, match=r"rate_hz=0\.0 must be > 0"):
        Recorder(writer, rate_hz=0.0)


@pytest.mark.parametrize("bad", ["0", "-7680", "7680.01", "nan"])
def test_record_cli_refuses_a_bad_rate_before_connecting(tmp_path, capsys, bad):
    from agent.cli import main as agent_main

    code = agent_main(["record", "--broker", "mqtt://127.0.0.1:1", "--out", str(tmp_path / "r.h5"),
                       "--duration", "1", "--rate", bad])
    assert code == 2 and "--rate" in capsys.readouterr().err and not (tmp_path / "r.h5").exists()
