"""The agent's core from "samples arrived" to "alarm decided", driven the same way live and in replay.

    on_chunk -> Windower -> to_model_signal -> Pairer (frame or grace) -> Batcher -> classifier
             -> SensorAlarm per sensor -> sink(AlarmEvent), on_result(WindowResult), on_state(...)

No MQTT, files or wall-clock time: the caller passes a clock and calls `tick()` periodically (live:
every ~0.5 s) or after each replayed message. Bad input is counted and logged (rate-limited),
never raised: one bad message must not stop the agent.

Durable alarm state (live agent): `restore_alarms` takes the per-sensor snapshots saved by an earlier
process; after each batch `on_alarm_states` gets the snapshots that changed without an event (None: the
sensor has nothing left worth keeping), and the sink of an event reads `alarm_snapshot(sensor_id)`, the
state that goes with it, so the service can write both in one transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from agent.core.alarms import AlarmDecision, SensorAlarm, SensorState, SnapshotError, pulse_rate
from agent.core.batcher import Batcher, BatchResult
from agent.core.clock import Clock, seconds_to_ns
from agent.core.events import AlarmEvent
from agent.core.model_input import to_model_signal
from agent.core.pairing import Pairer, ReadyWindow, Renderer
from agent.core.types import PrpdFrame, SampleChunk
from agent.core.windowing import ClosedWindow, SensorStreamError, Windower
from agent.inference import Classifier, familiarity_threshold_of
from agent.logging import RateLimitedLog, get_logger
from agent.settings import SENSOR_ID_PATTERN, AgentSettings
from mad.constants import CLASS_NAMES, IMAGE_SIZE

_SENSOR_ID = re.compile(SENSOR_ID_PATTERN)
_NO_SAMPLES = np.empty(0, np.float32)


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What the model said about one window (replay scores and plots these)."""

    sensor_id: str
    window_start_ns: int
    window_end_ns: int
    probabilities: dict[str, float]
    class_name: str
    outcome: str  # clean | interference | uncertain | defect | unfamiliar
    degraded: bool
    degraded_reason: str | None
    missing_samples: int
    activity: float  # pulses per second
    model_name: str
    model_version: str
    familiarity: float | None = None  # the model's familiarity score; None: the model has no gate

    @property
    def unfamiliar(self) -> bool:
        return self.outcome == "unfamiliar"


@dataclass(frozen=True, slots=True)
class StateChange:
    sensor_id: str
    previous: SensorState | None
    state: SensorState
    alarm_class: str | None


class InputRejected(ValueError):
    """A chunk or frame the core refuses; `reason` is a short code for counters and logs."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class Pipeline:
    def __init__(
        self,
        settings: AgentSettings,
        classifier: Classifier,
        clock: Clock,
        sink: Callable[[AlarmEvent], None],
        *,
        on_result: Callable[[WindowResult], None] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        renderer: Renderer | None = None,
        event_id_factory: Callable[[], str] | None = None,
        first_seq: int = 0,
        on_alarm_states: Callable[[dict[str, dict[str, Any] | None]], None] | None = None,
        background_activity: Mapping[str, float] | None = None,
    ) -> None:
        self.settings, self.classifier, self.clock, self.sink = settings, classifier, clock, sink
        self.on_result, self.on_state, self.on_alarm_states = on_result, on_state, on_alarm_states
        self.event_id_factory = event_id_factory or (lambda: str(uuid.uuid4()))
        self.windower = Windower(settings.windowing, clock, settings.limits)
        self.pairer = Pairer(settings.pairing, clock, renderer)
        self.batcher = Batcher(classifier, settings.model, clock)
        # Below this familiarity a window is `unfamiliar` (never a defect vote); None: the gate is off.
        self.familiarity_threshold = familiarity_threshold_of(classifier)
        self._alarms: dict[str, SensorAlarm] = {}
        self._states: dict[str, SensorState] = {}
        self._last_seen_ns: dict[str, int] = {}
        self._seq = first_seq
        # Commissioned sensors' background activity (p95 pulses/s, agent/commissioning.py); others: absent.
        self.background_activity = dict(background_activity or {})
        self._kept: dict[str, dict[str, Any]] = {}  # the snapshot last handed out per sensor (for change detection)
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "chunks_received",
                "chunks_rejected",
                "frames_received",
                "frames_rejected",
                "windows_classified",
                "windows_failed",
                "windows_degraded",
                "windows_unfamiliar",
                "events_emitted",
                "alarms_restored",
                "alarm_states_invalid",
            ),
            0,
        )
        self._rejections: dict[str, int] = {}
        self.log = get_logger("agent.core")
        self._bad_input_log = RateLimitedLog(
            self.log, settings.logging.bad_input_interval_s, now=lambda: clock.now_ns() / 1e9
        )

    # ---- inputs -------------------------------------------------------------------------------
    def on_chunk(self, chunk: SampleChunk) -> None:
        self._counts["chunks_received"] += 1
        try:
            self._check_chunk(chunk)
            closed = self.windower.add(chunk)
        except (InputRejected, SensorStreamError) as exc:
            self._reject("chunks_rejected", exc.reason, getattr(chunk, "sensor_id", "?"), str(exc))
            return
        self._seen(chunk.sensor_id)
        self._advance(closed)

    def on_frame(self, frame: PrpdFrame) -> None:
        self._counts["frames_received"] += 1
        try:
            self._check_frame(frame)
        except InputRejected as exc:
            self._reject("frames_rejected", exc.reason, getattr(frame, "sensor_id", "?"), str(exc))
            return
        self._seen(frame.sensor_id)
        for ready in self.pairer.add_frame(frame):
            self.batcher.add(ready)
        self._collect()

    def tick(self) -> None:
        """Advance timers: idle windows, pairing grace, batch max wait, stale/offline sensors."""
        self._advance(self.windower.close_idle())
        for ready in self.pairer.expire():
            self.batcher.add(ready)
        self.batcher.poll()
        self._collect()
        self._update_liveness()

    def flush(self) -> None:
        """End of replay / shutdown: close every window, skip the grace period, finish inference."""
        self._advance(self.windower.close_all())
        for ready in self.pairer.release_all():
            self.batcher.add(ready)
        self.batcher.flush()
        self._collect()

    def close(self) -> None:
        self.flush()
        self.batcher.close()

    # ---- outputs ------------------------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        merged: dict[str, float] = dict(self._counts)
        merged.update(asdict(self.windower.counters))
        merged.update(asdict(self.pairer.counters))
        merged.update(asdict(self.batcher.counters))
        merged.update({f"reject_reason_{reason}": count for reason, count in self._rejections.items()})
        merged["windows_pending_pairing"] = self.pairer.pending_count()
        merged["windows_pending_batch"] = self.batcher.pending_count()
        return merged

    def sensor_states(self) -> dict[str, SensorState]:
        return dict(self._states)

    def alarm_snapshot(self, sensor_id: str) -> dict[str, Any] | None:
        """The sensor's alarm state to keep across a restart (None: nothing worth keeping)."""
        alarm = self._alarms.get(sensor_id)
        return alarm.snapshot() if alarm is not None and alarm.worth_keeping() else None

    def restore_alarms(self, snapshots: Mapping[str, Any]) -> list[str]:
        """Take the alarm states an earlier process saved; returns the sensors whose state could not be
        restored (counted, logged; the caller deletes them). A restored open alarm puts its sensor in
        `alarm` at once (the retained state agrees with the open alarms) and continues with the same
        alarm_id; the sensor goes stale/offline on the usual timers if it never sends again."""
        bad: list[str] = []
        for sensor_id, snapshot in snapshots.items():
            try:
                if not isinstance(sensor_id, str) or not _SENSOR_ID.fullmatch(sensor_id):
                    raise SnapshotError(f"alarm state sensor_id={sensor_id!r}: not a valid sensor id")
                if sensor_id not in self._alarms and len(self._alarms) >= self.settings.limits.max_sensors:
                    raise SnapshotError(f"alarm state of {sensor_id}: limits.max_sensors "
                                        f"({self.settings.limits.max_sensors}) already restored")
                alarm = SensorAlarm.restore(self.settings.alarms, snapshot, self.background_activity.get(sensor_id))
            except SnapshotError as exc:
                self._counts["alarm_states_invalid"] += 1
                self.log.warning("alarm state not restored", sensor_id=str(sensor_id)[:64], detail=str(exc))
                bad.append(sensor_id)
                continue
            self._alarms[sensor_id] = alarm
            self._kept[sensor_id] = alarm.snapshot()
            self._counts["alarms_restored"] += int(alarm.active_class is not None)
            if alarm.active_class is not None:
                self._last_seen_ns[sensor_id] = self.clock.now_ns()
                self._set_state(sensor_id, alarm)
        return bad

    # ---- internals ----------------------------------------------------------------------------
    def _advance(self, closed: list[ClosedWindow]) -> None:
        for window in closed:
            signal = to_model_signal(window)
            reasons = (f"gaps_filled:{window.missing_samples}",) if window.missing_samples else ()
            activity = pulse_rate(signal, self.settings.alarms.pulse_threshold_sigma)
            # The sensor-rate samples go now: a 1 MHz window is 40 MB that no later stage reads, and the
            # window budgets (limits.max_window_bytes_*) only cover windows still open.
            window = replace(window, samples=_NO_SAMPLES)
            for ready in self.pairer.add_window(ReadyWindow(window, signal, activity, None, reasons)):
                self.batcher.add(ready)
        self.batcher.poll()
        self._collect()

    def _collect(self) -> None:
        for result in self.batcher.take_results():
            self._handle_batch(result)

    def _handle_batch(self, result: BatchResult) -> None:
        if result.probabilities is None:
            self._counts["windows_failed"] += len(result.windows)
            self._bad_input_log.warning(
                "inference_failed", "inference batch failed", error=result.error, windows=len(result.windows)
            )
            return
        # Windows of one sensor may straddle batches only in order, so per-sensor order holds.
        familiarity = result.familiarity if result.familiarity is not None else [None] * len(result.windows)
        touched: set[str] = set()
        for ready, probabilities, score in zip(result.windows, result.probabilities, familiarity, strict=True):
            self._handle_window(ready, probabilities, None if score is None else float(score))
            touched.add(ready.window.sensor_id)
        self._hand_out_states(touched)

    def _hand_out_states(self, sensors: set[str]) -> None:
        """One call per batch with the snapshots that changed since last handed out (or written with an event)."""
        if self.on_alarm_states is None:
            return
        changed: dict[str, dict[str, Any] | None] = {}
        for sensor_id in sorted(sensors):
            snapshot = self.alarm_snapshot(sensor_id)
            if snapshot != self._kept.get(sensor_id):
                changed[sensor_id] = snapshot
                if snapshot is None:
                    self._kept.pop(sensor_id, None)
                else:
                    self._kept[sensor_id] = snapshot
        if changed:
            self.on_alarm_states(changed)

    def _familiar(self, familiarity: float | None) -> bool:
        """The gate: with a threshold, a window is familiar only at or above it (NaN or a missing score is not)."""
        if self.familiarity_threshold is None:
            return True
        return familiarity is not None and familiarity >= self.familiarity_threshold

    def _handle_window(self, ready: ReadyWindow, probabilities: np.ndarray, familiarity: float | None = None) -> None:
        window = ready.window
        alarm = self._alarms.get(window.sensor_id)
        if alarm is None:
            alarm = self._alarms[window.sensor_id] = SensorAlarm(
                self.settings.alarms, self.background_activity.get(window.sensor_id))
        decision = alarm.observe(probabilities, ready.activity, self._familiar(familiarity))
        degraded_reason = ";".join(ready.degraded_reasons) or None
        by_class = {name: round(float(p), 6) for name, p in zip(CLASS_NAMES, probabilities, strict=True)}
        self._counts["windows_classified"] += 1
        self._counts["windows_degraded"] += int(degraded_reason is not None)
        self._counts["windows_unfamiliar"] += int(decision.verdict.outcome == "unfamiliar")
        if self.on_result is not None:
            self.on_result(
                WindowResult(
                    window.sensor_id,
                    window.window_start_ns,
                    window.window_end_ns,
                    by_class,
                    decision.verdict.class_name,
                    decision.verdict.outcome,
                    degraded_reason is not None,
                    degraded_reason,
                    window.missing_samples,
                    ready.activity,
                    self.classifier.name,
                    self.classifier.version,
                    None if familiarity is None else round(familiarity, 6),
                )
            )
        if decision.kind is not None:
            self._emit(window, alarm, decision, by_class, degraded_reason)
        self._set_state(window.sensor_id, alarm)

    def _emit(
        self,
        window: ClosedWindow,
        alarm: SensorAlarm,
        decision: AlarmDecision,
        by_class: dict[str, float],
        degraded_reason: str | None,
    ) -> None:
        event_id = self.event_id_factory()
        # Every raised alarm is opened (here, or restored with its id), so update/end always carry one.
        opened = alarm.open(event_id, window.window_start_ns) if decision.kind == "new" else decision.alarm
        assert opened is not None, "an update/end of an alarm that was never opened"
        event = AlarmEvent.create(
            event_id=event_id,
            alarm_id=opened.alarm_id,
            since_ns=min(opened.since_ns, window.window_start_ns),
            resumed=opened.resumed,
            kind=decision.kind,
            sensor_id=window.sensor_id,
            class_name=decision.alarm_class,
            probabilities=by_class,
            severity=decision.severity,
            window_start_ns=window.window_start_ns,
            window_end_ns=window.window_end_ns,
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
            model_name=self.classifier.name,
            model_version=self.classifier.version,
            agent_id=self.settings.agent.id,
            seq=self._seq,
        )
        self._seq += 1
        self._counts["events_emitted"] += 1
        snapshot = self.alarm_snapshot(window.sensor_id)  # what the sink stores with the event
        if snapshot is None:
            self._kept.pop(window.sensor_id, None)
        else:
            self._kept[window.sensor_id] = snapshot
        self.sink(event)

    def _seen(self, sensor_id: str) -> None:
        self._last_seen_ns[sensor_id] = self.clock.now_ns()
        alarm = self._alarms.get(sensor_id)
        if self._states.get(sensor_id) in (None, "stale", "offline"):
            self._set_state(sensor_id, alarm)

    def _set_state(self, sensor_id: str, alarm: SensorAlarm | None, forced: SensorState | None = None) -> None:
        state = forced or (alarm.state if alarm is not None else "ok")
        previous = self._states.get(sensor_id)
        if state == previous:
            return
        self._states[sensor_id] = state
        if self.on_state is not None:
            alarm_class = alarm.active_class if alarm is not None else None
            self.on_state(StateChange(sensor_id, previous, state, alarm_class))

    def _update_liveness(self) -> None:
        now = self.clock.now_ns()
        stale_ns = seconds_to_ns(self.settings.alarms.stale_after_s)
        offline_ns = seconds_to_ns(self.settings.alarms.offline_after_s)
        for sensor_id, last_seen in self._last_seen_ns.items():
            silent = now - last_seen
            if silent >= offline_ns:
                self._set_state(sensor_id, self._alarms.get(sensor_id), "offline")
            elif silent >= stale_ns:
                self._set_state(sensor_id, self._alarms.get(sensor_id), "stale")

    def _reject(self, counter: str, reason: str, sensor_id: str, message: str) -> None:
        self._counts[counter] += 1
        self._rejections[reason] = self._rejections.get(reason, 0) + 1
        self._bad_input_log.warning(
            f"{reason}:{sensor_id}", "input rejected", reason=reason, sensor_id=sensor_id, detail=message
        )

    def _check_sensor(self, sensor_id: object) -> None:
        if not isinstance(sensor_id, str) or not _SENSOR_ID.match(sensor_id):
            raise InputRejected("bad_sensor_id", f"sensor_id {sensor_id!r} must match {SENSOR_ID_PATTERN}")
        limits = self.settings.limits
        if sensor_id in limits.sensors or sensor_id in self._last_seen_ns:
            return
        if limits.unknown_sensor == "reject":
            raise InputRejected("unknown_sensor", f"sensor {sensor_id!r} is not in limits.sensors")
        if len(self._last_seen_ns) >= limits.max_sensors:
            raise InputRejected(
                "too_many_sensors", f"sensor {sensor_id!r} exceeds limits.max_sensors={limits.max_sensors}"
            )

    def _check_chunk(self, chunk: SampleChunk) -> None:
        self._check_sensor(chunk.sensor_id)
        samples = chunk.samples
        if not isinstance(samples, np.ndarray) or samples.ndim != 1 or not np.issubdtype(samples.dtype, np.number):
            raise InputRejected(
                "bad_samples",
                f"samples must be a 1-D numeric array, got {type(samples).__name__} "
                f"{getattr(samples, 'dtype', '')}{getattr(samples, 'shape', '')}",
            )
        if np.issubdtype(samples.dtype, np.complexfloating) or (
            np.issubdtype(samples.dtype, np.floating) and not np.all(np.isfinite(samples))
        ):
            raise InputRejected("bad_samples", "samples contain non-finite or complex values")
        if chunk.t0_ns < 0:
            raise InputRejected("bad_time", f"t0_ns={chunk.t0_ns} is before the epoch")
        if not (chunk.sample_rate_hz > 0 and chunk.power_freq_hz > 0):
            raise InputRejected(
                "bad_rate", f"sample_rate_hz={chunk.sample_rate_hz} and power_freq_hz={chunk.power_freq_hz} must be > 0"
            )
        limits = self.settings.limits
        spec = limits.sensors.get(chunk.sensor_id)
        # The rates this agent admits (a listed sensor: its own, below): checked before the windower sets
        # anything aside for the stream, so a claimed 100 MHz costs a comparison, not a 20 s buffer.
        if spec is None and not limits.sample_rate_min_hz <= chunk.sample_rate_hz <= limits.sample_rate_max_hz:
            raise InputRejected(
                "bad_sample_rate",
                f"sensor {chunk.sensor_id!r} sent sample_rate_hz={chunk.sample_rate_hz}; this agent admits "
                f"limits.sample_rate_min_hz..sample_rate_max_hz = {limits.sample_rate_min_hz:g}.."
                f"{limits.sample_rate_max_hz:g} Hz (or the rate limits.sensors states for the sensor)",
            )
        if spec is not None and (chunk.sample_rate_hz, chunk.power_freq_hz) != (
            spec.sample_rate_hz,
            spec.power_freq_hz,
        ):
            raise InputRejected(
                "rate_mismatch",
                f"sensor {chunk.sensor_id!r} sent sample_rate_hz="
                f"{chunk.sample_rate_hz}, power_freq_hz={chunk.power_freq_hz}; limits.sensors says "
                f"{spec.sample_rate_hz}, {spec.power_freq_hz}",
            )

    def _check_frame(self, frame: PrpdFrame) -> None:
        self._check_sensor(frame.sensor_id)
        image = frame.image
        if not isinstance(image, np.ndarray) or image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or image.dtype != np.uint8:
            raise InputRejected(
                "bad_image",
                f"PRPD image must be uint8 ({IMAGE_SIZE}, {IMAGE_SIZE}, 3), got "
                f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}",
            )
        if frame.window_start_ns < 0:
            raise InputRejected("bad_time", f"window_start_ns={frame.window_start_ns} is before the epoch")
