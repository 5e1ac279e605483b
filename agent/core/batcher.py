"""Batch ready windows from all sensors into model calls (max batch, max wait) on a worker thread.

Intake never waits for the model: `add` only appends, and a full batch is handed to a bounded
queue with `put_nowait`; when the queue is full the batch is dropped and counted. Results come
back through `take_results()` so the alarm state machines stay on the core's own thread. In
`inline` mode the model runs inside `add`/`poll`/`flush`, which makes replay deterministic.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.core.clock import Clock, seconds_to_ns
from agent.core.pairing import ReadyWindow
from agent.inference import Classifier
from agent.settings import ModelSection


@dataclass(frozen=True, slots=True)
class BatchResult:
    windows: list[ReadyWindow]
    probabilities: np.ndarray | None  # (B, 5) float32, None when the call failed
    latency_s: float
    error: str | None = None


@dataclass
class BatcherCounters:
    inference_batches: int = 0
    inference_calls: int = 0  # one per modality sub-batch
    inference_windows: int = 0
    inference_failures: int = 0
    inference_dropped_windows: int = 0  # queue to the worker was full
    inference_seconds_total: float = 0.0
    inference_last_latency_s: float = 0.0


def run_batch(classifier: Classifier, windows: list[ReadyWindow]) -> np.ndarray:
    """One model call per modality set (with image / signal-only); rows back in input order."""
    probabilities = np.empty((len(windows), len(classifier.class_names)), np.float32)
    with_image = [i for i, w in enumerate(windows) if w.image is not None]
    without_image = [i for i, w in enumerate(windows) if w.image is None]
    for rows, use_image in ((with_image, True), (without_image, False)):
        if rows:
            signals = np.stack([windows[i].signal for i in rows])
            images = np.stack([windows[i].image for i in rows]) if use_image else None
            probabilities[rows] = classifier.predict(images, signals)
    return probabilities


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
        waited = self.clock.now_ns() - self._pending_since_ns
        if self._pending and waited >= seconds_to_ns(self.config.max_wait_s):
            self._submit()

    def flush(self) -> None:
        """Submit what is pending and wait until the worker has finished every batch."""
        if self._pending:
            self._submit()
        if self._work is not None:
            self._work.join()

    def take_results(self) -> list[BatchResult]:
        results = []
        while True:
            try:
                results.append(self._results.get_nowait())
            except queue.Empty:
                return results

    def pending_count(self) -> int:
        return len(self._pending)

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
        try:
            self._work.put_nowait(batch)
        except queue.Full:
            with self._lock:
                self.counters.inference_dropped_windows += len(batch)

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
            probabilities = run_batch(self.classifier, batch)
            error = None
        except Exception as exc:  # one failing batch must not kill the worker; the windows are counted lost
            probabilities, error = None, f"{type(exc).__name__}: {exc}"
        latency = self.timer() - started
        with self._lock:
            self.counters.inference_calls += int(any(w.image is None for w in batch)) + int(
                any(w.image is not None for w in batch)
            )
            self.counters.inference_windows += len(batch)
            self.counters.inference_failures += int(error is not None)
            self.counters.inference_seconds_total += latency
            self.counters.inference_last_latency_s = latency
        return BatchResult(batch, probabilities, latency, error)
