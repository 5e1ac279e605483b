"""Counting and rate-limited logging of rejected inputs: bad payloads never stop the agent or flood its log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from agent.metrics import AgentMetrics
from agent.wire import WireError

log = logging.getLogger(__name__)
OTHER_SENSORS = "_other"  # label for sensors past `max_sensors`: a topic flood cannot grow memory or metrics


class Rejections:
    """Counts per (sensor, reason); logs each pair at most once per `log_interval_s` with the suppressed count."""

    def __init__(
        self,
        metrics: AgentMetrics | None = None,
        log_interval_s: float = 60.0,
        max_sensors: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if log_interval_s <= 0:
            raise ValueError(f"rejections log_interval_s={log_interval_s}: must be > 0")
        self.metrics = metrics
        self.log_interval_s = log_interval_s
        self.max_sensors = max_sensors
        self._clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        self._sensors: set[str] = set()
        self._last_logged: dict[tuple[str, str], float] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def reject(self, sensor_id: str | None, error: WireError) -> bool:
        """Count one rejection; returns True if it was logged (False: suppressed by the rate limit)."""
        with self._lock:
            sensor = self._label(sensor_id or OTHER_SENSORS)
            key = (sensor, error.reason)
            self.counts[key] += 1
            now = self._clock()
            last = self._last_logged.get(key)
            should_log = last is None or now - last >= self.log_interval_s
            if should_log:
                self._last_logged[key] = now
                suppressed = self._suppressed.pop(key, 0)
            else:
                self._suppressed[key] += 1
        if self.metrics is not None:
            self.metrics.rejected.labels(sensor, error.reason).inc()
        if should_log:
            log.warning("rejected input from sensor %s: %s%s", sensor, error,
                        f" ({suppressed} more like it suppressed)" if suppressed else "")
        return should_log

    def _label(self, sensor_id: str) -> str:
        if sensor_id in self._sensors:
            return sensor_id
        if len(self._sensors) < self.max_sensors:
            self._sensors.add(sensor_id)
            return sensor_id
        return OTHER_SENSORS
