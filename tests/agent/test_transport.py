"""MqttTransport against a real Mosquitto: intake, availability (LWT / stopped), reconnect behaviour."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from agent.intake import Intake
from agent.outbox import Outbox
from agent.transport import MqttTransport, TransportConfig, read_credential

pytestmark = pytest.mark.mqtt
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_transport(tmp_path):
    made: list[MqttTransport] = []

    def make(broker, protocol: str = "5", on_connection_change=None, **kwargs) -> MqttTransport:
        config = TransportConfig(agent_id="edge1", host=broker.host, port=broker.port, protocol=protocol,
                                 reconnect_min_s=0.1, reconnect_max_s=0.5, **kwargs)
        transport = MqttTransport(config, Intake(max_messages=100), Outbox(tmp_path / f"outbox{len(made)}.db"),
                                  on_connection_change)
        transport.start()
        assert transport.wait_connected(5) and transport.wait_subscribed(5), "transport did not connect"
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.stop(timeout_s=1)


def _drain(intake: Intake, until, count: int) -> list:
    got: list = []
    until(lambda: got.extend(intake.get_batch(timeout=0)) or len(got) >= count, what=f"{count} intake messages")
    return got


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_sensor_topics_reach_the_intake_undecoded(mqtt_broker, make_transport, until, protocol) -> None:
    transport = make_transport(mqtt_broker, protocol=protocol)
    publish.single("mad/sensors/s1/pd", b"\x01\x02", qos=1, hostname=mqtt_broker.host, port=mqtt_broker.port)
    publish.single("mad/sensors/s2/prpd", b"img", qos=1, hostname=mqtt_broker.host, port=mqtt_broker.port)
    publish.single("mad/other/s1/pd", b"no", qos=1, hostname=mqtt_broker.host, port=mqtt_broker.port)
    got = _drain(transport.intake, until, 2)
    assert {(m.topic, m.payload) for m in got} == {("mad/sensors/s1/pd", b"\x01\x02"), ("mad/sensors/s2/prpd", b"img")}
    assert all(m.received_ns > 0 for m in got)


def test_v5_user_properties_are_passed_through(mqtt_broker, make_transport, until) -> None:
    transport = make_transport(mqtt_broker)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("mad-seq", "4"), ("mad-dtype", "int16")]
    message = {"topic": "mad/sensors/s1/pd", "payload": b"\x00\x00", "qos": 1, "properties": props}
    publish.multiple([message], hostname=mqtt_broker.host, port=mqtt_broker.port, protocol=5)
    (message,) = _drain(transport.intake, until, 1)
    assert message.user_properties == (("mad-seq", "4"), ("mad-dtype", "int16"))


def test_online_retained_and_clean_stop_publishes_stopped(mqtt_broker, make_transport, subscriber_factory) -> None:
    transport = make_transport(mqtt_broker)
    watcher = subscriber_factory(mqtt_broker, ["mad/agent/edge1/status"])
    assert watcher.wait_for(lambda: watcher.on("mad/agent/edge1/status") == [b"online"])  # retained
    transport.stop()
    assert watcher.wait_for(lambda: watcher.on("mad/agent/edge1/status") == [b"online", b"stopped"])
    late = subscriber_factory(mqtt_broker, ["mad/agent/edge1/status"])
    assert late.wait_for(lambda: late.on("mad/agent/edge1/status") == [b"stopped"])  # no Last Will after clean exit


AGENT_SCRIPT = textwrap.dedent("""
    import sys, threading
    from agent.intake import Intake
    from agent.outbox import Outbox
    from agent.transport import MqttTransport, TransportConfig
    cfg = TransportConfig(agent_id="edge9", host=sys.argv[1], port=int(sys.argv[2]))
    transport = MqttTransport(cfg, Intake(), Outbox(sys.argv[3]))
    transport.start()
    assert transport.wait_connected(10)
    print("connected", flush=True)
    threading.Event().wait()
""")


def test_killed_agent_yields_offline_through_last_will(mqtt_broker, subscriber_factory, tmp_path) -> None:
    watcher = subscriber_factory(mqtt_broker, ["mad/agent/edge9/status"])
    agent = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, mqtt_broker.host, str(mqtt_broker.port),
                              str(tmp_path / "o.db")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert agent.stdout.readline().strip() == "connected"
        assert watcher.wait_for(lambda: watcher.on("mad/agent/edge9/status") == [b"online"])
        os.kill(agent.pid, signal.SIGKILL)  # the socket closes without DISCONNECT
        agent.wait(timeout=5)
        assert watcher.wait_for(lambda: watcher.on("mad/agent/edge9/status") == [b"online", b"offline"])
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_reconnect_resubscribes_and_republishes_retained_state(broker_factory, make_transport, subscriber_factory,
                                                               until) -> None:
    broker = broker_factory()  # no persistence: a restart forgets retained messages and subscriptions
    states: list[bool] = []
    transport = make_transport(broker, on_connection_change=states.append)
    transport.set_state("s1", "alarm")
    transport.publish_discovery("s1")
    broker.restart()
    until(lambda: len(states) >= 3, what="reconnect")
    assert transport.wait_subscribed(5)
    assert states[:3] == [True, False, True]
    late = subscriber_factory(broker, ["mad/state/#", "homeassistant/#", "mad/agent/edge1/status"])
    assert late.wait_for(lambda: late.on("mad/state/s1") == [b"alarm"] and len(late.messages) == 4)
    publish.single("mad/sensors/s1/pd", b"after", qos=1, hostname=broker.host, port=broker.port)
    assert [m.payload for m in _drain(transport.intake, until, 1)] == [b"after"]


def test_deadletter_carries_reason(mqtt_broker, make_transport, subscriber_factory) -> None:
    transport = make_transport(mqtt_broker, deadletter=True)
    watcher = subscriber_factory(mqtt_broker, ["mad/deadletter/#"])
    error = wire.WireError("bad_magic", "magic", b"XXXX", "expected MADP")
    transport.publish_deadletter("s1", "mad/sensors/s1/pd", b"XXXX", error)
    assert watcher.wait_for(lambda: len(watcher.messages) == 1)
    assert watcher.messages[0].payload == b"XXXX"  # v5: payload untouched; reason as user property


def test_config_validation_and_secret_handling(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="protocol"):
        TransportConfig(agent_id="a", protocol="4")
    with pytest.raises(ValueError, match="tls_cert_file"):
        TransportConfig(agent_id="a", tls_cert_file=Path("c.pem"))
    with pytest.raises(ValueError, match="agent_id"):
        TransportConfig(agent_id="a/b")
    assert "hunter2" not in repr(TransportConfig(agent_id="a", username="u", password="hunter2"))
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_credential("mqtt-password") == "s3cret"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_credential("mqtt-password") is None
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_credential("x", fallback_file=tmp_path / "empty")


def test_reference_publisher_end_to_end_decodes(mqtt_broker, make_transport, until) -> None:
    transport = make_transport(mqtt_broker)
    subprocess.run([sys.executable, str(REPO / "docs" / "reference_publisher.py"), "--host", mqtt_broker.host,
                    "--port", str(mqtt_broker.port), "--sensor", "bay3", "--seconds", "20", "--fast"],
                   check=True, timeout=60)
    decoded = [wire.decode_message(m.topic, m.payload, m.user_properties) for m in _drain(transport.intake, until, 21)]
    chunks = [d for d in decoded if not hasattr(d, "image")]
    (frame,) = [d for d in decoded if hasattr(d, "image")]
    assert [c.seq for c in chunks] == list(range(20)) and all(c.n == 7680 for c in chunks)
    assert frame.window_start_ns == chunks[0].t0_ns and frame.sensor_id == "bay3"


def _pki(directory: Path) -> dict[str, Path]:
    """A throw-away CA with a server cert for 127.0.0.1 and a client cert (openssl CLI, EC keys: fast)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed: cannot make test certificates")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory, timeout=30)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=mad-test-ca")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=mad-test-{name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", "san.ext")
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_with_client_certificate(broker_factory, tmp_path, until) -> None:
    pki = _pki(tmp_path)
    broker = broker_factory(tls={"cafile": str(pki["ca.pem"]), "certfile": str(pki["server.pem"]),
                                 "keyfile": str(pki["server.key"]), "require_certificate": "true"})
    config = TransportConfig(agent_id="edge1", host=broker.host, port=broker.port, reconnect_min_s=0.1,
                             reconnect_max_s=0.2, tls_ca_file=pki["ca.pem"], tls_cert_file=pki["client.pem"],
                             tls_key_file=pki["client.key"])
    transport = MqttTransport(config, Intake(), Outbox(tmp_path / "o.db"))
    transport.start()
    try:
        assert transport.wait_subscribed(10), "TLS connection with a client certificate failed"
    finally:
        transport.stop(timeout_s=1)
    no_client_cert = MqttTransport(TransportConfig(agent_id="edge2", host=broker.host, port=broker.port,
                                                   reconnect_min_s=0.1, reconnect_max_s=0.2,
                                                   tls_ca_file=pki["ca.pem"]), Intake(), Outbox(tmp_path / "p.db"))
    no_client_cert.start()
    try:
        assert not no_client_cert.wait_connected(1.0)  # the broker requires a client certificate
    finally:
        no_client_cert.stop(timeout_s=0.5)


def test_username_password_against_a_broker_that_requires_them(password_broker, tmp_path, caplog) -> None:
    broker = password_broker

    def transport(agent_id: str, password: str) -> MqttTransport:
        config = TransportConfig(agent_id=agent_id, host=broker.host, port=broker.port, reconnect_min_s=0.1,
                                 reconnect_max_s=0.2, username="edge", password=password)
        assert "s3cret-pw" not in repr(config)  # the password never reaches a log line through the config
        return MqttTransport(config, Intake(), Outbox(tmp_path / f"{agent_id}.db"))

    good = transport("edge1", "s3cret-pw")
    good.start()
    try:
        assert good.wait_subscribed(10), "connection with the right password failed"
    finally:
        good.stop(timeout_s=1)
    bad = transport("edge2", "wrong")
    bad.start()
    try:
        assert not bad.wait_connected(1.0)  # refused: not authorised
    finally:
        bad.stop(timeout_s=0.5)
    assert "s3cret-pw" not in caplog.text
