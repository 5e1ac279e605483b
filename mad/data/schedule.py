"""Fault schedules for synthetic sensors: which class each sensor shows from which minute.

One parser serves `mad-train synth-recording` (files) and `mad-agent simulate` (live MQTT), so a
schedule that replays also simulates. Format (JSON):

    {"0": [{"from_min": 0, "label": "Normal"},
           {"from_min": 3, "label": "Void", "intensity": 0.1, "to_intensity": 1.0}],
     "1": [{"from_min": 0, "label": "Noise"}]}

Keys are sensor indices; `intensity` (0..1, default 0.7) ramps linearly to `to_intensity` until the
next step (or the end of the run), which is how a growing defect is scripted.
"""

from __future__ import annotations

import json
from pathlib import Path

from mad.constants import CLASS_NAMES

DEFAULT_INTENSITY = 0.7
_STEP_KEYS = {"from_min", "label", "intensity", "to_intensity"}

Schedule = dict[int, list[dict]]


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the sensor key, the field and the value."""


def default_schedule(sensors: int) -> dict[str, list[dict]]:
    """Sensor 0: normal, then a void from minute 3 growing to full intensity; others clean or noisy."""
    schedule = {"0": [{"from_min": 0, "label": "Normal"},
                      {"from_min": 3, "label": "Void", "intensity": 0.1, "to_intensity": 1.0}]}
    for s in range(1, sensors):
        schedule[str(s)] = [{"from_min": 0, "label": "Noise" if s % 2 else "Normal"}]
    return schedule


def constant_schedule(sensors: int, label: str) -> dict[str, list[dict]]:
    """Every sensor shows `label` for the whole run (e.g. "Noise": a recording made only of interference)."""
    if label not in CLASS_NAMES:
        raise ScheduleError(f"label {label!r} is not one of {CLASS_NAMES}")
    return {str(s): [{"from_min": 0, "label": label}] for s in range(sensors)}


def parse_schedule(raw: object, sensors: int) -> Schedule:
    """Validate a decoded schedule for `sensors` sensors -> {sensor index: steps sorted by from_min}."""
    if not isinstance(raw, dict):
        raise ScheduleError("schedule must be a JSON object {sensor index: [{from_min, label, intensity?}, ...]}")
    out: Schedule = {}
    for key, steps in raw.items():
        if not str(key).isdigit() or int(key) >= sensors:
            raise ScheduleError(f"schedule: sensor key {key!r} is not an index below sensors={sensors}")
        if not isinstance(steps, list) or not steps:
            raise ScheduleError(f"schedule[{key!r}] must be a non-empty list of steps")
        for step in steps:
            _check_step(key, step)
        out[int(key)] = sorted(steps, key=lambda s: s.get("from_min", 0))
    return out


def _check_step(key: object, step: object) -> None:
    if not isinstance(step, dict) or step.get("label") not in CLASS_NAMES:
        raise ScheduleError(f"schedule[{key!r}]: step {step!r} needs label in {CLASS_NAMES}")
    unknown = set(step) - _STEP_KEYS
    if unknown:
        raise ScheduleError(f"schedule[{key!r}]: unknown field(s) {sorted(unknown)} in step {step!r}")
    for name in ("from_min", "intensity", "to_intensity"):
        value = step.get(name)
        if name in step and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ScheduleError(f"schedule[{key!r}]: {name}={value!r} must be a number")
    if step.get("from_min", 0) < 0:
        raise ScheduleError(f"schedule[{key!r}]: from_min={step['from_min']!r} must be >= 0")
    for name in ("intensity", "to_intensity"):
        if name in step and not 0.0 <= step[name] <= 1.0:
            raise ScheduleError(f"schedule[{key!r}]: {name}={step[name]!r} must be within 0..1")


def load_schedule_file(path: Path, sensors: int) -> Schedule:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScheduleError(f"{path}: unreadable schedule ({exc})") from exc
    return parse_schedule(raw, sensors)


def state_at(steps: list[dict], minute: float, end_minute: float) -> tuple[int, float]:
    """(class id, intensity) of a sensor at `minute`, for steps sorted by from_min."""
    current, next_start = steps[0], end_minute
    for k, step in enumerate(steps):
        if step.get("from_min", 0) <= minute:
            current = step
            next_start = steps[k + 1].get("from_min", end_minute) if k + 1 < len(steps) else end_minute
    start = current.get("from_min", 0)
    lo = float(current.get("intensity", DEFAULT_INTENSITY))
    hi = float(current.get("to_intensity", lo))
    fraction = (minute - start) / max(next_start - start, 1e-9)
    return CLASS_NAMES.index(current["label"]), min(max(lo + (hi - lo) * fraction, 0.0), 1.0)


def sensor_steps(schedule: Schedule, sensor: int) -> list[dict]:
    """A sensor the schedule does not name stays Normal."""
    return schedule.get(sensor, [{"from_min": 0, "label": "Normal"}])
