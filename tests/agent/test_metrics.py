"""Metrics exposition and the rejection counter that feeds it."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest

from agent.metrics import AgentMetrics
from agent.rejections import OTHER_SENSORS, Rejections
from agent.wire import WireError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _value(metrics: AgentMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_instruments_are_exposed_with_labels() -> None:
    metrics = AgentMetrics()
    metrics.windows.labels("s1", "false").inc(3)
    metrics.inference_latency.observe(0.02)
    metrics.queue_depth.labels("intake").set(7)
    metrics.outbox_depth.set(2)
    text = metrics.render().decode()
    assert 'mad_windows_total{degraded="false",sensor="s1"} 3.0' in text
    assert _value(metrics, "mad_inference_latency_seconds_bucket", {"le": "0.025"}) == 1
    assert _value(metrics, "mad_inference_latency_seconds_bucket", {"le": "0.01"}) == 0
    assert _value(metrics, "mad_queue_depth", {"queue": "intake"}) == 7
    assert _value(metrics, "mad_outbox_depth") == 2
    assert AgentMetrics().render() != text.encode()  # registries are independent


def test_watched_depths_are_read_at_scrape_time() -> None:
    metrics = AgentMetrics()
    items = [1, 2]
    metrics.watch_depth("intake", lambda: len(items))
    metrics.watch_outbox(lambda: len(items) * 10)
    items.append(3)
    assert _value(metrics, "mad_queue_depth", {"queue": "intake"}) == 3
    assert _value(metrics, "mad_outbox_depth") == 30


def test_staleness_keeps_growing_for_a_silent_sensor() -> None:
    clock = FakeClock()
    metrics = AgentMetrics(clock=clock)
    metrics.sensor_seen("s1")
    clock.now += 12.5
    assert _value(metrics, "mad_sensor_staleness_seconds", {"sensor": "s1"}) == 12.5
    metrics.sensor_seen("s1")
    assert _value(metrics, "mad_sensor_staleness_seconds", {"sensor": "s1"}) == 0


def test_broker_state_counts_only_real_disconnects() -> None:
    metrics = AgentMetrics()
    for state in (False, True, True, False, False, True):
        metrics.set_connected(state)
    assert _value(metrics, "mad_broker_connected") == 1
    assert _value(metrics, "mad_broker_disconnects_total") == 1


def test_http_endpoint_serves_and_zero_means_off() -> None:
    metrics = AgentMetrics()
    assert metrics.serve(0) is None
    with pytest.raises(ValueError, match="metrics port"):
        metrics.serve(70_000)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.outbox_dropped.inc()
    try:
        assert metrics.serve(port) == port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "mad_outbox_dropped_total 1.0" in body
    finally:
        metrics.close()


def test_rejections_are_counted_and_logged_at_a_bounded_rate(caplog) -> None:
    clock = FakeClock()
    metrics = AgentMetrics()
    rejections = Rejections(metrics, log_interval_s=60, clock=clock)
    error = WireError("bad_magic", "magic", b"XXXX", "expected MADP")
    with caplog.at_level(logging.WARNING, logger="agent.rejections"):
        logged = [rejections.reject("s1", error) for _ in range(100)]
        clock.now += 61
        logged.append(rejections.reject("s1", error))
        rejections.reject("s2", error)
    assert logged.count(True) == 2
    assert len(caplog.records) == 3
    assert "99 more like it suppressed" in caplog.records[1].getMessage()
    assert _value(metrics, "mad_rejected_payloads_total", {"sensor": "s1", "reason": "bad_magic"}) == 101
    assert rejections.counts[("s2", "bad_magic")] == 1


def test_rejection_labels_are_bounded_against_topic_floods() -> None:
    rejections = Rejections(max_sensors=2)
    error = WireError("unknown_topic", "topic", "x", "m")
    for i in range(50):
        rejections.reject(f"flood{i}", error)
    assert {sensor for sensor, _ in rejections.counts} == {"flood0", "flood1", OTHER_SENSORS}
    assert rejections.counts[(OTHER_SENSORS, "unknown_topic")] == 48
