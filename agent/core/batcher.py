"""Batch ready windows from all sensors into model calls (max batch, max wait) on a worker thread.

Intake never waits for the model: `add` only appends, and a full batch is handed to a bounded
queue with `put_nowait`. When the queue is full the batch waits in a backlog that `add`/`poll`
hand on as the worker frees room, so a burst (every sensor's window closes in the same second)
loses nothing. Only past `backlog_limit` windows is one dropped and counted: a window of the sensor
with the most windows waiting, its oldest first, so under sustained overload every sensor keeps
its newest windows and no sensor goes dark. Per-sensor order is kept throughout. Results come
back through `take_results()` so the alarm state machines stay on the core's own thread. In
`inline` mode the model runs inside `add`/`poll`/`flush`, which makes replay deterministic.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.core.clock import Clock, seconds_to_ns
from agent.core.pairing import ReadyWindow
from agent.inference import Classifier, scores_of
from agent.settings import ModelSection


@dataclass(frozen=True, slots=True)
class BatchResult:
    windows: list[ReadyWindow]
    probabilities: np.ndarray | None  # (B, 5) float32, None when the call failed
    latency_s: float
    error: str | None = None
    familiarity: np.ndarray | None = None  # (B,) float32; None when the model has no familiarity gate


@dataclass
class BatcherCounters:
    inference_batches: int = 0
    inference_calls: int = 0  # one per modality sub-batch
    inference_windows: int = 0
    inference_failures: int = 0
    inference_dropped_windows: int = 0  # queue and backlog to the worker were full
    inference_backlogged_batches: int = 0  # batches that waited for room in the worker's queue
    inference_seconds_total: float = 0.0
    inference_last_latency_s: float = 0.0


def run_batch(classifier: Classifier, windows: list[ReadyWindow]) -> tuple[np.ndarray, np.ndarray | None]:
    """One model call per modality set (with image / signal-only); rows back in input order.

    -> (probabilities (B, 5), familiarity (B,) or None when the model gives none). A sub-batch without
    familiarity from a model that gave it for the other leaves NaN there, which the gate reads as unfamiliar."""
    probabilities = np.empty((len(windows), len(classifier.class_names)), np.float32)
    familiarity: np.ndarray | None = None
    with_image = [i for i, w in enumerate(windows) if w.image is not None]
    without_image = [i for i, w in enumerate(windows) if w.image is None]
    for rows, use_image in ((with_image, True), (without_image, False)):
        if rows:
            signals = np.stack([windows[i].signal for i in rows])
            images = np.stack([windows[i].image for i in rows]) if use_image else None
            scores = scores_of(classifier, images, signals)
            probabilities[rows] = scores.probabilities
            if scores.familiarity is not None:
                if familiarity is None:
                    familiarity = np.full(len(windows), np.nan, np.float32)
                familiarity[rows] = scores.familiarity
    return probabilities, familiarity


class Batcher:
    def __init__(
        self,
        classifier: Classifier,
        config: ModelSection,
        clock: Clock,
        *,
        timer: Callable[[], float] = time.perf_counter,  # latency figures only; decisions use `clock`
    ) -> None:
        self.classifier, self.config, self.clock, self.timer = classifier, config, clock, timer
        self.counters = BatcherCounters()
        self._pending: list[ReadyWindow] = []
        self._pending_since_ns = 0
        self._results: queue.SimpleQueue[BatchResult] = queue.SimpleQueue()
        self._lock = threading.Lock()  # counters are written by the worker too
        self._work: queue.Queue[list[ReadyWindow] | None] | None = None
        self._backlog: list[list[ReadyWindow]] = []  # batches waiting for room in `_work` (caller's thread only)
        # As many windows as the queue itself holds: the memory bound at most doubles.
        self.backlog_limit = config.batch_max * config.queue_batches
        self._worker: threading.Thread | None = None
        if config.inference_mode == "thread":
            self._work = queue.Queue(maxsize=config.queue_batches)
            self._worker = threading.Thread(target=self._work_loop, name="mad-inference", daemon=True)
            self._worker.start()

    def add(self, window: ReadyWindow) -> None:
        if not self._pending:
            self._pending_since_ns = self.clock.now_ns()
        self._pending.append(window)
        if len(self._pending) >= self.config.batch_max:
            self._submit()

    def poll(self) -> None:
        """Submit a partial batch whose oldest window has waited `max_wait_s` on the clock."""
        self._drain_backlog()
        waited = self.clock.now_ns() - self._pending_since_ns
        if self._pending and waited >= seconds_to_ns(self.config.max_wait_s):
            self._submit()

    def flush(self) -> None:
        """Submit what is pending and wait until the worker has finished every batch."""
        if self._pending:
            self._submit()
        if self._work is not None:
            while self._backlog:  # flushing may wait: hand the backlog on in order
                self._work.put(self._backlog.pop(0))
            self._work.join()

    def take_results(self) -> list[BatchResult]:
        results = []
        while True:
            try:
                results.append(self._results.get_nowait())
            except queue.Empty:
                return results

    def pending_count(self) -> int:
        """Windows not yet handed to the model: the open batch plus the backlog."""
        return len(self._pending) + sum(len(batch) for batch in self._backlog)

    def close(self) -> None:
        if self._work is not None and self._worker is not None:
            self._work.put(None)
            self._worker.join()
            self._work, self._worker = None, None

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        with self._lock:
            self.counters.inference_batches += 1
        if self._work is None:
            self._results.put(self._infer(batch))
            return
        self._backlog.append(batch)  # behind any older batch still waiting: per-sensor order holds
        self._drain_backlog()
        if self._backlog:
            with self._lock:
                self.counters.inference_backlogged_batches += 1
            self._enforce_backlog_limit()

    def _drain_backlog(self) -> None:
        while self._backlog and self._work is not None:
            try:
                self._work.put_nowait(self._backlog[0])
            except queue.Full:
                return
            self._backlog.pop(0)

    def _enforce_backlog_limit(self) -> None:
        waiting = sum(len(batch) for batch in self._backlog)
        dropped = 0
        while waiting > self.backlog_limit:
            per_sensor = Counter(w.window.sensor_id for batch in self._backlog for w in batch)
            victim = max(per_sensor, key=per_sensor.__getitem__)  # ties: the sensor seen first in the backlog
            for batch in self._backlog:
                index = next((i for i, w in enumerate(batch) if w.window.sensor_id == victim), None)
                if index is not None:
                    del batch[index]  # the victim's oldest waiting window
                    break
            self._backlog = [batch for batch in self._backlog if batch]
            waiting -= 1
            dropped += 1
        if dropped:
            with self._lock:
                self.counters.inference_dropped_windows += dropped

    def _work_loop(self) -> None:
        assert self._work is not None
        while True:
            batch = self._work.get()
            try:
                if batch is None:
                    return
                self._results.put(self._infer(batch))
            finally:
                self._work.task_done()

    def _infer(self, batch: list[ReadyWindow]) -> BatchResult:
        started = self.timer()
        try:
            probabilities, familiarity = run_batch(self.classifier, batch)
            error = None
        except Exception as exc:  # one failing batch must not kill the worker; the windows are counted lost
            probabilities, familiarity, error = None, None, f"{type(exc).__name__}: {exc}"
        latency = self.timer() - started
        with self._lock:
            self.counters.inference_calls += int(any(w.image is None for w in batch)) + int(
                any(w.image is not None for w in batch)
            )
            self.counters.inference_windows += len(batch)
            self.counters.inference_failures += int(error is not None)
            self.counters.inference_seconds_total += latency
            self.counters.inference_last_latency_s = latency
        return BatchResult(batch, probabilities, latency, error, familiarity)
