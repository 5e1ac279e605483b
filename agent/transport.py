"""The agent's MQTT connection (paho-mqtt 2.x, callback API v2).

In: the network thread only stamps and enqueues raw messages into the `Intake`.
Out: alarms through the `Outbox` (QoS 1, row deleted on PUBACK, backlog re-sent as historical
on every connect), retained per-sensor state (re-published on every connect), availability
(`online` retained, Last Will `offline`, `stopped` on clean exit), stats, dead letters.
Reconnects: paho's loop retries for ever; `ReconnectBackoff` chooses every wait (doubling, jittered,
kept until a CONNACK accepts us), and each failed attempt is classified (`classify_connect_error`,
`classify_connack`) and logged once per cause at a bounded rate.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from agent.intake import Intake, RawMessage
from agent.logging import RateLimitedLog
from agent.outbox import Outbox, StateWriteError

log = logging.getLogger(__name__)
_FAILURES_KEPT = 256


@dataclass(frozen=True)
class TransportConfig:
    """Everything the connection needs; the `run` command builds it from the agent settings."""

    agent_id: str
    host: str = "localhost"
    port: int = 1883
    client_id: str | None = None  # None: "mad-<agent_id>-<random>" (unique, so two agents never kick each other)
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged
    tls: bool = False  # TLS with the system CAs; implied by tls_ca_file / tls_cert_file
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    failure_log_interval_s: float = 60.0  # a repeated connection failure is logged once per cause per this
    subscribe_qos: int = 1
    deadletter: bool = False
    topics: wire.Topics = field(default_factory=wire.Topics)

    def __post_init__(self) -> None:
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"mqtt protocol={self.protocol!r}: expected '5' or '3.1.1'")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"mqtt port={self.port}: expected 1..65535")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(f"mqtt reconnect_min_s={self.reconnect_min_s} / reconnect_max_s={self.reconnect_max_s}: "
                             "need 0 < min <= max")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("mqtt tls_cert_file and tls_key_file must be given together")
        if not wire.SENSOR_ID_RE.match(self.agent_id):
            raise ValueError(f"agent_id={self.agent_id!r}: must match {wire.SENSOR_ID_RULE}")


class ReconnectBackoff:
    """The wait before each reconnect attempt: doubling, jittered at every step, reset only by a CONNACK.

    Attempt k after the last accepted connection waits a uniform draw in [step_k / 2, step_k], with
    step_k = min(max_s, min_s * 2**k): the nominal step doubles from `reconnect_min_s` to `reconnect_max_s`
    and every wait, the ones at the ceiling included, is spread over half of it, so a fleet of agents that
    lost the same broker does not come back in lock-step. A refused CONNACK, a TLS or DNS failure and a
    dropped connection all advance the same counter; only an accepted CONNACK resets it.
    """

    def __init__(self, min_s: float, max_s: float, uniform: Callable[[float, float], float] = random.uniform) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"reconnect back-off: need 0 < min_s ({min_s}) <= max_s ({max_s})")
        self.min_s, self.max_s, self.uniform = min_s, max_s, uniform
        self.attempt = 0  # failed attempts since the last accepted connection

    def step(self, attempt: int) -> float:
        """The nominal (un-jittered) wait after `attempt` failures."""
        return min(self.max_s, self.min_s * 2.0 ** min(attempt, 64))

    def next_delay(self) -> float:
        nominal = self.step(self.attempt)
        self.attempt += 1
        return self.uniform(nominal / 2, nominal)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class ConnectionFailure:
    at: float  # time.monotonic() of the failure
    cause: str  # stable code: tls_unknown_ca, refused_auth, dns, connection_refused, ... (docs/mqtt.md)
    detail: str


# OpenSSL X509_V_ERR_* codes (`ssl.SSLCertVerificationError.verify_code`) -> cause
_TLS_VERIFY_CAUSES = {
    2: "tls_unknown_ca",  # unable to get issuer certificate
    18: "tls_unknown_ca",  # self-signed certificate
    19: "tls_unknown_ca",  # self-signed certificate in certificate chain
    20: "tls_unknown_ca",  # unable to get local issuer certificate
    21: "tls_unknown_ca",  # unable to verify the first certificate
    9: "tls_certificate_not_yet_valid",
    10: "tls_certificate_expired",
    62: "tls_hostname_mismatch",
    64: "tls_hostname_mismatch",  # IP address mismatch
}
# MQTT 5 CONNACK reason codes (paho maps MQTT 3.1.1 return codes onto them) -> cause
_CONNACK_CAUSES = {
    132: "refused_protocol",
    133: "refused_client_id",
    134: "refused_auth",  # bad user name or password
    135: "refused_auth",  # not authorized
    136: "refused_unavailable",
    137: "refused_unavailable",  # server busy
    138: "refused_banned",
    140: "refused_auth",  # bad authentication method
}


def classify_connect_error(error: BaseException | None) -> tuple[str, str]:
    """(cause, detail) of an exception raised while opening the connection (TCP, TLS, DNS)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return _TLS_VERIFY_CAUSES.get(error.verify_code, "tls_verify_failed"), str(error.verify_message or error)
    if isinstance(error, ssl.SSLError):
        return "tls_error", str(getattr(error, "reason", None) or error)
    if isinstance(error, socket.gaierror):
        return "dns", str(error)
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused", str(error)
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return "timeout", str(error) or "timed out"
    if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable", str(error)
    if isinstance(error, OSError):
        return "network_error", str(error)
    return "connect_failed", repr(error) if error is not None else "no error reported"


def classify_connack(reason_code) -> tuple[str, str]:
    """(cause, detail) of a CONNACK that refused the connection."""
    value = getattr(reason_code, "value", reason_code)
    return _CONNACK_CAUSES.get(value, f"refused_{value}"), str(reason_code)


def read_credential(name: str, fallback_file: Path | None = None) -> str | None:
    """A secret from systemd's `$CREDENTIALS_DIRECTORY/<name>` (LoadCredential=), else from `fallback_file`."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    candidates = ([Path(directory) / name] if directory else []) + ([fallback_file] if fallback_file else [])
    for path in candidates:
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise OSError(f"credential {path}: cannot read ({error.strerror})") from None
            if not lines or not lines[0].strip():
                raise ValueError(f"credential {path}: empty")
            return lines[0].strip()
    return None


class MqttTransport:
    """One paho client with a background network thread (`start` / `stop`)."""

    def __init__(
        self,
        config: TransportConfig,
        intake: Intake,
        outbox: Outbox,
        on_connection_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self.intake = intake
        self.outbox = outbox
        self._on_connection_change = on_connection_change
        self.topics = config.topics
        self.status_topic = self.topics.for_agent("status", config.agent_id)
        self.client_id = config.client_id or f"mad-{config.agent_id}-{uuid.uuid4().hex[:8]}"
        self._v5 = config.protocol == "5"
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # SUBACK for the input topics on the current connection
        self._subscribe_mid: int | None = None
        self._stopping = False
        self.connects = 0  # successful CONNACKs, for stats and tests
        self.outbox_write_failed = 0  # alarms published without an outbox row (state dir not writable)
        self.backoff = ReconnectBackoff(config.reconnect_min_s, config.reconnect_max_s)
        self.connect_failures = 0  # failed attempts, all causes, since start
        self._failures_at_connect = 0  # connect_failures at the last accepted connection
        self.failures: deque[ConnectionFailure] = deque(maxlen=_FAILURES_KEPT)  # recent ones, oldest first
        self.delays: deque[float] = deque(maxlen=_FAILURES_KEPT)  # the waits drawn after them, same order
        self._failure_log = RateLimitedLog(log, config.failure_log_interval_s)
        self._connack_seen = False  # this connection attempt got a CONNACK (accepted or refused)
        # Serialises "hand this outbox row to paho" between callers and the on_connect backlog flush.
        self._send_lock = threading.Lock()
        # mid <-> outbox row bookkeeping; never held while calling into paho (paho calls on_publish under its locks).
        self._mid_lock = threading.Lock()
        self._inflight: dict[int, int | None] = {}  # mid -> outbox row id (None: not an outbox message)
        self._early_acks: set[int] = set()  # PUBACKs that beat the registration of their mid
        self._rows_in_client: set[int] = set()  # rows paho holds; paho itself re-sends them after a reconnect
        self._retained: dict[str, bytes] = {}  # topic -> payload, re-published on every connect
        self._client = self._build_client()

    # ------------------------------------------------------------------ setup
    def _build_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else True,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls or cfg.tls_ca_file is not None or cfg.tls_cert_file is not None:
            client.tls_set(
                ca_certs=str(cfg.tls_ca_file) if cfg.tls_ca_file else None,
                certfile=str(cfg.tls_cert_file) if cfg.tls_cert_file else None,
                keyfile=str(cfg.tls_key_file) if cfg.tls_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        # Replaced before every wait by `_schedule_retry`; paho's own doubling is never used (it has no
        # jitter, and every reconnect_delay_set call restarts it).
        client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        return client

    def _schedule_retry(self, client: mqtt.Client) -> None:
        """Set the wait before paho's next attempt (network thread, called before paho waits).

        paho's loop calls on_connect_fail or on_disconnect after every failed or lost connection and then
        waits `_reconnect_wait`; reconnect_delay_set(d, d) makes that wait exactly d (it clears paho's own
        counter, whose first step is min_delay), while the doubling lives in `self.backoff`.
        """
        delay = self.backoff.next_delay()
        self.delays.append(delay)
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)

    def _connection_failed(self, cause: str, detail: str) -> None:
        self.connect_failures += 1
        self.failures.append(ConnectionFailure(time.monotonic(), cause, detail))
        suppressed = self._failure_log.allow(cause)
        if suppressed is not None:
            log.warning("mqtt: cannot connect to %s:%s: %s (%s); retrying with back-off up to %gs%s",
                        self.config.host, self.config.port, cause, detail, self.config.reconnect_max_s,
                        f"; {suppressed} more failure(s) like it since the last line" if suppressed else "")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background; reconnects forever with backoff until `stop`."""
        kwargs = {"clean_start": True} if self._v5 else {}
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive_s, **kwargs)
        self._client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish `stopped`, wait for its PUBACK (bounded), disconnect cleanly (no Last Will)."""
        self._stopping = True
        if self._connected.is_set():
            info = self._publish(self.status_topic, b"stopped", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as error:
                log.warning("mqtt: 'stopped' status not confirmed: %s", error)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the broker acknowledged the input subscriptions on the current connection."""
        return self._subscribed.wait(timeout_s)

    # ------------------------------------------------------------------ callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_seen = True
        if reason_code.is_failure:
            self._connection_failed(*classify_connack(reason_code))  # the broker then closes: _on_disconnect
            return
        failed_attempts = self.connect_failures - self._failures_at_connect
        self._failures_at_connect = self.connect_failures
        self.backoff.reset()
        self.connects += 1
        # Subscribing here, not once after start(), so subscriptions survive a reconnect with a clean session.
        _, self._subscribe_mid = client.subscribe(
            [(topic, self.config.subscribe_qos) for topic in self.topics.subscriptions()])
        self._publish(self.status_topic, b"online", qos=1, retain=True)
        for topic, payload in list(self._retained.items()):
            self._publish(topic, payload, qos=1, retain=True)
        with self._send_lock:
            self._connected.set()
            for row in self.outbox.pending():
                if row.row_id not in self._rows_in_client:
                    self._send_row(row.row_id, row.topic, wire.mark_historical(row.payload))
        log.info("mqtt: connected to %s:%s as %s%s", self.config.host, self.config.port, self.client_id,
                 f" after {failed_attempts} failed attempt(s)" if failed_attempts else "")
        self._notify(True)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError:` around reconnect() (TCP, DNS, TLS handshake) and
        # passes no exception: the one being handled is still sys.exc_info() here.
        self._connection_failed(*classify_connect_error(sys.exc_info()[1]))
        if not self._stopping:
            self._schedule_retry(client)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("mqtt: broker refused input subscriptions %s: %s", self.topics.subscriptions(), refused)
        else:
            self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        connack_seen, self._connack_seen = self._connack_seen, False
        self._connected.clear()
        self._subscribed.clear()
        if self._stopping:
            log.info("mqtt: disconnected cleanly")
        elif was_connected:
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason_code)
        elif not connack_seen:  # e.g. a TLS 1.3 broker refusing our client certificate after the handshake
            self._connection_failed("closed_before_connack", str(reason_code))
        if not self._stopping:
            self._schedule_retry(client)
        if was_connected:
            self._notify(False)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # routing will reject it as unknown_topic
        user_properties: tuple[tuple[str, str], ...] = ()
        if message.properties is not None:
            user_properties = tuple(getattr(message.properties, "UserProperty", ()))
        self.intake.put(RawMessage(topic, bytes(message.payload), time.time_ns(), user_properties))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._mid_lock:
            if mid not in self._inflight:
                self._early_acks.add(mid)
                return
            row_id = self._inflight.pop(mid)
            if row_id is not None:
                self._rows_in_client.discard(row_id)
        if row_id is not None:
            self._acknowledge(row_id, reason_code)

    def _acknowledge(self, row_id: int, reason_code) -> None:
        if reason_code is not None and reason_code.is_failure:
            # The broker refused it (e.g. not authorised): keep the row; it is re-sent on the next connect.
            log.warning("mqtt: broker refused alarm row %s: %s", row_id, reason_code)
            return
        self.outbox.remove(row_id)

    def _notify(self, connected: bool) -> None:
        if self._on_connection_change is not None:
            try:
                self._on_connection_change(connected)
            except Exception:  # a metrics hook must never kill the network thread
                log.exception("mqtt: connection-change hook failed")

    # ------------------------------------------------------------------ publishing (any thread)
    def _register(self, info: mqtt.MQTTMessageInfo, row_id: int | None) -> None:
        with self._mid_lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                acked = True
            else:
                self._inflight[info.mid] = row_id
                if row_id is not None:
                    self._rows_in_client.add(row_id)
                acked = False
        if acked and row_id is not None:
            self._acknowledge(row_id, None)

    def _send_row(self, row_id: int, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=False)
        self._register(info, row_id)

    def _publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None = None
    ) -> mqtt.MQTTMessageInfo:
        # Every QoS>0 mid is registered, so a stray PUBACK can never be taken for an outbox row's.
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0:
            self._register(info, None)
        return info

    def publish_alarm(
        self,
        sensor_id: str,
        alarm_json: str | bytes,
        kind: str,
        event_id: str,
        *,
        seq: int | None = None,
        alarm_state: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Persist to the outbox (with the sensor's alarm state and the next seq, one transaction), then
        publish with QoS 1 if connected; returns the outbox row id. If the state dir cannot be written
        (disk full), the alarm is still published live, once, without the outbox's guarantee: returns
        None and counts `outbox_write_failed`."""
        topic = self.topics.for_sensor("alarms", sensor_id)
        payload = alarm_json.encode() if isinstance(alarm_json, str) else bytes(alarm_json)
        try:
            row_id = self.outbox.add(topic, payload, kind, event_id, seq=seq, alarm_state=(sensor_id, alarm_state))
        except StateWriteError as error:
            self.outbox_write_failed += 1
            if self._failure_log.allow("state_write") is not None:
                log.error("alarm %s not kept in the outbox (%s): published live only, not re-sent after an "
                          "outage; %d write failure(s) so far", event_id, error, self.outbox_write_failed)
            with self._send_lock:
                if self._connected.is_set():
                    self._publish(topic, payload, qos=1, retain=False)
            return None
        with self._send_lock:
            if self._connected.is_set():
                self._send_row(row_id, topic, payload)
        return row_id

    def set_state(self, sensor_id: str, state: str) -> None:
        """Retained sensor state; remembered and re-published after every reconnect."""
        self._set_retained(self.topics.for_sensor("state", sensor_id), wire.state_payload(state))

    def publish_discovery(self, sensor_id: str, prefix: str = "homeassistant") -> None:
        """Home Assistant discovery configs for one sensor (retained, re-published on reconnect)."""
        for topic, payload in wire.home_assistant_discovery(self.config.agent_id, sensor_id, self.topics, prefix):
            self._set_retained(topic, payload)

    def _set_retained(self, topic: str, payload: bytes) -> None:
        self._retained[topic] = payload
        if self._connected.is_set():
            self._publish(topic, payload, qos=1, retain=True)

    def publish_stats(self, stats: dict) -> None:
        topic = self.topics.for_agent("stats", self.config.agent_id)
        if self._connected.is_set():
            self._publish(topic, json.dumps(stats, separators=(",", ":"), sort_keys=True).encode(), 0, False)

    def publish_deadletter(self, sensor_id: str, source_topic: str, payload: bytes, error: wire.WireError) -> None:
        """Copy a rejected input to `mad/deadletter/<sensor>` (if enabled): v5 user properties, else a JSON envelope."""
        if not self.config.deadletter or not self._connected.is_set():
            return
        topic = self.topics.for_sensor("deadletter", sensor_id)
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("mad-reason", error.reason), ("mad-message", str(error)[:500]),
                                  ("mad-topic", source_topic)]
            self._publish(topic, bytes(payload), 0, False, props)
        else:
            self._publish(topic, wire.deadletter_envelope(sensor_id, source_topic, error.reason, payload, str(error)),
                          0, False)
