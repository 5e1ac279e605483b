"""Count-matrix PRPD frames (`MADM`) over a real Mosquitto: the live agent draws them and classifies with them.

sensor -> broker -> agent: the agent decodes each matrix, redraws it with the project's renderer, pairs it
with its window like an image frame (not the degraded fallback drawn from the window's own samples), and the
window's alarm and retained state reach an independent subscriber. Both wire forms are used: the binary
header and the MQTT v5 user properties. With the shipped model, `mad-agent simulate --prpd-format matrix`
is the sensor and a Corona and a Void sensor raise their real alarms.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from agent.core.pipeline import WindowResult
from agent.inference import FunctionClassifier, load_classifier
from agent.settings import load_settings
from agent.simulator import Message, SimulationConfig, WindowSource, load_schedule, plan_messages
from mad.constants import CLASS_NAMES

pytestmark = pytest.mark.mqtt

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mad_small.safetensors"
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a window boundary
CORONA = CLASS_NAMES.index("Corona")


def agent_settings(tmp_path: Path, broker, **sections):
    base = {
        "agent": {"id": "mx", "state_dir": str(tmp_path / "state"), "stats_interval_s": 0.5},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "metrics": {"port": 0},
        "alarms": {"window_k": 1, "window_n": 1},
        "model": {"max_wait_s": 0.1},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(None, **base)


def matrix_messages(schedule: dict, sensors: int, windows: int, tail_s: float = 3.0) -> list[Message]:
    """Full windows with count-matrix frames, and `tail_s` of the next one so the last window closes."""
    cfg = SimulationConfig(sensors=sensors, duration_s=windows * 20 + tail_s, start_ns=START_NS, preset="easy",
                           schedule=load_schedule(schedule, sensors, 1.0))
    return list(plan_messages(cfg, WindowSource("easy", 0, 60.0, prpd_format="matrix", matrix_bins=(128, 64))))


def as_user_properties(payload: bytes) -> tuple[bytes, Properties]:
    """The same matrix in the MQTT v5 form: raw counts as the payload, the header as `mad-*` properties."""
    (_, _, dtype_code, _, start_ns, n_phase, n_amp, scale_code, _, full_scale, floor,
     n_cycles) = wire.PRPD_MATRIX_HEADER.unpack_from(payload)
    counts = np.frombuffer(payload, wire.COUNT_DTYPES[dtype_code], offset=wire.PRPD_MATRIX_HEADER.size)
    counts = counts.reshape(n_phase, n_amp)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = wire.prpd_matrix_user_properties(start_ns, counts, n_cycles, full_scale,
                                                          wire.AMPLITUDE_SCALES[scale_code], floor)
    return counts.tobytes(), props


class Sensors:
    """An MQTT v5 publisher (user properties need v5), QoS 1, waiting for every PUBACK."""

    def __init__(self, broker) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="mx-sensors",
                                  protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, items: list[tuple[str, bytes, Properties | None]], timeout_s: float = 20.0) -> None:
        infos = [self.client.publish(topic, payload, qos=1, properties=props) for topic, payload, props in items]
        for info in infos:
            info.wait_for_publish(timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sensors_factory():
    made: list[Sensors] = []

    def make(broker) -> Sensors:
        made.append(Sensors(broker))
        return made[-1]

    yield make
    for sensors in made:
        sensors.close()


def alarms(subscriber, sensor: str) -> list[dict]:
    return [json.loads(m.payload) for m in list(subscriber.messages) if m.topic == f"mad/alarms/{sensor}"]


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_matrix_frames_in_both_wire_forms_are_drawn_paired_and_classified(
        mqtt_broker, tmp_path, service_factory, subscriber_factory, sensors_factory, until):
    seen: list[str] = []
    lock = threading.Lock()

    def predict(images, signals):
        assert images is not None, "a window went to the model without a PRPD image"
        with lock:
            seen.extend(digest(image) for image in images)
        p = np.full((signals.shape[0], 5), 0.01, np.float32)
        p[:, CORONA] = 0.96
        return p

    results: list[WindowResult] = []
    settings = agent_settings(tmp_path, mqtt_broker)
    service = service_factory(settings, FunctionClassifier(predict, name="always-Corona", version="test"),
                              on_result=results.append)
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#", "mad/state/#", "mad/agent/mx/stats"])

    plan = matrix_messages({"0": [{"from_min": 0, "label": "Corona", "intensity": 1.0}],
                            "1": [{"from_min": 0, "label": "Corona", "intensity": 1.0}]}, sensors=2, windows=2)
    frames = [m for m in plan if m.payload[:4] == wire.PRPD_MATRIX_MAGIC]
    assert len(frames) == 4 and not [m for m in plan if m.payload[:4] == wire.PRPD_MAGIC]
    # What the agent must have drawn: the wire's own redraw of each matrix (the project's renderer).
    expected = sorted(digest(wire.decode_message(m.topic, m.payload).image) for m in frames)
    items = []
    for m in plan:  # sensor-1 speaks the MQTT v5 user-properties form, sensor-0 the binary header
        if m.topic.endswith("sensor-1/prpd"):
            items.append((m.topic, *as_user_properties(m.payload)))
        else:
            items.append((m.topic, m.payload, None))
    sensors_factory(mqtt_broker).send(items)

    until(lambda: alarms(watcher, "sensor-0") and alarms(watcher, "sensor-1"), 30, "an alarm per sensor")
    for sensor in ("sensor-0", "sensor-1"):
        (event,) = alarms(watcher, sensor)
        assert event["kind"] == "new" and event["class"] == "Corona"
        assert event["degraded"] is False and event["degraded_reason"] is None
        until(lambda sensor=sensor: watcher.on(f"mad/state/{sensor}")[-1:] == [b"alarm"], 5, f"{sensor} in alarm")
    until(lambda: service.pipeline.counters()["windows_classified"] == 4, 10, "4 windows classified")
    counters = service.pipeline.counters()
    assert counters["frames_received"] == 4 and counters["frames_rejected"] == 0
    assert counters["frames_paired"] == counters["frames_paired_matrix"] == 4  # every window used its matrix
    assert counters["windows_without_frame"] == 0 and counters["windows_degraded"] == 0
    assert sum(service.rejections.counts.values()) == 0
    assert not any(r.degraded for r in results) and len(results) == 4
    with lock:
        assert sorted(seen) == expected  # the model saw exactly the agent's drawings of the matrices
    until(lambda: any(json.loads(p).get("frames_paired_matrix", 0) == 4 for p in watcher.on("mad/agent/mx/stats")),
          5, "stats telling the matrix frames apart")


@pytest.mark.skipif(not SHIPPED_MODEL.exists(),
                    reason=f"{SHIPPED_MODEL} not present (it lands with training; CI has it)")
def test_simulated_matrix_sensors_raise_real_alarms_with_the_shipped_model(
        mqtt_broker, tmp_path, service_factory, subscriber_factory, until):
    results: list[WindowResult] = []
    settings = agent_settings(tmp_path, mqtt_broker, alarms={"window_k": 3, "window_n": 5})
    service = service_factory(settings, load_classifier(SHIPPED_MODEL), on_result=results.append)
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#", "mad/state/#"])
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps({"0": [{"from_min": 0, "label": "Corona", "intensity": 1.0}],
                                    "1": [{"from_min": 0, "label": "Void", "intensity": 1.0}]}))
    # The user's way in: `mad-agent simulate --prpd-format matrix` as the sensors, 5 windows and a bit.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    sim = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--broker", f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}",
         "--sensors", "2", "--schedule", str(schedule), "--duration", "103", "--speed", "1000", "--preset", "easy",
         "--start-time-ns", str(START_NS), "--prpd-format", "matrix", "--matrix-bins", "128x64"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stderr
    assert "sent 206 chunks and 10 PRPD frames" in sim.stderr

    until(lambda: service.pipeline.counters()["windows_classified"] >= 10, 120, "10 windows classified")
    until(lambda: alarms(watcher, "sensor-0") and alarms(watcher, "sensor-1"), 10, "an alarm per sensor")
    for sensor, name in (("sensor-0", "Corona"), ("sensor-1", "Void")):
        first = alarms(watcher, sensor)[0]
        assert first["kind"] == "new" and first["class"] == name and first["degraded"] is False
        until(lambda sensor=sensor: watcher.on(f"mad/state/{sensor}")[-1:] == [b"alarm"], 5, f"{sensor} in alarm")
    counters = service.pipeline.counters()
    assert counters["frames_paired_matrix"] == counters["frames_paired"] == 10
    assert counters["windows_without_frame"] == 0 and counters["frames_rejected"] == 0
    assert [r.class_name for r in results if r.sensor_id == "sensor-0"] == ["Corona"] * 5
    assert [r.class_name for r in results if r.sensor_id == "sensor-1"] == ["Void"] * 5
    assert not any(r.degraded for r in results)
