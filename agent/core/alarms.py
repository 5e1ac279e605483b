"""Per-sensor alarm state machine with hysteresis, and how severity is defined.

A window's verdict: `unfamiliar` when the model's familiarity gate says the window is unlike its
training data (below the calibrated threshold; docs/familiarity.md), whatever the probabilities;
else `uncertain` when its top probability is below `uncertain_below` (or its top class is a defect
below `raise_probability`), `interference` when the top class is Noise, `defect` when the top class
is Surface/Corona/Void at >= `raise_probability`, else `clean` (Normal). An unfamiliar window never
votes for a defect: the model's probabilities mean nothing there. On a commissioned sensor
(agent/commissioning.py) a defect window also needs activity >= `background_activity_factor` x the
background's 95th-percentile activity, else it is `uncertain`.

Raise (`new`) when k of the last n verdicts are `defect` with the same class. While raised,
`update` when another class reaches k of n, or when the severity changes; `end` after
`clear_after` clean windows in a row (interference, uncertain and unfamiliar windows neither count
towards clearing nor reset the count: they say nothing about the insulation). Noise never raises.

Severity (low/medium/high): the mean probability of the alarm class over its agreeing windows in
the last n gives low (< severity_medium_probability), medium, or high (>= severity_high_probability);
one level more (capped at high) when discharge activity (pulses/s, see `pulse_rate`) of those
windows is at least `activity_rising_factor` times what it was when the alarm was raised, and one
more when it is at least `background_severity_factor` times a commissioned sensor's background.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from agent.settings import AlarmsSection
from mad.constants import CLASS_NAMES, DEFECT_CLASSES, WINDOW_SECONDS

Outcome = Literal["clean", "interference", "uncertain", "defect", "unfamiliar"]
SensorState = Literal["ok", "interference", "uncertain", "alarm", "stale", "offline"]
_SEVERITIES = ("low", "medium", "high")
_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise
SNAPSHOT_VERSION = 1
_OUTCOMES = frozenset(get_args(Outcome))


class SnapshotError(ValueError):
    """A stored alarm state that cannot be restored (names the field and the value)."""


def pulse_rate(signal: np.ndarray, threshold_sigma: float) -> float:
    """Discharge activity of one window: samples beyond `threshold_sigma` robust sigmas, per second."""
    flat = signal.reshape(-1)
    centred = np.abs(flat - np.median(flat))
    spread = max(float(np.median(centred)) * _MAD_TO_SIGMA, 1.0)  # >= 1 ADC count: a flat line has no pulses
    return float(np.count_nonzero(centred > threshold_sigma * spread)) / WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    class_name: str
    probability: float
    activity: float


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """Who an open alarm is: its id (the event_id of its `new`), the start of the window that raised it,
    and whether it was restored from the state dir (open when this process started)."""

    alarm_id: str
    since_ns: int
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class AlarmDecision:
    verdict: Verdict
    kind: Literal["new", "update", "end"] | None  # None: no event for this window
    alarm_class: str | None  # the class the event is about (for `end`, the class that cleared)
    severity: str | None
    # The open alarm an `update`/`end` belongs to; None for `new` (the caller opens it: `SensorAlarm.open`).
    alarm: OpenAlarm | None = None


def judge(
    probabilities: np.ndarray,
    activity: float,
    config: AlarmsSection,
    familiar: bool = True,
    background_activity: float | None = None,
) -> Verdict:
    """`familiar` False (the gate flagged the window) makes the verdict `unfamiliar` before anything else.
    `background_activity`: the sensor's commissioned 95th-percentile activity (None: not commissioned);
    a defect window no busier than `background_activity_factor` x that is `uncertain`, not a vote."""
    top = int(np.argmax(probabilities))
    name, p = CLASS_NAMES[top], float(probabilities[top])
    if not familiar:
        outcome: Outcome = "unfamiliar"
    elif p < config.uncertain_below:
        outcome = "uncertain"
    elif name == "Noise":
        outcome = "interference"
    elif name in DEFECT_CLASSES:
        busy = background_activity is None or activity >= config.background_activity_factor * background_activity
        outcome = "defect" if p >= config.raise_probability and busy else "uncertain"
    else:
        outcome = "clean"
    return Verdict(outcome, name, p, activity)


class SensorAlarm:
    """The alarm state of one sensor; feed it one window at a time, in window order."""

    def __init__(self, config: AlarmsSection, background_activity: float | None = None) -> None:
        self.config = config
        self.background_activity = background_activity  # commissioned p95 pulses/s; None: not commissioned
        self.history: deque[Verdict] = deque(maxlen=config.window_n)
        self.active_class: str | None = None
        self.severity: str | None = None
        self.clean_streak = 0
        self.last_outcome: Outcome | None = None
        self.opened: OpenAlarm | None = None  # set by `open` after a `new`, cleared by the `end`
        self._activity_at_raise = 0.0

    @property
    def state(self) -> SensorState:
        if self.active_class is not None:
            return "alarm"
        # A lone defect window below k, or a window unlike the training data, is never reported as ok.
        states = {None: "ok", "clean": "ok", "defect": "uncertain", "unfamiliar": "uncertain"}
        return states.get(self.last_outcome, self.last_outcome)  # type: ignore[return-value]

    def observe(self, probabilities: np.ndarray, activity: float = 0.0, familiar: bool = True) -> AlarmDecision:
        """One window; `familiar` False is the familiarity gate's verdict (the window cannot vote)."""
        verdict = judge(probabilities, activity, self.config, familiar, self.background_activity)
        self.history.append(verdict)
        self.last_outcome = verdict.outcome
        leader = self._leading_class()

        if self.active_class is None:
            if leader is None:
                return AlarmDecision(verdict, None, None, None)
            self.active_class, self.clean_streak = leader, 0
            self._activity_at_raise = self._mean_activity(leader)
            self.severity = self._severity(leader)
            return AlarmDecision(verdict, "new", leader, self.severity)

        if verdict.outcome == "clean":
            self.clean_streak += 1
            if self.clean_streak >= self.config.clear_after:
                ended, severity, opened = self.active_class, self.severity, self.opened
                self.active_class, self.severity, self.clean_streak, self.opened = None, None, 0, None
                self.history.clear()  # start afresh: old defect votes must not re-raise at once
                return AlarmDecision(verdict, "end", ended, severity, opened)
        elif verdict.outcome == "defect":
            self.clean_streak = 0

        changed = False
        if leader is not None and leader != self.active_class:
            self.active_class, changed = leader, True
            self._activity_at_raise = self._mean_activity(leader)
        severity = self._severity(self.active_class)
        if severity != self.severity:
            self.severity, changed = severity, True
        return AlarmDecision(verdict, "update" if changed else None, self.active_class, self.severity, self.opened)

    def open(self, alarm_id: str, since_ns: int) -> OpenAlarm:
        """Name the alarm a `new` decision just raised (its event_id, its window start)."""
        if self.active_class is None:
            raise RuntimeError("open() follows a `new` decision; no alarm is raised")
        self.opened = OpenAlarm(alarm_id, since_ns)
        return self.opened

    # ---- durability -----------------------------------------------------------------------------
    def worth_keeping(self) -> bool:
        """Whether a restart would lose anything: an open alarm, or defect votes towards one."""
        return self.active_class is not None or any(v.outcome == "defect" for v in self.history)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state; `restore(config, snapshot)` gives back an equivalent machine."""
        return {
            "version": SNAPSHOT_VERSION,
            "history": [[v.outcome, v.class_name, v.probability, v.activity] for v in self.history],
            "active_class": self.active_class,
            "severity": self.severity,
            "clean_streak": self.clean_streak,
            "activity_at_raise": self._activity_at_raise,
            "alarm_id": None if self.opened is None else self.opened.alarm_id,
            "since_ns": None if self.opened is None else self.opened.since_ns,
        }

    @classmethod
    def restore(cls, config: AlarmsSection, snapshot: Any, background_activity: float | None = None) -> SensorAlarm:
        """The machine a snapshot describes, its open alarm marked `resumed`. Raises SnapshotError naming
        the bad field. A smaller `window_n` than when it was saved keeps the newest verdicts."""
        if not isinstance(snapshot, dict) or snapshot.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"alarm state: expected a version {SNAPSHOT_VERSION} object, got {snapshot!r:.80}")
        alarm = cls(config, background_activity)
        history = snapshot.get("history")
        if not isinstance(history, list):
            raise SnapshotError(f"alarm state history={history!r:.80}: expected a list")
        for item in history:
            alarm.history.append(_verdict(item))
        active = snapshot.get("active_class")
        if active is not None and active not in DEFECT_CLASSES:
            raise SnapshotError(f"alarm state active_class={active!r}: expected null or one of {DEFECT_CLASSES}")
        severity = snapshot.get("severity")
        if (severity is None) != (active is None) or (severity is not None and severity not in _SEVERITIES):
            raise SnapshotError(f"alarm state severity={severity!r}: expected one of {_SEVERITIES} with an alarm")
        streak = snapshot.get("clean_streak")
        if not isinstance(streak, int) or isinstance(streak, bool) or not 0 <= streak < 1_000_000:
            raise SnapshotError(f"alarm state clean_streak={streak!r}: expected a non-negative integer")
        at_raise = _finite("activity_at_raise", snapshot.get("activity_at_raise"))
        alarm_id, since_ns = snapshot.get("alarm_id"), snapshot.get("since_ns")
        if active is not None:
            try:
                uuid.UUID(str(alarm_id))
            except ValueError:
                raise SnapshotError(f"alarm state alarm_id={alarm_id!r}: expected a UUID") from None
            if not isinstance(since_ns, int) or isinstance(since_ns, bool) or since_ns < 0:
                raise SnapshotError(f"alarm state since_ns={since_ns!r}: expected a non-negative integer")
            alarm.opened = OpenAlarm(str(alarm_id), since_ns, resumed=True)
        alarm.active_class, alarm.severity, alarm.clean_streak = active, severity, streak
        alarm._activity_at_raise = at_raise
        return alarm

    def _agreeing(self, class_name: str) -> list[Verdict]:
        return [v for v in self.history if v.outcome == "defect" and v.class_name == class_name]

    def _leading_class(self) -> str | None:
        """The defect class with >= k agreeing windows in the last n (most votes, then highest mean p)."""
        best: tuple[int, float, str] | None = None
        for name in DEFECT_CLASSES:
            votes = self._agreeing(name)
            if len(votes) >= self.config.window_k:
                key = (len(votes), float(np.mean([v.probability for v in votes])), name)
                best = key if best is None or key > best else best
        return None if best is None else best[2]

    def _mean_activity(self, class_name: str) -> float:
        votes = self._agreeing(class_name)
        return float(np.mean([v.activity for v in votes])) if votes else 0.0

    def _severity(self, class_name: str) -> str | None:
        votes = self._agreeing(class_name)
        if not votes:
            return self.severity  # nothing new to judge by: keep what was said
        mean_p = float(np.mean([v.probability for v in votes]))
        level = (
            2
            if mean_p >= self.config.severity_high_probability
            else int(mean_p >= self.config.severity_medium_probability)
        )
        activity = self._mean_activity(class_name)
        at_raise = self._activity_at_raise
        rising = at_raise > 0 and activity >= self.config.activity_rising_factor * at_raise
        factor = self.config.background_severity_factor
        far_above_background = (self.background_activity is not None and factor > 0
                                and activity >= factor * max(self.background_activity, 1.0 / WINDOW_SECONDS))
        return _SEVERITIES[min(2, level + int(rising) + int(far_above_background))]


def _finite(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SnapshotError(f"alarm state {field}={value!r}: expected a finite non-negative number")
    return float(value)


def _verdict(item: Any) -> Verdict:
    if not isinstance(item, list) or len(item) != 4:
        raise SnapshotError(f"alarm state history item {item!r:.80}: expected [outcome, class, p, activity]")
    outcome, class_name, probability, activity = item
    if outcome not in _OUTCOMES:
        raise SnapshotError(f"alarm state history outcome={outcome!r}: expected one of {sorted(_OUTCOMES)}")
    if class_name not in CLASS_NAMES:
        raise SnapshotError(f"alarm state history class={class_name!r}: expected one of {CLASS_NAMES}")
    p = _finite("history probability", probability)
    if p > 1.0:
        raise SnapshotError(f"alarm state history probability={probability!r}: expected 0..1")
    return Verdict(outcome, class_name, p, _finite("history activity", activity))
