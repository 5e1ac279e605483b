"""The live agent against a real Mosquitto: simulator -> broker -> agent -> independent subscribers.

Covers alarms and retained states end to end, broker outage (alarms decided meanwhile arrive once,
historical), SIGKILL with alarms in the outbox (re-sent after restart), Last Will, SIGTERM (exit 0,
`stopped`), and fuzzed payloads (the agent stays up, counts every rejection, keeps serving good sensors).
Event time comes from the messages, so windows are published as fast as the broker takes them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.inference import FunctionClassifier, load_classifier
from agent.service import OUTBOX_FILE, AgentService
from agent.settings import load_settings
from agent.simulator import SimulationConfig, WindowSource, load_schedule, plan_messages
from mad.constants import CLASS_NAMES

pytestmark = pytest.mark.mqtt

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mad_small.safetensors"
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a window boundary
VOID = CLASS_NAMES.index("Void")
TOPICS = wire.Topics()


def always(label: int) -> FunctionClassifier:
    def predict(images, signals):
        p = np.full((signals.shape[0], 5), 0.01, np.float32)
        p[:, label] = 0.96
        return p

    return FunctionClassifier(predict, name=f"always-{CLASS_NAMES[label]}", version="test")


def agent_settings(tmp_path: Path, broker, agent_id: str = "e2e", **sections):
    base = {
        "agent": {"id": agent_id, "state_dir": str(tmp_path / f"state-{agent_id}"), "stats_interval_s": 0.5},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "metrics": {"port": 0},
        "alarms": {"window_k": 1, "window_n": 1},
        "model": {"max_wait_s": 0.1},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(None, **base)


def messages(sensors: int, windows: int, tail_s: float = 3.0, schedule=None, prefix: str = "sensor-"):
    """Full windows (+ frames) and `tail_s` of the next one, so the last full window closes by watermark."""
    schedule = load_schedule(schedule or {}, sensors, 1.0)
    cfg = SimulationConfig(sensors=sensors, duration_s=windows * 20 + tail_s, start_ns=START_NS, preset="easy",
                           schedule=schedule, sensor_prefix=prefix)
    out = list(plan_messages(cfg, WindowSource("easy", 0, 60.0, pool=0 if schedule else 1)))
    return out


class Publisher:
    def __init__(self, broker) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="e2e-sensors")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, items, timeout_s: float = 20.0) -> None:
        infos = [self.client.publish(m.topic, m.payload, qos=1) for m in items]
        for info in infos:
            info.wait_for_publish(timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher_factory():
    made: list[Publisher] = []

    def make(broker) -> Publisher:
        made.append(Publisher(broker))
        return made[-1]

    yield make
    for p in made:
        p.close()


def alarms(subscriber, sensor: str | None = None) -> list[dict]:
    events = [json.loads(m.payload) for m in list(subscriber.messages) if m.topic.startswith("mad/alarms/")]
    return [e for e in events if sensor is None or e["sensor_id"] == sensor]


def payloads(subscriber, topic: str) -> list[bytes]:
    return subscriber.on(topic)


# ---------------------------------------------------------------------------- in-process agent


def test_alarms_states_stats_and_stale_reach_an_independent_subscriber(
        mqtt_broker, tmp_path, service_factory, subscriber_factory, publisher_factory, until):
    settings = agent_settings(tmp_path, mqtt_broker, alarms={"stale_after_s": 1.0, "offline_after_s": 2.0},
                              mqtt={"ha_discovery": True}, limits={"sensors": {"known-1": {}}})
    service = service_factory(settings, always(VOID))
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#", "mad/state/#", "mad/agent/e2e/#", "homeassistant/#"])
    publisher_factory(mqtt_broker).send(messages(sensors=2, windows=2))

    until(lambda: len(alarms(watcher)) == 2, 20, "one alarm per sensor")
    events = alarms(watcher)
    assert sorted(e["sensor_id"] for e in events) == ["sensor-0", "sensor-1"]
    assert all(e["kind"] == "new" and e["class"] == "Void" and not e["historical"] for e in events)
    assert sorted(e["seq"] for e in events) == [0, 1] and all(e["agent_id"] == "e2e" for e in events)
    assert events[0]["window_start_ns"] == START_NS
    until(lambda: b"offline" in payloads(watcher, "mad/state/sensor-0"), 10, "silent sensor goes offline")
    states = payloads(watcher, "mad/state/sensor-0")
    assert states.index(b"alarm") < states.index(b"stale") < states.index(b"offline")
    until(lambda: any(json.loads(p).get("windows_classified", 0) >= 4
                      for p in payloads(watcher, "mad/agent/e2e/stats")), 10, "stats with 4 classified windows")
    metrics = service.metrics.render().decode()
    assert 'mad_windows_total{degraded="false",sensor="sensor-0"} 2.0' in metrics
    assert 'mad_alarms_total{kind="new",sensor="sensor-1"} 1.0' in metrics
    assert "mad_inference_latency_seconds_count" in metrics and "mad_broker_connected 1.0" in metrics

    discovered = {m.topic for m in list(watcher.messages) if m.topic.startswith("homeassistant/")}
    assert {"homeassistant/sensor/mad_e2e_known-1/state/config",  # listed sensor: announced at start
            "homeassistant/sensor/mad_e2e_sensor-0/state/config"} <= discovered  # others on first data
    late = subscriber_factory(mqtt_broker, ["mad/state/#", "mad/agent/e2e/status"])  # retained values
    until(lambda: late.on("mad/state/sensor-1") == [b"offline"] and late.on("mad/agent/e2e/status") == [b"online"],
          5, "retained state and status for a late subscriber")
    service.stop()
    until(lambda: payloads(watcher, "mad/agent/e2e/status")[-1:] == [b"stopped"], 5, "stopped status")

    again = AgentService(settings, always(VOID))  # same state dir: the sequence and both open alarms continue
    assert again.first_seq == 2 and again.pipeline.sensor_states() == {"sensor-0": "alarm", "sensor-1": "alarm"}
    again.outbox.close()


@pytest.mark.skipif(not SHIPPED_MODEL.exists(),
                    reason=f"{SHIPPED_MODEL} not present (it lands with training; CI has it)")
def test_shipped_model_alarms_on_a_void_sensor_and_not_on_a_normal_one(
        mqtt_broker, tmp_path, service_factory, subscriber_factory, publisher_factory, until):
    settings = agent_settings(tmp_path, mqtt_broker, alarms={"window_k": 3, "window_n": 5})
    service = service_factory(settings, load_classifier(SHIPPED_MODEL))
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#", "mad/state/#"])
    schedule = {"0": [{"from_min": 0, "label": "Void", "intensity": 1.0}],
                "1": [{"from_min": 0, "label": "Normal", "intensity": 0.7}]}
    publisher_factory(mqtt_broker).send(messages(sensors=2, windows=5, schedule=schedule))
    until(lambda: service.pipeline.counters()["windows_classified"] >= 10, 120, "10 windows classified")
    until(lambda: alarms(watcher, "sensor-0"), 10, "an alarm for the Void sensor")
    first = alarms(watcher, "sensor-0")[0]
    assert first["kind"] == "new" and first["class"] == "Void"
    until(lambda: watcher.on("mad/state/sensor-0")[-1:] == [b"alarm"], 5, "sensor-0 state alarm")
    assert alarms(watcher, "sensor-1") == []
    assert watcher.on("mad/state/sensor-1")[-1:] == [b"ok"]


def test_alarms_decided_during_a_broker_outage_arrive_once_as_historical(
        broker_factory, tmp_path, service_factory, subscriber_factory, publisher_factory, until):
    broker = broker_factory(persistence=True)
    settings = agent_settings(tmp_path, broker, windowing={"idle_close_s": 4.0})
    service = service_factory(settings, always(VOID))
    watcher = subscriber_factory(broker, ["mad/alarms/#"], client_id="outage-watcher-e2e")
    sensors = publisher_factory(broker)
    sensors.send(messages(sensors=1, windows=1, prefix="before-"))
    until(lambda: len(alarms(watcher)) == 1, 20, "the alarm before the outage")

    # Two sensors' windows are complete but still open (no later chunk): they close on the idle timer.
    sensors.send(messages(sensors=2, windows=1, tail_s=0.0, prefix="during-"))
    until(lambda: service.pipeline.counters()["chunks_received"] >= 60, 10, "the agent has the data")
    broker.stop()
    until(lambda: len(service.outbox) == 2 and not service.transport.connected, 20, "2 alarms held in the outbox")
    broker.start()
    until(lambda: len(alarms(watcher)) == 3 and len(service.outbox) == 0, 20, "outage alarms delivered")
    during = [e for e in alarms(watcher) if e["sensor_id"].startswith("during-")]
    assert sorted(e["sensor_id"] for e in during) == ["during-0", "during-1"]
    assert all(e["historical"] for e in during) and not alarms(watcher, "before-0")[0]["historical"]
    assert len({e["event_id"] for e in alarms(watcher)}) == 3  # once each


def test_fuzzed_payloads_are_counted_and_good_sensors_keep_working(
        mqtt_broker, tmp_path, service_factory, subscriber_factory, publisher_factory, until):
    settings = agent_settings(tmp_path, mqtt_broker, mqtt={"deadletter": True})
    service = service_factory(settings, always(VOID))
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#", "mad/deadletter/#"])
    fuzzer = publisher_factory(mqtt_broker)
    good_chunk = messages(sensors=1, windows=1, prefix="fz-")[0].payload
    sent = {"n": 0}

    def seen() -> int:
        counters = service.pipeline.counters()
        return sum(service.rejections.counts.values()) + counters["chunks_received"] + counters["frames_received"]

    header_fields = st.tuples(st.binary(min_size=4, max_size=4), st.integers(0, 255), st.integers(0, 255),
                              st.integers(0, 65535), st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1),
                              st.floats(width=32, allow_nan=True), st.floats(width=32, allow_nan=True),
                              st.integers(0, 2**32 - 1))
    payload = st.one_of(
        st.binary(max_size=300),
        header_fields.map(lambda f: wire.PD_HEADER.pack(*f) + good_chunk[wire.PD_HEADER.size:]),
        st.tuples(st.integers(0, len(good_chunk) - 1), st.binary(min_size=1, max_size=8)).map(
            lambda cut: good_chunk[:cut[0]] + cut[1]),
    )

    @hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(kind=st.sampled_from(["pd", "prpd"]), sensor=st.sampled_from(["fz-1", "fz-2", "bad id", "fz-3"]),
           body=payload)
    def fuzz(kind, sensor, body):
        before = seen()
        fuzzer.send([type("M", (), {"topic": f"mad/sensors/{sensor}/{kind}", "payload": body})()])
        sent["n"] += 1
        until(lambda: seen() > before, 5, "the fuzzed message accounted for")

    fuzz()
    assert service.alive and sum(service.rejections.counts.values()) >= sent["n"] * 0.8
    metrics = service.metrics.render().decode()
    assert "mad_rejected_payloads_total{" in metrics
    publisher_factory(mqtt_broker).send(messages(sensors=1, windows=1, prefix="good-"))
    until(lambda: alarms(watcher, "good-0"), 20, "the good sensor still raises its alarm")
    assert any(m.topic.startswith("mad/deadletter/fz-") for m in watcher.messages)


# ---------------------------------------------------------------------------- the agent as a process


@pytest.fixture(scope="module")
def void_model(tmp_path_factory) -> Path:
    """A real mad_tiny checkpoint whose head always says Void: the subprocess agent raises alarms."""
    import torch

    import mad
    from train.checkpoint import save_checkpoint

    model = mad.build_model("mad_tiny", seed=0)
    with torch.no_grad():
        model.classifier.fc.weight.zero_()
        model.classifier.fc.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 12.0]))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "void.safetensors", model, name="always_void")


def write_config(tmp_path: Path, broker, model: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
id = "proc"
state_dir = "{tmp_path / 'state'}"
stats_interval_s = 0.5
[model]
path = "{model}"
max_wait_s = 0.1
[windowing]
idle_close_s = 4.0
[alarms]
window_k = 1
window_n = 1
[mqtt]
host = "{broker.host}"
port = {broker.port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
port = 0
[logging]
format = "json"
""")
    return path


def start_agent(config: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                                cwd=REPO, env=env, stdout=out, stderr=out)


def outbox_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


@pytest.mark.slow
def test_process_sigkill_outbox_resent_lwt_and_sigterm(broker_factory, tmp_path, subscriber_factory,
                                                       publisher_factory, void_model, until):
    broker = broker_factory(persistence=True)
    config, log = write_config(tmp_path, broker, void_model), tmp_path / "agent.log"
    status = "mad/agent/proc/status"
    watcher = subscriber_factory(broker, ["mad/alarms/#", "mad/agent/proc/#"], client_id="proc-watcher")

    def statuses() -> list[bytes]:
        return watcher.on(status)

    def stats() -> list[dict]:
        return [json.loads(p) for p in watcher.on("mad/agent/proc/stats")]

    agent = start_agent(config, log)
    try:
        until(lambda: statuses()[-1:] == [b"online"], 60, f"agent online (log: {log})")
        publisher_factory(broker).send(messages(sensors=1, windows=1, tail_s=0.0, prefix="k"))
        until(lambda: any(s["chunks_received"] >= 20 and s["frames_received"] >= 1 for s in stats()), 20,
              "the agent has the window")
        broker.stop()  # the window closes on the idle timer while the broker is away
        until(lambda: outbox_rows(tmp_path / "state" / OUTBOX_FILE) == 1, 30, "the alarm waiting in the outbox")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert alarms(watcher) == []

        broker.start()
        agent = start_agent(config, log)
        until(lambda: len(alarms(watcher)) == 1, 60, "the alarm re-sent after restart")
        (event,) = alarms(watcher)
        assert event["historical"] and event["sensor_id"] == "k0" and event["class"] == "Void" and event["seq"] == 0
        until(lambda: outbox_rows(tmp_path / "state" / OUTBOX_FILE) == 0, 10, "outbox emptied on PUBACK")

        online = statuses().count(b"online")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        until(lambda: statuses()[-1:] == [b"offline"], 10, "Last Will offline after SIGKILL")

        agent = start_agent(config, log)
        until(lambda: statuses().count(b"online") > online, 60, "agent online again")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, log.read_text()[-3000:]
        until(lambda: statuses()[-1:] == [b"stopped"], 5, "stopped status")
        assert len(alarms(watcher)) == 1  # nothing re-sent twice
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
