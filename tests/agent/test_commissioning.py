"""Commissioning: a sensor's PD-free background is measured from a recording, stored, validated on load,
and keeps a defect-looking background from alarming while a busier (PD-like) window still alarms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent import commissioning
from agent.cli import main as agent_main
from agent.commands import commission as commission_command
from agent.core.alarms import SensorAlarm, judge
from agent.core.windowing import WINDOW_NS
from agent.inference import FunctionClassifier
from agent.replay import replay
from agent.settings import AlarmsSection, load_settings
from mad.constants import CLASS_NAMES
from mad.data.recording import RecordingWriter, read_recording

START = 88_000 * WINDOW_NS
RATE = 256


def always_void(images, signals):
    """The fixture's failure in miniature: a model that calls every window Void."""
    out = np.full((signals.shape[0], 5), 0.01, np.float32)
    out[:, CLASS_NAMES.index("Void")] = 0.96
    return out


def write(path: Path, spikes_per_window: list[int], seed: int = 0, sensor: str = "cable-1") -> Path:
    """Quantised noise on a baseline of 40 counts plus `n` random impulses per 20 s window."""
    rng = np.random.default_rng(seed)
    n = 20 * RATE
    windows = []
    for spikes in spikes_per_window:
        series = 40 + rng.integers(-2, 3, n)
        series[rng.choice(n, spikes, replace=False)] += 300
        windows.append(series)
    with RecordingWriter(path, overwrite=True) as writer:
        writer.add_sensor(sensor, sample_rate_hz=RATE, start_time_ns=START, power_freq_hz=50.0)
        writer.append_samples(sensor, np.concatenate(windows).astype(np.int16))
    return path


@pytest.fixture
def void_model(monkeypatch):
    monkeypatch.setattr(commission_command, "load_classifier",
                        lambda path, device, threads=0: FunctionClassifier(always_void, name="void", version="t"))


def test_commission_writes_a_background_and_it_silences_a_background_alike_stream(tmp_path, void_model, capsys):
    background = write(tmp_path / "quiet.h5", [20] * 16, seed=1)  # 5 min 20 s, known free of PD
    state = tmp_path / "state"
    assert agent_main(["commission", str(background), "--minutes", "5", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "cable-1: 15 windows (5 min)" in out and "defect 100%" in out and "warning" in out
    stored = json.loads((state / "backgrounds" / "cable-1.json").read_text())
    assert stored["windows"] == 15 and stored["verdicts"] == {"defect": 1.0} and stored["top_classes"] == {"Void": 1.0}
    assert stored["baseline_counts"] == pytest.approx(40, abs=1) and 0.5 < stored["noise_sigma_counts"] < 3
    assert stored["activity_p95"] > 0  # the impulses count as activity

    loaded = commissioning.load(state, 10)
    assert set(loaded.backgrounds) == {"cable-1"} and not loaded.problems
    floor = {s: b.activity_p95 for s, b in loaded.backgrounds.items()}
    # Later: the same interference for 4 windows, then PD-like activity (20x the impulses) for 4.
    later = read_recording(write(tmp_path / "later.h5", [20] * 4 + [400] * 4, seed=2))
    classifier = FunctionClassifier(always_void, name="void", version="t")
    settings = load_settings(None, alarms={"window_k": 2, "window_n": 3})
    with later:
        plain = replay(later, settings, classifier)
        judged = replay(later, settings, classifier, background_activity=floor)
    first_plain = min(e.window_start_ns for e in plain.events if e.kind == "new")
    first_judged = min(e.window_start_ns for e in judged.events if e.kind == "new")
    assert (first_plain - START) // WINDOW_NS == 1  # without a background: a Void alarm on interference
    assert (first_judged - START) // WINDOW_NS == 5  # with it: only once the activity rose above it
    assert [r.outcome for r in judged.results[:4]] == ["uncertain"] * 4


def test_background_rules_in_the_state_machine():
    config = AlarmsSection(window_k=1, window_n=1, background_activity_factor=2.0, background_severity_factor=10.0)
    void = np.array([0.01, 0.01, 0.01, 0.01, 0.96], np.float32)
    assert judge(void, 19.9, config, background_activity=10.0).outcome == "uncertain"
    assert judge(void, 20.0, config, background_activity=10.0).outcome == "defect"
    assert judge(void, 0.0, config).outcome == "defect"  # not commissioned: activity is not asked
    off = AlarmsSection(background_activity_factor=0.0)
    assert judge(void, 0.0, off, background_activity=10.0).outcome == "defect"
    near, far = SensorAlarm(config, 10.0), SensorAlarm(config, 10.0)
    assert near.observe(void, 30.0).severity == "high" and far.observe(void, 100.0).severity == "high"
    medium = np.array([0.0, 0.0, 0.0, 0.15, 0.85], np.float32)
    assert SensorAlarm(config, 10.0).observe(medium, 30.0).severity == "medium"
    assert SensorAlarm(config, 10.0).observe(medium, 100.0).severity == "high"  # 10x the background: +1


def test_bad_background_files_are_reported_and_ignored(tmp_path):
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    good = commissioning.Background(
        sensor_id="s1", created="2026-12-03T00:00:00Z", source="x", windows=3, minutes=1.0, model_name="m",
        model_version="v", baseline_counts=1.0, noise_sigma_counts=1.0, activity_p50=0.0, activity_p95=1.0,
        activity_max=2.0, verdicts={"clean": 1.0}, top_classes={"Normal": 1.0})
    commissioning.save(tmp_path, good)
    (folder / "s2.json").write_text("{not json")
    (folder / "s3.json").write_text(good.model_copy(update={"sensor_id": "s1"}).model_dump_json())  # wrong name
    (folder / "s4.json").write_text(json.loads(json.dumps(good.model_dump_json())).replace('"windows":3',
                                                                                          '"windows":-1'))
    (folder / "s5.json").write_bytes(b" " * (commissioning.MAX_FILE_BYTES + 1))
    loaded = commissioning.load(tmp_path, 10)
    assert set(loaded.backgrounds) == {"s1"} and sorted(loaded.problems) == ["s2.json", "s3.json", "s4.json",
                                                                             "s5.json"]
    assert "windows" in loaded.problems["s4.json"] and "bytes" in loaded.problems["s5.json"]
    assert set(commissioning.load(tmp_path, 1).backgrounds) == {"s1"}  # bounded by max_sensors
    assert commissioning.not_commissioned(["s1", "s9"], loaded.backgrounds) == ["s9"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--minutes", "0.5"], "--minutes"),
    (["--broker", "mqtt://localhost"], "one of them"),
    (["--sensors", "bad id"], "--sensors"),
    (["--sensors", "nope"], "no usable data"),
])
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, void_model, capsys, argv, message):
    recording = write(tmp_path / "r.h5", [5] * 4)
    assert agent_main(["commission", str(recording), "--state-dir", str(tmp_path / "s"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_too_little_data_is_refused_not_stored(tmp_path, void_model, capsys):
    recording = write(tmp_path / "short.h5", [5] * 2)  # 40 s: two windows
    assert agent_main(["commission", str(recording), "--state-dir", str(tmp_path / "s")]) == 2
    assert "need at least 3" in capsys.readouterr().err and not (tmp_path / "s" / "backgrounds").exists()
