"""A real Mosquitto on loopback for the agent's MQTT tests (`@pytest.mark.mqtt`)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.service import AgentService

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 10.0


def _find_mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """One mosquitto process; `stop()`/`start()` keep the port, for outage tests."""

    executable: str
    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=_free_port)
    persistence: bool = False  # True: sessions, queued QoS 1 messages and retained ones survive restart()
    tls: dict[str, str] | None = None  # mosquitto listener options, e.g. cafile/certfile/keyfile/require_certificate
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.config = self.workdir / f"mosquitto-{self.port}.conf"
        self.log = self.workdir / f"mosquitto-{self.port}.log"
        # Started as root, mosquitto drops to user `mosquitto` and then cannot write into tmp_path.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} {self.host}", "allow_anonymous true",
                 "log_dest stderr",
                 "log_type error", "log_type warning"]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/",
                      f"persistence_file mosquitto-{self.port}.db"]
        else:
            lines.append("persistence false")
        lines += [f"{key} {value}" for key, value in (self.tls or {}).items()]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.executable, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not accept on {self.host}:{self.port} in {START_TIMEOUT_S}s")
            time.sleep(0.02)  # polling interval while waiting for the listener, not a race dodge

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Makes started brokers (each on its own free port); all are stopped at teardown."""
    executable = _find_mosquitto()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed but CI is set: the MQTT tests must run in CI")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); MQTT tests skipped")
    brokers: list[Broker] = []

    def make(persistence: bool = False, tls: dict[str, str] | None = None) -> Broker:
        broker = Broker(executable, tmp_path, persistence=persistence, tls=tls)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A started broker: use `.host` and `.port`."""
    return broker_factory()


class Subscriber:
    """A plain paho client that records what it receives; waits poll a condition with a deadline."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._changed = threading.Condition()
        self._topics = topics
        self._subscribed = threading.Event()
        # A fixed client id with a persistent session: QoS 1 messages published while it is away are queued.
        persistent = client_id is not None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("test subscriber did not get SUBACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._changed:
            return [m.payload for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    """Makes connected, subscribed test subscribers; all are closed at teardown."""
    made: list[Subscriber] = []

    def make(broker: Broker, topics: list[str], client_id: str | None = None) -> Subscriber:
        subscriber = Subscriber(broker, topics, client_id)
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `predicate` until true or fail the test after `timeout_s` (never a blind sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def until() -> Callable[..., None]:
    return wait_until


@pytest.fixture
def service_factory() -> Iterator[Callable[..., AgentService]]:
    """Starts in-process agent services (waiting for their SUBACK) and stops the live ones at teardown."""
    made: list[AgentService] = []

    def make(settings, classifier, **kwargs) -> AgentService:
        service = AgentService(settings, classifier, **kwargs)
        service.start()
        made.append(service)
        assert service.transport.wait_subscribed(10), "agent never got SUBACK for its inputs"
        return service

    yield make
    for service in made:
        if service.alive:
            service.stop(ack_timeout_s=1.0)


PASSWORD_USER, PASSWORD = "edge", "s3cret-pw"


@pytest.fixture
def password_broker(broker_factory: Callable[..., Broker], tmp_path: Path) -> Broker:
    """A broker that refuses anonymous clients and knows one user, PASSWORD_USER / PASSWORD."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd (Debian package mosquitto) is not installed")
    password_file = tmp_path / "passwd"
    subprocess.run([passwd, "-c", "-b", str(password_file), PASSWORD_USER, PASSWORD], check=True, capture_output=True)
    password_file.chmod(0o600)
    return broker_factory(tls={"allow_anonymous": "false", "password_file": str(password_file)})
