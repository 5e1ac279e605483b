"""Reconnect back-off that backs off, with jitter on every step, and a log line per failure cause (issue 15.3).

Against a real Mosquitto: a wrong password and TLS failures (unknown CA, hostname mismatch, expired
certificate). Attempt times are what the transport records when paho reports each failure; the tests wait
for a number of failures with a deadline, never sleep.
"""

from __future__ import annotations

import errno
import itertools
import logging
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.intake import Intake
from agent.outbox import Outbox
from agent.transport import (
    MqttTransport,
    ReconnectBackoff,
    TransportConfig,
    classify_connack,
    classify_connect_error,
)

MIN_S, MAX_S = 0.05, 0.4
TIMER_SLACK_S = 0.002  # monotonic-clock granularity between paho's wait and our timestamps


# ------------------------------------------------------------------ the schedule (no broker)


def test_backoff_doubles_to_the_ceiling_with_jitter_on_every_step_and_resets_only_on_reset():
    draws: list[tuple[float, float]] = []

    def uniform(lo: float, hi: float) -> float:
        draws.append((lo, hi))
        return hi

    backoff = ReconnectBackoff(MIN_S, MAX_S, uniform)
    assert [backoff.next_delay() for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert draws == [(s / 2, s) for s in (0.05, 0.1, 0.2, 0.4, 0.4, 0.4)]  # every step is jittered, the cap too
    assert backoff.attempt == 6
    backoff.reset()
    assert backoff.next_delay() == 0.05
    real = ReconnectBackoff(MIN_S, MAX_S)
    waits = [real.next_delay() for _ in range(200)]
    assert all(MAX_S / 2 <= w <= MAX_S for w in waits[3:]) and len(set(waits[3:])) > 150
    with pytest.raises(ValueError):
        ReconnectBackoff(1.0, 0.5)


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    error.verify_code, error.verify_message = code, message
    return error


@pytest.mark.parametrize(("error", "cause"), [
    (_verify_error(20, "unable to get local issuer certificate"), "tls_unknown_ca"),
    (_verify_error(19, "self-signed certificate in certificate chain"), "tls_unknown_ca"),
    (_verify_error(62, "Hostname mismatch, certificate is not valid for 'broker'."), "tls_hostname_mismatch"),
    (_verify_error(64, "IP address mismatch"), "tls_hostname_mismatch"),
    (_verify_error(10, "certificate has expired"), "tls_certificate_expired"),
    (_verify_error(9, "certificate is not yet valid"), "tls_certificate_not_yet_valid"),
    (_verify_error(26, "unsuitable certificate purpose"), "tls_verify_failed"),
    (ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert"), "tls_error"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection_refused"),
    (TimeoutError("timed out"), "timeout"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
    (OSError(errno.EPIPE, "Broken pipe"), "network_error"),
    (None, "connect_failed"),
])
def test_connect_errors_are_classified(error, cause):
    got, detail = classify_connect_error(error)
    assert got == cause and detail


@pytest.mark.parametrize(("code", "cause"), [
    ("Bad user name or password", "refused_auth"),
    ("Not authorized", "refused_auth"),
    ("Client identifier not valid", "refused_client_id"),
    ("Server unavailable", "refused_unavailable"),
])
def test_refused_connacks_are_classified(code, cause):
    assert classify_connack(ReasonCode(PacketTypes.CONNACK, code)) == (cause, code)


# ------------------------------------------------------------------ against Mosquitto

def _transport(tmp_path: Path, port: int, host: str = "127.0.0.1", **kwargs) -> MqttTransport:
    config = TransportConfig(agent_id="edge1", host=host, port=port, reconnect_min_s=MIN_S, reconnect_max_s=MAX_S,
                             **kwargs)
    return MqttTransport(config, Intake(), Outbox(tmp_path / "outbox.db"))


def _failing(transport: MqttTransport, until, attempts: int) -> None:
    transport.start()
    try:
        until(lambda: transport.connect_failures >= attempts, timeout_s=8.0, what=f"{attempts} failed attempts")
    finally:
        transport.stop(timeout_s=0.2)
    assert not transport.connects


def _assert_backs_off(transport: MqttTransport, cause: str) -> None:
    """The drawn waits follow the schedule, and paho really waited them between the attempts."""
    failures, delays = list(transport.failures), list(transport.delays)
    assert {f.cause for f in failures} == {cause}, [(f.cause, f.detail) for f in failures]
    steps = [min(MAX_S, MIN_S * 2**k) for k in range(len(delays))]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step
    capped = delays[3:]
    assert len(capped) >= 4 and len({round(d, 9) for d in capped}) == len(capped)  # jitter at the ceiling too
    intervals = [b.at - a.at for a, b in itertools.pairwise(failures)]
    for interval, delay in zip(intervals, delays, strict=False):
        assert interval >= delay - TIMER_SLACK_S, (intervals, delays)
    # Grown: each of the last attempts came at least MAX_S / 2 after the one before (the bug: always MIN_S).
    assert min(intervals[3:]) >= MAX_S / 2 - TIMER_SLACK_S
    # ... and not much later than planned (loaded 2-core CI box: generous, but far below the next step).
    assert sorted(i - d for i, d in zip(intervals, delays, strict=False))[len(intervals) // 2] < 0.1


def _connect_failure_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "agent.transport" and "cannot connect" in r.getMessage()]


@pytest.mark.mqtt
def test_wrong_password_backs_off_to_the_ceiling_and_logs_the_cause_once(password_broker, tmp_path, until, caplog):
    broker = password_broker
    transport = _transport(tmp_path, broker.port, username="edge", password="wrong")
    with caplog.at_level(logging.WARNING, logger="agent.transport"):
        _failing(transport, until, attempts=9)
    _assert_backs_off(transport, "refused_auth")
    lines = _connect_failure_lines(caplog)
    assert len(lines) == 1 and "refused_auth" in lines[0], lines  # 9+ failures, one line: same cause
    assert "wrong" not in caplog.text


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run([shutil.which("openssl"), *args], check=True, capture_output=True, cwd=directory, timeout=30)


def _pki(directory: Path) -> dict[str, Path]:
    """CA `ca`, a server cert for 127.0.0.1 from it (valid and expired), and an unrelated CA `other-ca`."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make test certificates")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl(directory, "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1",
                 "-subj", f"/CN=mad-test-{ca}")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(directory, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=mad-test-server")
    _openssl(directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    # `openssl ca` is the CLI that takes explicit validity dates (OpenSSL 3.0's x509 cannot backdate).
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\n"
        "default_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n")
    _openssl(directory, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in",
             "server.csr", "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
             "-extfile", "san.ext", "-notext")
    return {p.stem: p for p in directory.glob("*.pem")} | {"server.key": directory / "server.key"}


@pytest.mark.mqtt
def test_tls_with_an_unknown_ca_backs_off_and_logs_the_cause_once(broker_factory, tmp_path, until, caplog):
    pki = _pki(tmp_path)
    broker = broker_factory(tls={"certfile": str(pki["server"]), "keyfile": str(pki["server.key"])})
    transport = _transport(tmp_path, broker.port, tls_ca_file=pki["other-ca"])  # trusts another CA
    with caplog.at_level(logging.WARNING, logger="agent.transport"):
        _failing(transport, until, attempts=9)
    _assert_backs_off(transport, "tls_unknown_ca")
    lines = _connect_failure_lines(caplog)
    assert len(lines) == 1 and "tls_unknown_ca" in lines[0], lines


@pytest.mark.mqtt
@pytest.mark.parametrize(("server_cert", "host", "cause"), [
    ("server", "localhost", "tls_hostname_mismatch"),  # the certificate names IP 127.0.0.1 only
    ("expired", "127.0.0.1", "tls_certificate_expired"),
])
def test_tls_failures_name_their_cause(broker_factory, tmp_path, until, caplog, server_cert, host, cause):
    pki = _pki(tmp_path)
    broker = broker_factory(tls={"certfile": str(pki[server_cert]), "keyfile": str(pki["server.key"])})
    transport = _transport(tmp_path, broker.port, host=host, tls_ca_file=pki["ca"])
    with caplog.at_level(logging.WARNING, logger="agent.transport"):
        _failing(transport, until, attempts=3)
    assert {f.cause for f in transport.failures} == {cause}, [(f.cause, f.detail) for f in transport.failures]
    lines = _connect_failure_lines(caplog)
    assert len(lines) == 1 and cause in lines[0], lines


@pytest.mark.mqtt
def test_back_off_state_lasts_until_a_connack_then_starts_over(broker_factory, tmp_path, until, caplog):
    broker = broker_factory()
    broker.stop()  # nothing listens on the port yet: connection refused
    transport = _transport(tmp_path, broker.port)
    with caplog.at_level(logging.INFO, logger="agent.transport"):
        transport.start()
        try:
            until(lambda: transport.connect_failures >= 5, timeout_s=8.0, what="5 refused attempts")
            assert transport.backoff.attempt >= 5  # not reset by the failures in between
            broker.start()
            assert transport.wait_subscribed(5)
            assert transport.backoff.attempt == 0  # the CONNACK starts the schedule over
            delays_before = len(transport.delays)
            broker.restart()  # a dropped connection: the first wait is the first step again
            until(lambda: transport.connects >= 2, timeout_s=8.0, what="reconnect after a broker restart")
        finally:
            transport.stop(timeout_s=0.5)
    assert {f.cause for f in list(transport.failures)[:5]} == {"connection_refused"}
    assert MIN_S / 2 <= transport.delays[delays_before] <= MIN_S
    lines = _connect_failure_lines(caplog)
    assert sum("connection_refused" in line for line in lines) == 1, lines
    assert any("failed attempt(s)" in r.getMessage() for r in caplog.records if "connected to" in r.getMessage())
