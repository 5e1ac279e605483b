"""Score a replay against the recording's ground truth, per sensor.

Definitions (docs/replay.md says the same for users):
- A fault is a run of truth intervals with one defect class (Surface, Corona, Void), adjacent
  intervals of the same class merged.
- An alarm raise is an event `new`, or an `update` that switches the alarm to another class.
- Detection delay: from fault onset to the end of the window whose raise first names the fault's
  class (the earliest moment the alarm could be published), for a raise whose window overlaps the
  fault. A fault without one is missed.
- Clear delay: from the fault's end to the end of the window of the first `end` event after it.
- A false alarm is a raise whose window's truth (at its midpoint) is Normal or Noise, unknown, or
  another defect class than the one raised (a raise naming Normal or Noise is always false).
- Window accuracy: share of classified windows whose top class equals the truth at the window's
  midpoint (windows without truth are not scored). Windows the familiarity gate flagged `unfamiliar`
  are scored by their top class like the others, and counted apart (`windows_unfamiliar`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.clock import NS_PER_S
from agent.core.events import AlarmEvent
from agent.core.pipeline import WindowResult
from mad.constants import CLASS_NAMES

DEFECT_CLASSES = ("Surface", "Corona", "Void")


@dataclass(frozen=True, slots=True)
class Fault:
    class_name: str
    start_ns: int
    end_ns: int
    detected_ns: int | None = None  # window end of the detecting raise
    cleared_ns: int | None = None  # window end of the first `end` after the fault

    @property
    def detection_delay_s(self) -> float | None:
        return None if self.detected_ns is None else (self.detected_ns - self.start_ns) / NS_PER_S

    @property
    def clear_delay_s(self) -> float | None:
        return None if self.cleared_ns is None else (self.cleared_ns - self.end_ns) / NS_PER_S


@dataclass(frozen=True, slots=True)
class FalseAlarm:
    window_start_ns: int
    window_end_ns: int
    class_name: str
    truth: str | None  # class at the window's midpoint, None where the recording has no truth


@dataclass
class SensorScore:
    sensor_id: str
    windows: int = 0
    windows_scored: int = 0
    windows_correct: int = 0
    windows_unfamiliar: int = 0
    faults: list[Fault] = field(default_factory=list)
    false_alarms: list[FalseAlarm] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.windows_correct / self.windows_scored if self.windows_scored else None

    @property
    def missed(self) -> int:
        return sum(fault.detected_ns is None for fault in self.faults)

    @property
    def detection_delays_s(self) -> list[float]:
        return [fault.detection_delay_s for fault in self.faults if fault.detection_delay_s is not None]


def check_truth(truth: np.ndarray, sensor_id: str = "?") -> np.ndarray:
    """(K, 3) int64 rows of start_ns, end_ns, label; raises ValueError naming the sensor otherwise."""
    truth = np.asarray(truth)
    if truth.ndim != 2 or truth.shape[1] != 3 or not np.issubdtype(truth.dtype, np.integer):
        raise ValueError(f"truth for sensor {sensor_id!r} must be (K, 3) integers, got {truth.dtype} {truth.shape}")
    if truth.size and (np.any(truth[:, 1] <= truth[:, 0]) or truth[:, 2].min() < 0 or truth[:, 2].max() >= 5):
        raise ValueError(f"truth for sensor {sensor_id!r}: intervals need end > start and labels in 0..4")
    return truth.astype(np.int64)


def labels_at(truth: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
    """Truth label at each time (-1 where no interval covers it); a later interval wins an overlap."""
    times_ns = np.asarray(times_ns, np.int64)
    if truth.shape[0] == 0 or times_ns.size == 0:
        return np.full(times_ns.shape, -1, np.int64)
    inside = (truth[None, :, 0] <= times_ns[:, None]) & (times_ns[:, None] < truth[None, :, 1])  # (N, K)
    last_hit = truth.shape[0] - 1 - np.argmax(inside[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), truth[last_hit, 2], -1)


def fault_intervals(truth: np.ndarray) -> list[tuple[str, int, int]]:
    """(class, start, end) of each defect run, same-class intervals that touch merged."""
    runs: list[tuple[str, int, int]] = []
    for start, end, label in truth[np.argsort(truth[:, 0], kind="stable")]:
        name = CLASS_NAMES[int(label)]
        if name not in DEFECT_CLASSES:
            continue
        if runs and runs[-1][0] == name and runs[-1][2] >= start:
            runs[-1] = (name, runs[-1][1], max(runs[-1][2], int(end)))
        else:
            runs.append((name, int(start), int(end)))
    return runs


def alarm_raises(events: Iterable[AlarmEvent]) -> list[AlarmEvent]:
    """`new` events and `update`s that change the alarm class, in order (severity-only updates are not raises)."""
    raises, active = [], None
    for event in sorted(events, key=lambda e: (e.window_end_ns, e.seq)):
        if event.kind == "new" or (event.kind == "update" and event.class_name != active):
            raises.append(event)
        active = None if event.kind == "end" else event.class_name
    return raises


def score_sensor(
    sensor_id: str, truth: np.ndarray, events: Sequence[AlarmEvent], results: Sequence[WindowResult]
) -> SensorScore:
    truth = check_truth(truth, sensor_id)
    events = [e for e in events if e.sensor_id == sensor_id]
    results = [r for r in results if r.sensor_id == sensor_id]
    score = SensorScore(sensor_id, windows=len(results), windows_unfamiliar=sum(r.unfamiliar for r in results))

    mids = np.array([(r.window_start_ns + r.window_end_ns) // 2 for r in results], np.int64)
    truth_labels = labels_at(truth, mids)
    predicted = np.array([CLASS_NAMES.index(r.class_name) for r in results], np.int64)
    scored = truth_labels >= 0
    score.windows_scored = int(scored.sum())
    score.windows_correct = int((predicted[scored] == truth_labels[scored]).sum())

    raises = alarm_raises(events)
    ends = sorted((e for e in events if e.kind == "end"), key=lambda e: e.window_end_ns)
    for name, start, end in fault_intervals(truth):
        overlapping = (
            e for e in raises if e.class_name == name and e.window_end_ns > start and e.window_start_ns < end
        )
        detected = next((e.window_end_ns for e in overlapping), None)
        cleared = next((e.window_end_ns for e in ends if e.window_end_ns > end), None) if detected is not None else None
        score.faults.append(Fault(name, start, end, detected, cleared))

    raise_mids = np.array([(e.window_start_ns + e.window_end_ns) // 2 for e in raises], np.int64)
    for event, label in zip(raises, labels_at(truth, raise_mids), strict=True):
        truth_name = CLASS_NAMES[label] if label >= 0 else None
        if truth_name != event.class_name or event.class_name not in DEFECT_CLASSES:
            alarm = FalseAlarm(event.window_start_ns, event.window_end_ns, event.class_name, truth_name)
            score.false_alarms.append(alarm)
    return score


def score_replay(
    truth_by_sensor: Mapping[str, np.ndarray], events: Sequence[AlarmEvent], results: Sequence[WindowResult]
) -> dict[str, SensorScore]:
    """Scores for each sensor that has ground truth (sensors without truth are left out)."""
    return {
        sensor_id: score_sensor(sensor_id, truth, events, results)
        for sensor_id, truth in truth_by_sensor.items()
        if np.asarray(truth).shape[0] > 0
    }
