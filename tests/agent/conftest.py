"""A real Mosquitto on loopback for the agent's MQTT tests (`@pytest.mark.mqtt`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.config = self.workdir / f"mosquitto-{self.port}.conf"
        self.log = self.workdir / f"mosquitto-{self.port}.log"
        self.config.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )

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
def broker_factory(tmp_path: Path) -> Iterator[Callable[[], Broker]]:
    """Makes started brokers (each on its own free port); all are stopped at teardown."""
    executable = _find_mosquitto()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed but CI is set: the MQTT tests must run in CI")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); MQTT tests skipped")
    brokers: list[Broker] = []

    def make() -> Broker:
        broker = Broker(executable, tmp_path)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_broker(broker_factory: Callable[[], Broker]) -> Broker:
    """A started broker: use `.host` and `.port`."""
    return broker_factory()
