"""The agent's Prometheus metrics: one registry per agent, served on a configurable port (0 = off)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

# Inference per batch on CPU is 10 ms .. seconds; windows are 20 s, so anything above 20 s is a backlog.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class AgentMetrics:
    """Named instruments the other modules update; an own registry keeps tests and processes apart."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry()
        self._clock = clock
        r = self.registry
        self.windows = Counter("mad_windows_total", "Windows classified", ["sensor", "degraded"], registry=r)
        self.windows_unfamiliar = Counter("mad_windows_unfamiliar_total",
                                          "Windows the familiarity gate judged unlike the training data "
                                          "(never a defect vote)", ["sensor"], registry=r)
        self.inference_latency = Histogram("mad_inference_latency_seconds", "Model time per batch",
                                           buckets=LATENCY_BUCKETS_S, registry=r)
        self.queue_depth = Gauge("mad_queue_depth", "Items waiting in an internal queue", ["queue"], registry=r)
        self.intake_dropped = Counter("mad_intake_dropped_total", "Raw messages dropped because intake was full",
                                      registry=r)
        self.rejected = Counter("mad_rejected_payloads_total", "Inputs rejected by the wire contract",
                                ["sensor", "reason"], registry=r)
        self.alarms = Counter("mad_alarms_total", "Alarm events raised", ["sensor", "kind"], registry=r)
        self.outbox_depth = Gauge("mad_outbox_depth", "Alarms on disk awaiting broker PUBACK", registry=r)
        self.outbox_dropped = Counter("mad_outbox_dropped_total", "Alarms evicted by the outbox size bound",
                                      registry=r)
        self.state_write_failures = Gauge("mad_state_write_failures",
                                          "Writes to the state dir that failed since start (disk full, I/O "
                                          "error); those alarms went out live only", registry=r)
        self.state_store_resets = Gauge("mad_state_store_resets",
                                        "1 if the state file was unreadable at start and was moved aside", registry=r)
        self.sensor_commissioned = Gauge("mad_sensor_commissioned",
                                         "1 if the sensor has a commissioned background (mad-agent commission)",
                                         ["sensor"], registry=r)
        self.broker_connected = Gauge("mad_broker_connected", "1 while connected to the MQTT broker", registry=r)
        self.broker_disconnects = Counter("mad_broker_disconnects_total", "Lost broker connections", registry=r)
        self.sensor_staleness = Gauge("mad_sensor_staleness_seconds", "Seconds since a sensor's last accepted input",
                                      ["sensor"], registry=r)
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._connected = False
        self._server: WSGIServer | None = None

    def sensor_seen(self, sensor_id: str) -> None:
        """Record accepted input; staleness is computed at scrape time, so a silent sensor keeps ageing."""
        with self._lock:
            first = sensor_id not in self._last_seen
            self._last_seen[sensor_id] = self._clock()
        if first:
            self.sensor_staleness.labels(sensor_id).set_function(lambda: self._clock() - self._last_seen[sensor_id])

    def watch_depth(self, queue: str, depth: Callable[[], float]) -> None:
        """Read a queue's depth at scrape time (e.g. `watch_depth("intake", lambda: intake.depth)`)."""
        self.queue_depth.labels(queue).set_function(depth)

    def watch_outbox(self, depth: Callable[[], float]) -> None:
        self.outbox_depth.set_function(depth)

    def watch_state_dir(self, write_failures: Callable[[], float], resets: Callable[[], float]) -> None:
        self.state_write_failures.set_function(write_failures)
        self.state_store_resets.set_function(resets)

    def set_connected(self, connected: bool) -> None:
        """Hook for `MqttTransport(on_connection_change=...)`."""
        with self._lock:
            lost = self._connected and not connected
            self._connected = connected
        if lost:
            self.broker_disconnects.inc()
        self.broker_connected.set(1 if connected else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition, as /metrics serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int | None:
        """Start /metrics in a daemon thread; `port=0` means off. Returns the bound port."""
        if port == 0:
            return None
        if not 1 <= port <= 65535:
            raise ValueError(f"metrics port={port}: expected 0 (off) or 1..65535")
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
