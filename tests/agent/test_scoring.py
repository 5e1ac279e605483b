"""Scoring: scripted alarms against scripted truth give exactly the expected delay, misses, false alarms, accuracy."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from agent.core.events import AlarmEvent
from agent.core.pipeline import WindowResult
from agent.scoring import alarm_raises, fault_intervals, labels_at, score_replay, score_sensor
from mad.constants import CLASS_NAMES

W = 20_000_000_000  # one 20 s window in ns
T0 = 88_000 * W
NORMAL, NOISE, SURFACE, CORONA, VOID = range(5)


def event(kind: str, sensor: str, class_name: str, window: int, seq: int = 0) -> AlarmEvent:
    probabilities = dict.fromkeys(CLASS_NAMES, 0.0) | {class_name: 0.9}
    event_id = str(uuid.uuid4())
    return AlarmEvent.create(
        event_id=event_id, alarm_id=event_id, since_ns=T0 + window * W,
        kind=kind, sensor_id=sensor, class_name=class_name, probabilities=probabilities,
        severity="high", window_start_ns=T0 + window * W, window_end_ns=T0 + (window + 1) * W, model_name="m",
        model_version="1", agent_id="a", seq=seq,
    )


def result(sensor: str, window: int, class_name: str) -> WindowResult:
    probabilities = dict.fromkeys(CLASS_NAMES, 0.0) | {class_name: 1.0}
    return WindowResult(sensor, T0 + window * W, T0 + (window + 1) * W, probabilities, class_name, "clean", False,
                        None, 0, 0.0, "m", "1")


def truth(*runs: tuple[int, int, int]) -> np.ndarray:
    """(first window, last window exclusive, label) runs -> (K, 3) ns rows, one per window like the generator."""
    return np.array([(T0 + w * W, T0 + (w + 1) * W, label) for a, b, label in runs for w in range(a, b)], np.int64)


def test_detected_fault_delay_clear_and_accuracy():
    # Void from window 3 to 8; alarm raised on window 5 (3rd void window), cleared on window 10.
    gt = truth((0, 3, NORMAL), (3, 8, VOID), (8, 12, NORMAL))
    events = [event("new", "s", "Void", 5, 0), event("update", "s", "Void", 6, 1), event("end", "s", "Void", 10, 2)]
    predicted = ["Normal"] * 3 + ["Void"] * 2 + ["Corona"] + ["Void"] * 2 + ["Normal", "Noise"] + ["Normal"] * 2
    results = [result("s", w, c) for w, c in enumerate(predicted)]
    score = score_sensor("s", gt, events, results)
    (fault,) = score.faults
    assert (fault.class_name, fault.start_ns, fault.end_ns) == ("Void", T0 + 3 * W, T0 + 8 * W)
    assert fault.detection_delay_s == 60.0  # window 5 ends 3 windows after onset
    assert fault.clear_delay_s == 60.0  # window 10 ends 3 windows after the fault's end
    assert score.missed == 0 and score.false_alarms == []  # a severity update is not a second raise
    assert (score.windows, score.windows_scored, score.windows_correct) == (12, 12, 10)
    assert score.accuracy == pytest.approx(10 / 12)


def test_missed_fault_and_false_alarms_on_clean_and_wrong_class():
    gt = truth((0, 4, NORMAL), (4, 7, CORONA), (7, 10, NOISE))
    events = [
        event("new", "s", "Surface", 1, 0),  # truth Normal: false
        event("end", "s", "Surface", 3, 1),
        event("new", "s", "Void", 5, 2),  # truth Corona, wrong class: false, and the Corona fault is missed
        event("update", "s", "Void", 6, 3),  # severity-only update: not a raise
        event("update", "s", "Noise", 8, 4),  # class switch during interference: a raise, false
    ]
    score = score_sensor("s", gt, events, [])
    assert score.missed == 1 and score.faults[0].detection_delay_s is None and score.faults[0].clear_delay_s is None
    assert [(a.class_name, a.truth, a.window_start_ns) for a in score.false_alarms] == [
        ("Surface", "Normal", T0 + W), ("Void", "Corona", T0 + 5 * W), ("Noise", "Noise", T0 + 8 * W)
    ]  # an alarm naming a non-defect class is false even where the truth agrees
    assert score.accuracy is None and score.windows == 0


def test_raise_for_the_true_class_is_not_false_and_raise_before_onset_does_not_detect():
    gt = truth((0, 3, NORMAL), (3, 6, SURFACE))
    early = event("new", "s", "Surface", 1, 0)  # before onset: false alarm, and it must not count as detection
    score = score_sensor("s", gt, [early, event("end", "s", "Surface", 2, 1), event("new", "s", "Surface", 4, 2)], [])
    assert score.faults[0].detection_delay_s == 40.0
    assert [(a.class_name, a.truth) for a in score.false_alarms] == [("Surface", "Normal")]


def test_alarm_where_truth_is_missing_is_false_and_unscored_windows_are_skipped():
    gt = truth((0, 2, NORMAL))
    score = score_sensor("s", gt, [event("new", "s", "Void", 5)], [result("s", 0, "Normal"), result("s", 5, "Void")])
    assert [(a.class_name, a.truth) for a in score.false_alarms] == [("Void", None)]
    assert (score.windows, score.windows_scored, score.windows_correct) == (2, 1, 1)


def test_adjacent_same_class_intervals_merge_and_other_sensors_are_ignored():
    gt = truth((0, 2, NORMAL), (2, 5, VOID), (5, 7, CORONA))
    assert fault_intervals(gt) == [("Void", T0 + 2 * W, T0 + 5 * W), ("Corona", T0 + 5 * W, T0 + 7 * W)]
    events = [event("new", "other", "Void", 3), event("new", "s", "Void", 4), event("update", "s", "Corona", 6)]
    scores = score_replay({"s": gt, "no-truth": np.zeros((0, 3), np.int64)}, events, [])
    assert list(scores) == ["s"]
    assert [f.detection_delay_s for f in scores["s"].faults] == [60.0, 40.0]  # class switch by update detects
    assert scores["s"].false_alarms == []


def test_raises_are_new_and_class_switches():
    events = [event("new", "s", "Void", 1, 0), event("update", "s", "Void", 2, 1), event("update", "s", "Corona", 3, 2),
              event("end", "s", "Corona", 4, 3), event("new", "s", "Corona", 5, 4)]
    assert [e.seq for e in alarm_raises(events)] == [0, 2, 4]


def test_labels_at_later_interval_wins_and_gaps_are_unknown():
    gt = np.array([[0, 100, NORMAL], [50, 150, VOID], [200, 300, NOISE]], np.int64)
    assert labels_at(gt, np.array([0, 49, 50, 149, 150, 199, 200, 300])).tolist() == [0, 0, 4, 4, -1, -1, 1, -1]


def test_bad_truth_is_refused_naming_the_sensor():
    with pytest.raises(ValueError, match="sensor 'x'"):
        score_sensor("x", np.array([[10, 5, 0]], np.int64), [], [])
    with pytest.raises(ValueError, match="sensor 'y'"):
        score_sensor("y", np.zeros((2, 2), np.int64), [], [])
