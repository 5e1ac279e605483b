"""The live agent: settings -> MQTT transport + intake + core worker + Pipeline + outbox + metrics.

Threads: paho's network thread only enqueues raw messages (`Intake`); the `mad-core` thread decodes,
drives the `Pipeline` (windowing, pairing, alarms) and ticks its timers; inference runs on the
batcher's own worker. Shutdown (`stop`): close the intake, drain what was queued, flush every open
window through the model, wait (bounded) for the outbox to be acknowledged, publish `stopped`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent import commissioning, wire
from agent.core.clock import MonotonicClock
from agent.core.events import AlarmEvent
from agent.core.pipeline import Pipeline, StateChange, WindowResult
from agent.core.types import SampleChunk
from agent.inference import Classifier, Scores, familiarity_threshold_of, scores_of
from agent.intake import Intake, RawMessage
from agent.logging import RateLimitedLog
from agent.metrics import AgentMetrics
from agent.outbox import Outbox, StateWriteError
from agent.rejections import Rejections
from agent.settings import AgentSettings, read_mqtt_password
from agent.transport import MqttTransport, TransportConfig

log = logging.getLogger(__name__)

TICK_S = 0.5  # core timers (idle close, pairing grace, batch wait, stale/offline) resolve to this
INTAKE_BATCH = 256  # raw messages taken per wake-up of the core thread
SHUTDOWN_ACK_S = 10.0  # how long a stop waits for the broker to acknowledge the outbox
OUTBOX_FILE = "outbox.sqlite3"
LEGACY_SEQ_FILE = "last_seq"  # before the state file kept the sequence (read once, then removed)
_DELAYS_KEPT = 4096


def transport_config(settings: AgentSettings) -> TransportConfig:
    """The one mapping from agent settings to the MQTT connection."""
    mqtt = settings.mqtt
    password = read_mqtt_password(mqtt)
    tls = mqtt.tls
    return TransportConfig(
        agent_id=settings.agent.id,
        host=mqtt.host,
        port=mqtt.port,
        client_id=mqtt.client_id or None,
        protocol=mqtt.protocol,
        keepalive_s=mqtt.keepalive_s,
        username=mqtt.username,
        password=None if password is None else password.get_secret_value(),
        tls=tls is not None,
        tls_ca_file=tls.ca_file if tls else None,
        tls_cert_file=tls.cert_file if tls else None,
        tls_key_file=tls.key_file if tls else None,
        reconnect_min_s=mqtt.reconnect_min_s,
        reconnect_max_s=mqtt.reconnect_max_s,
        subscribe_qos=mqtt.qos,
        deadletter=mqtt.deadletter,
        topics=mqtt.topics.to_wire(),
    )


def first_event_seq(state_dir: Path, outbox: Outbox) -> int:
    """Alarm `seq` continues across restarts: the state file keeps the next one, written with each alarm.
    A `last_seq` file of an older version is taken into account once, then removed."""
    legacy = state_dir / LEGACY_SEQ_FILE
    try:
        outbox.raise_next_seq(int(legacy.read_text(encoding="ascii").strip()) + 1)
        legacy.unlink()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        log.warning("old event sequence file %s unreadable (%s); continuing from the state file", legacy, error)
    return outbox.next_seq()


class TimedClassifier:
    """Wraps a classifier so every model call lands in the inference-latency histogram (familiarity and its
    threshold pass through unchanged)."""

    def __init__(self, inner: Classifier, observe: Callable[[float], None]) -> None:
        self.inner, self.observe = inner, observe
        self.name, self.version, self.class_names = inner.name, inner.version, inner.class_names
        self.familiarity_threshold = familiarity_threshold_of(inner)

    def score(self, images: np.ndarray | None, signals: np.ndarray) -> Scores:
        started = time.perf_counter()
        try:
            return scores_of(self.inner, images, signals)
        finally:
            self.observe(time.perf_counter() - started)

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        return self.score(images, signals).probabilities


class AgentService:
    """One live agent; `start()`, then `stop()` from any thread (the `run` command does it on SIGTERM)."""

    def __init__(
        self,
        settings: AgentSettings,
        classifier: Classifier,
        *,
        on_result: Callable[[WindowResult], None] | None = None,
    ) -> None:
        self.settings = settings
        self._external_on_result = on_result
        self.metrics = AgentMetrics()
        limits = settings.limits
        self.rejections = Rejections(self.metrics, settings.logging.bad_input_interval_s, limits.max_sensors)
        self.intake = Intake(limits.intake_queue, limits.intake_max_bytes, limits.intake_drop_policy,
                             on_drop=self._on_intake_drop)
        state_dir = settings.agent.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"agent.state_dir {state_dir}: cannot create ({error.strerror})") from None
        self.outbox = Outbox(state_dir / OUTBOX_FILE, limits.outbox_max_rows, on_drop=self.metrics.outbox_dropped.inc)
        self.state_store_resets = int(self.outbox.reset_from is not None)  # a corrupt state file moved aside
        self._state_write_log = RateLimitedLog(log, settings.logging.bad_input_interval_s)
        self.alarm_state_write_failed = 0  # per-batch alarm-state writes that failed (disk full)
        self.first_seq = first_event_seq(state_dir, self.outbox)
        self.topics = settings.mqtt.topics.to_wire()
        self.wire_limits = wire.WireLimits(max_payload_bytes=limits.max_payload_bytes)
        self.transport = MqttTransport(transport_config(settings), self.intake, self.outbox,
                                       on_connection_change=self.metrics.set_connected)
        loaded = commissioning.load(state_dir, limits.max_sensors)
        for name, problem in loaded.problems.items():
            log.error("background %s ignored: %s (re-run mad-agent commission for that sensor)", name, problem)
        self.backgrounds = loaded.backgrounds
        self.pipeline = Pipeline(
            settings,
            TimedClassifier(classifier, self.metrics.inference_latency.observe),
            MonotonicClock(),
            self._on_alarm,
            on_result=self._on_result,
            on_state=self._on_state,
            first_seq=self.first_seq,
            on_alarm_states=self._on_alarm_states,
            background_activity={s: b.activity_p95 for s, b in self.backgrounds.items()},
        )
        stale = self.pipeline.restore_alarms(self.outbox.alarm_states())
        if stale:
            self._on_alarm_states(dict.fromkeys(stale))  # unreadable states are dropped, not retried every start
        self._result_delays: deque[float] = deque(maxlen=_DELAYS_KEPT)  # window end -> result, wall seconds
        self._intake_dropped_logged = 0.0
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._core_loop, name="mad-core", daemon=True)
        self.failure: BaseException | None = None  # set if the core thread died (the run command exits 1)
        self.started_at = time.monotonic()
        self.metrics_port: int | None = None
        self._watch_queues()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.metrics_port = self.metrics.serve(self.settings.metrics.port, self.settings.metrics.host)
        if self.settings.mqtt.ha_discovery:
            for sensor_id in self.settings.limits.sensors:  # known sensors: announced before their first data
                self.transport.publish_discovery(sensor_id, self.settings.mqtt.ha_discovery_prefix)
        self._worker.start()
        self.transport.start()
        listed = commissioning.not_commissioned(self.settings.limits.sensors, self.backgrounds)
        log.info("%d sensor(s) commissioned%s", len(self.backgrounds),
                 f"; listed but not commissioned: {', '.join(listed)}" if listed else "")
        restored = self.pipeline.counters()["alarms_restored"]
        log.info("agent %s started: broker %s:%s, state in %s, next event seq %d, %d open alarm(s) restored",
                 self.settings.agent.id, self.settings.mqtt.host, self.settings.mqtt.port,
                 self.settings.agent.state_dir, self.first_seq, restored)

    def stop(self, ack_timeout_s: float = SHUTDOWN_ACK_S) -> None:
        """Stop intake, finish in-flight windows (their alarms go to the outbox), publish `stopped`."""
        self._stopping.set()
        self.intake.close()
        self._worker.join()
        deadline = time.monotonic() + ack_timeout_s
        while len(self.outbox) and self.transport.connected and time.monotonic() < deadline:
            time.sleep(0.05)  # polling PUBACK progress within a deadline
        left = len(self.outbox)
        if left:
            log.warning("stopping with %d alarm(s) unacknowledged; they stay in the outbox for the next start", left)
        self.transport.stop()
        self.outbox.close()
        self.metrics.close()
        log.info("agent %s stopped", self.settings.agent.id)

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    # ------------------------------------------------------------------ core thread
    def _core_loop(self) -> None:
        last_tick = last_stats = time.monotonic()
        try:
            while True:
                batch = self.intake.get_batch(INTAKE_BATCH, timeout=TICK_S)
                if not batch and self._stopping.is_set():
                    break
                for message in batch:
                    self._handle(message)
                now = time.monotonic()
                if now - last_tick >= TICK_S:
                    last_tick = now
                    self.pipeline.tick()
                if now - last_stats >= self.settings.agent.stats_interval_s:
                    last_stats = now
                    self.transport.publish_stats(self.stats())
            self.pipeline.flush()
            self.pipeline.close()
        except BaseException as error:  # the agent must not run on with a dead core: `run` exits 1, systemd restarts
            self.failure = error
            log.exception("core thread failed")

    def _handle(self, message: RawMessage) -> None:
        try:
            item = wire.decode_message(message.topic, message.payload, message.user_properties,
                                       topics=self.topics, limits=self.wire_limits, now_ns=time.time_ns())
        except wire.WireError as error:
            self._rejected(self._sensor_of(message.topic), message, error)
            return
        before = self._core_rejections()
        try:
            if isinstance(item, SampleChunk):
                self.pipeline.on_chunk(item)
            else:
                self.pipeline.on_frame(item)
        except Exception:  # one message must never stop the agent; the pipeline already rejects bad input
            log.exception("core failed on a message from %s", item.sensor_id)
            return
        after = self._core_rejections()
        if after == before:
            self.metrics.sensor_seen(item.sensor_id)
            return
        for key in after:
            if after[key] != before.get(key, 0):  # the same bare reason codes as the wire decoder's
                reason = key.removeprefix("reject_reason_")
                self._rejected(item.sensor_id, message,
                               wire.WireError(reason, "sensor", item.sensor_id, "refused by the agent core"))

    def _rejected(self, sensor_id: str | None, message: RawMessage, error: wire.WireError) -> None:
        self.rejections.reject(sensor_id, error)
        if sensor_id is not None:
            self.transport.publish_deadletter(sensor_id, message.topic, message.payload, error)

    def _sensor_of(self, topic: str) -> str | None:
        try:
            return self.topics.route(topic)[1]
        except wire.WireError:
            return None

    def _core_rejections(self) -> dict[str, float]:
        return {k: v for k, v in self.pipeline.counters().items() if k.startswith("reject_reason_")}

    # ------------------------------------------------------------------ pipeline outputs (core thread)
    def _on_alarm(self, event: AlarmEvent) -> None:
        # The event, its sensor's alarm state and the next seq are committed together (agent/outbox.py).
        self.transport.publish_alarm(event.sensor_id, event.to_json(), event.kind, event.event_id, seq=event.seq,
                                     alarm_state=self.pipeline.alarm_snapshot(event.sensor_id))
        self.metrics.alarms.labels(event.sensor_id, event.kind).inc()

    def _on_alarm_states(self, states: dict[str, dict | None]) -> None:
        try:
            self.outbox.save_alarm_states(states)
        except StateWriteError as error:  # the alarms themselves still go out; a restart may lose k-of-n votes
            self.alarm_state_write_failed += 1
            if self._state_write_log.allow("alarm_states") is not None:
                log.error("alarm state of %d sensor(s) not saved (%s); %d failure(s) so far", len(states), error,
                          self.alarm_state_write_failed)

    def _on_result(self, result: WindowResult) -> None:
        self.metrics.windows.labels(result.sensor_id, str(result.degraded).lower()).inc()
        if result.unfamiliar:
            self.metrics.windows_unfamiliar.labels(result.sensor_id).inc()
        self._result_delays.append(time.time_ns() / 1e9 - result.window_end_ns / 1e9)
        if self._external_on_result is not None:
            self._external_on_result(result)

    def _on_state(self, change: StateChange) -> None:
        if change.previous is None:  # first seen: say whether its alarms are judged against a background
            commissioned = change.sensor_id in self.backgrounds
            self.metrics.sensor_commissioned.labels(change.sensor_id).set(int(commissioned))
            if not commissioned:
                log.info("sensor %s is not commissioned (no background; mad-agent commission)", change.sensor_id)
        self.transport.set_state(change.sensor_id, change.state)
        if change.previous is None and self.settings.mqtt.ha_discovery:
            self.transport.publish_discovery(change.sensor_id, self.settings.mqtt.ha_discovery_prefix)

    def _on_intake_drop(self, message: RawMessage) -> None:
        # Runs on the network thread: count, and log at most once a minute.
        self.metrics.intake_dropped.inc()
        now = time.monotonic()
        if now - self._intake_dropped_logged >= 60.0:
            self._intake_dropped_logged = now
            log.warning("intake full (%d messages / %d bytes): dropping by %s; total dropped %d",
                        self.intake.depth, self.intake.depth_bytes, self.intake.policy, self.intake.dropped + 1)

    # ------------------------------------------------------------------ health
    def _watch_queues(self) -> None:
        self.metrics.watch_depth("intake", lambda: self.intake.depth)
        self.metrics.watch_depth("pairing", lambda: self.pipeline.pairer.pending_count())
        self.metrics.watch_depth("batch", lambda: self.pipeline.batcher.pending_count())
        self.metrics.watch_outbox(lambda: len(self.outbox))
        self.metrics.watch_state_dir(lambda: self.transport.outbox_write_failed + self.alarm_state_write_failed,
                                     lambda: self.state_store_resets)

    def stats(self) -> dict:
        """The periodic `stats` payload: core counters, queue depths, outbox, and recent result delays."""
        delays = np.array(self._result_delays) if self._result_delays else None
        self._result_delays.clear()
        counters = self.pipeline.counters()
        return {
            "agent_id": self.settings.agent.id,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "sensors": len(self.pipeline.sensor_states()),
            "intake_depth": self.intake.depth,
            "intake_accepted": self.intake.accepted,
            "intake_dropped": self.intake.dropped,
            "outbox_depth": len(self.outbox),
            "outbox_write_failed": self.transport.outbox_write_failed + self.alarm_state_write_failed,
            "state_store_resets": self.state_store_resets,
            "sensors_commissioned": len(self.backgrounds),
            "sensors_not_commissioned": len(commissioning.not_commissioned(self.pipeline.sensor_states(),
                                                                           self.backgrounds)),
            "broker_connects": self.transport.connects,
            "rejected": sum(self.rejections.counts.values()),
            "result_delay_p50_s": None if delays is None else round(float(np.percentile(delays, 50)), 3),
            "result_delay_p99_s": None if delays is None else round(float(np.percentile(delays, 99)), 3),
            "result_delay_n": 0 if delays is None else int(delays.size),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in counters.items()},
        }
