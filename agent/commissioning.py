"""A sensor's commissioned background: what it looks like when known to be free of PD.

Commercial PD monitors measure each sensor's background before they alarm. `mad-agent commission`
runs N minutes of a sensor (a recording, or captured live) through the agent's own pipeline and stores
one JSON file per sensor in `<state_dir>/backgrounds/`: the noise floor, the pulse rate, the model's
verdicts and its familiarity on that data. The live agent loads them at start (docs/alarms.md,
"Commissioning"):

- a window whose top class is a defect votes for it only if its discharge activity is at least
  `alarms.background_activity_factor` x the background's 95th-percentile activity (PD adds pulses to
  the background; a window no busier than the sensor's own PD-free background is `uncertain`);
- severity goes one level up when the alarm windows' activity is at least
  `alarms.background_severity_factor` x that background activity;
- sensors without a background are reported (log at start, `sensors_not_commissioned` in stats,
  `mad_sensor_commissioned{sensor}` 0/1).

The familiarity distribution is stored and reported, not used to move the gate: a PD-free background
says nothing about how PD on that sensor looks, so a per-sensor threshold fitted on it would flag real
PD as unfamiliar.

The files are input like any other: size-capped, schema-checked; a bad one is reported and ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.core.pipeline import WindowResult
from agent.wire import SENSOR_ID_RE
from mad.constants import CLASS_NAMES, WINDOW_SECONDS

BACKGROUNDS_DIR = "backgrounds"
MAX_FILE_BYTES = 64 * 1024  # a background is ~1 KB; anything larger is not one of ours
MIN_WINDOWS = 3  # fewer 20 s windows say nothing about a background
_MAD_TO_SIGMA = 1.4826


class CommissioningError(ValueError):
    """A background cannot be measured or stored (names the sensor and the reason)."""


class Background(BaseModel):
    """One sensor's background (the JSON file; docs/alarms.md lists the fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    sensor_id: str = Field(pattern=SENSOR_ID_RE.pattern)
    created: str
    source: str = Field(max_length=500)
    windows: int = Field(ge=MIN_WINDOWS)
    minutes: float = Field(gt=0)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=200)
    baseline_counts: float  # median of the window medians (ADC counts, sensor rate)
    noise_sigma_counts: float = Field(ge=0)  # median robust sigma (1.4826 x MAD) per window
    activity_p50: float = Field(ge=0)  # pulses/s (agent/core/alarms.py pulse_rate), per window
    activity_p95: float = Field(ge=0)
    activity_max: float = Field(ge=0)
    verdicts: dict[str, float]  # fraction of windows per verdict (clean, interference, uncertain, defect, unfamiliar)
    top_classes: dict[str, float]  # fraction of windows per top class
    familiarity_p01: float | None = None  # None: the model has no familiarity gate
    familiarity_p50: float | None = None
    familiar_fraction: float | None = Field(None, ge=0, le=1)

    def activity_floor(self, factor: float) -> float:
        """Activity a defect vote must reach on this sensor (0 when the factor is 0: the rule is off)."""
        return factor * self.activity_p95


@dataclass(frozen=True)
class LoadedBackgrounds:
    backgrounds: dict[str, Background]
    problems: dict[str, str]  # file name -> why it was ignored


def floor_of(windows: Iterable[np.ndarray]) -> tuple[float, float]:
    """(baseline, robust sigma) of a sensor: the medians, over its whole 20 s windows, of each window's
    median and 1.4826 x MAD. One window in memory at a time (a 1 MHz window is 20 M samples)."""
    stats = []
    for window in windows:
        values = np.asarray(window, dtype=np.float64)
        median = float(np.median(values))
        stats.append((median, float(np.median(np.abs(values - median))) * _MAD_TO_SIGMA))
    if not stats:
        raise CommissioningError("not one whole 20 s window of samples")
    medians, spreads = np.array(stats).T
    return float(np.median(medians)), float(np.median(spreads))


def measure(
    sensor_id: str,
    results: Sequence[WindowResult],
    floor: tuple[float, float],
    *,
    source: str,
    familiarity_threshold: float | None,
) -> Background:
    """The background of one sensor from its replayed windows."""
    if len(results) < MIN_WINDOWS:
        raise CommissioningError(f"sensor {sensor_id}: {len(results)} whole 20 s windows, need at least "
                                 f"{MIN_WINDOWS} ({MIN_WINDOWS * WINDOW_SECONDS} s) to measure a background")
    activity = np.array([r.activity for r in results], np.float64)
    outcomes = [r.outcome for r in results]
    classes = [r.class_name for r in results]
    scores = np.array([r.familiarity for r in results if r.familiarity is not None], np.float64)
    has_gate = scores.size == len(results) and familiarity_threshold is not None
    return Background(
        sensor_id=sensor_id,
        created=datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source=source[:500],
        windows=len(results),
        minutes=round(len(results) * WINDOW_SECONDS / 60.0, 3),
        model_name=results[0].model_name,
        model_version=results[0].model_version,
        baseline_counts=round(floor[0], 4),
        noise_sigma_counts=round(floor[1], 4),
        activity_p50=round(float(np.percentile(activity, 50)), 4),
        activity_p95=round(float(np.percentile(activity, 95)), 4),
        activity_max=round(float(activity.max()), 4),
        verdicts={o: round(outcomes.count(o) / len(outcomes), 4) for o in sorted(set(outcomes))},
        top_classes={c: round(classes.count(c) / len(classes), 4) for c in CLASS_NAMES if c in classes},
        familiarity_p01=round(float(np.percentile(scores, 1)), 4) if has_gate else None,
        familiarity_p50=round(float(np.percentile(scores, 50)), 4) if has_gate else None,
        familiar_fraction=round(float(np.mean(scores >= familiarity_threshold)), 4) if has_gate else None,
    )


def warnings_for(background: Background) -> list[str]:
    """What an engineer must know before trusting this background."""
    out = []
    defect = background.verdicts.get("defect", 0.0)
    if defect > 0.05:
        out.append(f"{defect:.0%} of the windows are defect votes: if this sensor is really free of PD, the "
                   "model is wrong on its background; the activity rule keeps such windows from alarming only "
                   "while they are no busier than this background")
    if background.familiar_fraction is not None and background.familiar_fraction < 0.5:
        out.append(f"only {background.familiar_fraction:.0%} of the windows are familiar to the model: most of "
                   "this sensor's windows will be `unfamiliar` (never an alarm); the model cannot vouch for it")
    return out


def path_for(state_dir: Path, sensor_id: str) -> Path:
    if not SENSOR_ID_RE.fullmatch(sensor_id):
        raise CommissioningError(f"sensor id {sensor_id!r} is not a valid sensor id")
    return state_dir / BACKGROUNDS_DIR / f"{sensor_id}.json"


def save(state_dir: Path, background: Background) -> Path:
    """Write atomically (tmp, fsync, rename): a crash leaves the old file or the new one."""
    path = path_for(state_dir, background.sensor_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(background.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise CommissioningError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def load(state_dir: Path, max_files: int) -> LoadedBackgrounds:
    """Every valid background in `<state_dir>/backgrounds/` (at most `max_files`); the rest with a reason."""
    folder = state_dir / BACKGROUNDS_DIR
    found: dict[str, Background] = {}
    problems: dict[str, str] = {}
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return LoadedBackgrounds(found, problems)
    except OSError as error:
        return LoadedBackgrounds(found, {str(folder): f"cannot list ({error.strerror})"})
    for path in paths:
        if len(found) >= max_files:
            problems[path.name] = f"more than limits.max_sensors ({max_files}) backgrounds"
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CommissioningError(f"{path.stat().st_size} bytes, limit {MAX_FILE_BYTES}")
            background = Background.model_validate(json.loads(path.read_bytes()))
            if path.stem != background.sensor_id:
                raise CommissioningError(f"sensor_id {background.sensor_id!r} does not match the file name")
        except ValidationError as error:
            problems[path.name] = "; ".join(f"{'.'.join(map(str, e['loc']))}={e.get('input')!r:.40}: {e['msg']}"
                                            for e in error.errors()[:5])
            continue
        except (OSError, ValueError) as error:  # JSONDecodeError and CommissioningError too
            problems[path.name] = str(error).splitlines()[0][:300]
            continue
        found[background.sensor_id] = background
    return LoadedBackgrounds(found, problems)


def not_commissioned(sensors: Iterable[str], backgrounds: Mapping[str, Background]) -> list[str]:
    return sorted(s for s in sensors if s not in backgrounds)
