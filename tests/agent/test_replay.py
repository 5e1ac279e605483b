"""Replay: recordings drive the same core on a simulated clock; bad files fail clearly; the CLI's outputs."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_pipeline import void_when_loud  # the pipeline tests' double: Void when a window is loud

from agent.cli import main as agent_main
from agent.commands import replay as replay_command
from agent.core.events import AlarmEvent
from agent.core.types import PrpdFrame, SampleChunk
from agent.core.windowing import WINDOW_NS
from agent.inference import FunctionClassifier
from agent.replay import ReplayError, merged_items, replay
from agent.scoring import score_replay
from agent.settings import load_settings
from mad.data.recording import RecordingFormatError, RecordingWriter, read_recording

START = 88_000 * WINDOW_NS
RATE = 64  # Hz: tiny recordings; the core resamples to the model's rate like any off-rate sensor
FAULT = [0, 0, 100, 100, 100, 100, 100, 0, 0, 0, 0]  # per-window level: loud = Void for the double
CLEAN = [0] * len(FAULT)
SHIPPED_MODEL = replay_command.REPO_MODELS_DIR / "mad_small.safetensors"


def double() -> FunctionClassifier:
    return FunctionClassifier(void_when_loud, name="double", version="1")


def write_recording(path: Path, levels: dict[str, list[int]], rate: int = RATE, frames: tuple[str, ...] = ("a",),
                    seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    per_window = 20 * rate
    with RecordingWriter(path, overwrite=True) as writer:
        for sensor, sensor_levels in levels.items():
            writer.add_sensor(sensor, sample_rate_hz=rate, start_time_ns=START, power_freq_hz=60.0)
            series = np.concatenate([level + rng.integers(-3, 4, per_window) for level in sensor_levels])
            writer.append_samples(sensor, series.astype(np.int16))
            for w, level in enumerate(sensor_levels):
                t0 = START + w * WINDOW_NS
                writer.add_truth(sensor, t0, t0 + WINDOW_NS, 4 if level > 50 else 0)
                if sensor in frames:
                    writer.append_prpd_frame(sensor, t0, np.zeros((256, 256, 3), np.uint8))
    return path


def counting_ids():
    counter = itertools.count()
    return lambda: str(uuid.UUID(int=next(counter)))


@pytest.fixture
def two_sensors(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "rec.h5", {"a": FAULT, "b": CLEAN})


def test_alarm_raised_and_cleared_on_the_faulty_sensor_only(two_sensors: Path):
    with read_recording(two_sensors) as recording:
        outcome = replay(recording, load_settings(), double())
        truth = {s: recording.sensors[s].truth for s in recording.sensors}
    # k=3 of n=5: the third loud window (index 4) raises; 3 clean windows in a row (7, 8, 9) clear.
    assert [(e.kind, e.sensor_id, e.class_name, (e.window_start_ns - START) // WINDOW_NS) for e in outcome.events] == [
        ("new", "a", "Void", 4),
        ("end", "a", "Void", 9),
    ]
    assert outcome.windows_per_sensor == {"a": 11, "b": 11}
    for sensor in ("a", "b"):
        starts = [r.window_start_ns for r in outcome.results if r.sensor_id == sensor]
        assert starts == [START + w * WINDOW_NS for w in range(11)]  # every window, in order
    # a has PRPD frames, b has none: b's images are rendered from its samples and marked degraded.
    assert outcome.degraded_per_sensor == {"a": 0, "b": 11}
    assert outcome.counters["frames_paired"] == 11 and outcome.counters["chunks_rejected"] == 0
    assert outcome.simulated_s == pytest.approx(11 * 20)
    scores = score_replay(truth, outcome.events, outcome.results)
    assert scores["a"].faults[0].detection_delay_s == 60 and scores["a"].faults[0].clear_delay_s == 60
    assert scores["b"].false_alarms == [] and scores["a"].accuracy == 1.0


def test_replay_is_deterministic(two_sensors: Path):
    runs = []
    for _ in range(2):
        with read_recording(two_sensors) as recording:
            outcome = replay(recording, load_settings(), double(), chunk_seconds=3.0, event_id_factory=counting_ids())
        runs.append(([e.to_json() for e in outcome.events], outcome.results))
    assert runs[0] == runs[1]


def test_items_arrive_in_time_order_frames_before_the_chunk_that_closes_their_window(two_sensors: Path):
    with read_recording(two_sensors) as recording:
        items = list(merged_items(recording, ["a", "b"], 5.0, {}))
    arrivals = [item.arrival_ns for item in items]
    assert arrivals == sorted(arrivals)
    chunks = [i for i in items if isinstance(i.payload, SampleChunk)]
    frames = [i for i in items if isinstance(i.payload, PrpdFrame)]
    assert len(chunks) == 2 * 11 * 4 and len(frames) == 11  # 5 s chunks; frames only for a
    assert all(c.arrival_ns == c.payload.t0_ns + 5 * 10**9 for c in chunks)  # a chunk arrives at its last sample
    assert all(f.arrival_ns == f.payload.window_start_ns + WINDOW_NS for f in frames)
    for frame in frames:  # at the same instant the frame comes first
        same_time = [i for i in items if i.arrival_ns == frame.arrival_ns]
        assert same_time[0] is frame
    assert [c.payload.seq for c in chunks if c.sensor_id == "a"] == list(range(44))


def test_speed_paces_replay_against_the_wall_clock(two_sensors: Path):
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with read_recording(two_sensors) as recording:
        outcome = replay(recording, load_settings(), double(), speed=10.0, sleep=sleep, wall_clock=lambda: now[0])
        assert outcome.wall_s == pytest.approx(outcome.simulated_s / 10)
        assert all(s > 0 for s in slept) and len(slept) == 44  # one wait per distinct arrival time (5 s apart)
        with pytest.raises(ReplayError, match="speed must be > 0"):
            replay(recording, load_settings(), double(), speed=0)


def test_ctrl_c_stops_feeding_and_still_finishes_the_windows_fed(two_sensors: Path):
    now, calls = [0.0], itertools.count()

    def sleep(seconds: float) -> None:
        if next(calls) == 20:  # about 100 s of recording in
            raise KeyboardInterrupt
        now[0] += seconds

    with read_recording(two_sensors) as recording:
        outcome = replay(recording, load_settings(), double(), speed=1.0, sleep=sleep, wall_clock=lambda: now[0])
    assert outcome.interrupted
    assert outcome.simulated_s == pytest.approx(100.0)
    assert outcome.windows_per_sensor == {"a": 5, "b": 5}  # windows 0-4, the open one closed by the flush
    assert [e.kind for e in outcome.events] == ["new"]


def test_broken_sensor_is_skipped_and_the_valid_one_replays(two_sensors: Path):
    with h5py.File(two_sensors, "r+") as f:
        del f["sensors/b"].attrs["sample_rate_hz"]
    with read_recording(two_sensors) as recording:
        assert "sample_rate_hz" in recording.errors["b"] and "/sensors/b" in recording.errors["b"]
        outcome = replay(recording, load_settings(), double())
        assert outcome.sensors == ["a"] and outcome.windows_per_sensor == {"a": 11}
        with pytest.raises(ReplayError, match=r"\['b'\] not replayable.*sample_rate_hz"):
            replay(recording, load_settings(), double(), sensors=["b"])


def test_unreadable_block_stops_only_that_sensor(tmp_path: Path):
    path = write_recording(tmp_path / "rec.h5", {"a": FAULT, "b": CLEAN}, rate=2560)
    with h5py.File(path, "r") as f:
        info = f["sensors/b/samples"].id.get_chunk_info(3)  # 4th 5 s block: windows 0-2 still readable
    with path.open("r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(np.random.default_rng(1).integers(0, 256, info.size, np.uint8).tobytes())
    with read_recording(path) as recording:
        outcome = replay(recording, load_settings(), double())
    assert list(outcome.failed_sensors) == ["b"] and "/sensors/b" in outcome.failed_sensors["b"]
    assert outcome.windows_per_sensor["a"] == 11
    assert 0 < outcome.windows_per_sensor["b"] < 11


def test_truncated_file_is_a_format_error(two_sensors: Path):
    data = two_sensors.read_bytes()
    two_sensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingFormatError, match=str(two_sensors)):
        read_recording(two_sensors)


# ---- CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def with_double(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_command, "load_classifier", lambda path, device, threads=0: double())


def test_cli_json_lines_out_file_and_plot(two_sensors: Path, tmp_path: Path, with_double, capsys):
    out, plot = tmp_path / "alarms.jsonl", tmp_path / "timeline.png"
    rc = agent_main(["replay", str(two_sensors), "--json", "--out", str(out), "--plot", str(plot)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    events = [AlarmEvent.from_json(line) for line in lines]  # stdout holds alarm JSON only
    assert [(e.kind, e.sensor_id) for e in events] == [("new", "a"), ("end", "a")]
    assert out.read_text().splitlines() == lines
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "windows/s" in captured.err and "detection delay" in captured.err


def test_cli_human_output_names_the_alarm(two_sensors: Path, with_double, capsys):
    assert agent_main(["replay", str(two_sensors), "--sensors", "a"]) == 0
    out = capsys.readouterr().out
    assert "NEW" in out and "Void" in out and "END" in out
    rows = out.splitlines()
    assert any(row.startswith("a ") for row in rows) and not any(row.startswith("b ") for row in rows)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("garbage", "not a readable HDF5 file"),
        ("truncate", "not a readable HDF5 file"),
        ("format", "attr format="),
    ],
)
def test_cli_bad_file_exits_2_with_message(two_sensors: Path, with_double, capsys, breakage: str, message: str):
    if breakage == "garbage":
        two_sensors.write_bytes(b"not hdf5 at all")
    elif breakage == "truncate":
        two_sensors.write_bytes(two_sensors.read_bytes()[:4096])
    else:
        with h5py.File(two_sensors, "r+") as f:
            f.attrs["format"] = "something-else"
    rc = agent_main(["replay", str(two_sensors)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and str(two_sensors) in err and "Traceback" not in err


def test_cli_warns_about_a_broken_sensor_and_replays_the_rest(two_sensors: Path, with_double, capsys):
    with h5py.File(two_sensors, "r+") as f:
        del f["sensors/b/samples"]
    assert agent_main(["replay", str(two_sensors)]) == 0
    captured = capsys.readouterr()
    assert "warning: skipping broken sensor" in captured.err and "/sensors/b: dataset 'samples' missing" in captured.err
    assert "NEW" in captured.out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sensors", "a,zz"], "['zz'] not replayable"),
        (["--speed", "0"], "--speed must be > 0"),
        (["--config", "/nonexistent/agent.toml"], "file not found"),
    ],
)
def test_cli_bad_arguments_exit_2(two_sensors: Path, with_double, capsys, extra: list[str], message: str):
    assert agent_main(["replay", str(two_sensors), *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_model_exits_2(two_sensors: Path, tmp_path: Path, capsys):
    assert agent_main(["replay", str(two_sensors), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "model:" in capsys.readouterr().err


def test_default_model_is_the_repo_copy_unless_configured(tmp_path: Path):
    deployed = replay_command.ModelSection.model_fields["path"].default  # present only on an installed host
    expected = deployed if deployed.exists() else SHIPPED_MODEL
    assert replay_command.resolve_model_path(load_settings(), None) == expected
    configured = tmp_path / "agent.toml"
    configured.write_text('[model]\npath = "/srv/models/other.safetensors"\n')
    assert replay_command.resolve_model_path(load_settings(configured), None) == Path("/srv/models/other.safetensors")
    assert replay_command.resolve_model_path(load_settings(), tmp_path / "x.pt") == tmp_path / "x.pt"


# ---- end to end with the shipped model --------------------------------------------------------------


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"shipped model {SHIPPED_MODEL} absent (trained separately)")
def test_shipped_model_raises_and_clears_a_scripted_void(tmp_path: Path, capsys):
    from train.cli import main as train_main

    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps({
        "0": [{"from_min": 0, "label": "Normal"}, {"from_min": 1, "label": "Void", "intensity": 0.8,
                                                   "to_intensity": 1.0}, {"from_min": 3, "label": "Normal"}],
        "1": [{"from_min": 0, "label": "Normal"}],
    }))
    path = tmp_path / "rec.h5"
    assert train_main(["synth-recording", "--out", str(path), "--sensors", "2", "--minutes", "4.4", "--schedule",
                       str(schedule), "--seed", "3", "--start-time-ns", str(START)]) == 0
    out = tmp_path / "alarms.jsonl"
    assert agent_main(["replay", str(path), "--model", str(SHIPPED_MODEL), "--out", str(out)]) == 0
    events = [AlarmEvent.from_json(line) for line in out.read_text().splitlines()]
    onset, fault_end = START + 3 * WINDOW_NS, START + 9 * WINDOW_NS
    raised = [e for e in events if e.sensor_id == "sensor-0" and e.kind == "new"]
    assert raised and raised[0].class_name == "Void", capsys.readouterr().out
    # k=3 of n=5 needs 3 Void windows: at best 60 s after onset; allow all 5 of the first n windows.
    assert onset + 3 * WINDOW_NS <= raised[0].window_end_ns <= onset + 5 * WINDOW_NS
    ends = [e for e in events if e.sensor_id == "sensor-0" and e.kind == "end"]
    assert ends and fault_end < ends[-1].window_end_ns <= fault_end + 4 * WINDOW_NS
    assert [e for e in events if e.sensor_id == "sensor-1"] == []
