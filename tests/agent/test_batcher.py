"""Batcher: batches across sensors, max wait on the injected clock, slow model never blocks intake."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from agent.core.batcher import Batcher
from agent.core.clock import ManualClock
from agent.core.pairing import ReadyWindow
from agent.core.windowing import ClosedWindow
from agent.inference import FunctionClassifier
from agent.settings import ModelSection

UNIFORM = np.full(5, 0.2, np.float32)


def ready(sensor: str, k: int = 0, with_image: bool = False) -> ReadyWindow:
    window = ClosedWindow(sensor, k * 20_000_000_000, 7680.0, 60.0, np.zeros(153_600, np.float32), 0, 0)
    image = np.zeros((256, 256, 3), np.uint8) if with_image else None
    return ReadyWindow(window, np.full((20, 7680), k, np.float32), 0.0, image)


class Recorder:
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[bool, int]] = []
        self.gate, self.entered = gate, threading.Event()

    def __call__(self, images, signals):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.calls.append((images is not None, signals.shape[0]))
        return np.tile(signals[:, 0, :1] / 100 + UNIFORM, (1, 5))[:, :5]


def test_batches_across_sensors_up_to_max_batch():
    recorder = Recorder()
    batcher = Batcher(FunctionClassifier(recorder), ModelSection(batch_max=3, inference_mode="inline"), ManualClock())
    for sensor in ("a", "b", "c", "d"):
        batcher.add(ready(sensor))
    assert recorder.calls == [(False, 3)] and batcher.pending_count() == 1
    [result] = batcher.take_results()
    assert [w.window.sensor_id for w in result.windows] == ["a", "b", "c"]


def test_max_wait_respected_on_the_injected_clock():
    recorder = Recorder()
    clock = ManualClock()
    batcher = Batcher(
        FunctionClassifier(recorder), ModelSection(batch_max=8, max_wait_s=0.5, inference_mode="inline"), clock
    )
    batcher.add(ready("a"))
    clock.advance(0.4)
    batcher.poll()
    assert recorder.calls == []
    clock.advance(0.1)
    batcher.poll()
    assert recorder.calls == [(False, 1)]


def test_mixed_modalities_split_and_rows_keep_their_order():
    recorder = Recorder()
    batcher = Batcher(FunctionClassifier(recorder), ModelSection(batch_max=4, inference_mode="inline"), ManualClock())
    for k, with_image in enumerate([True, False, True, False]):
        batcher.add(ready("a", k, with_image))
    [result] = batcher.take_results()
    assert sorted(recorder.calls) == [(False, 2), (True, 2)]
    np.testing.assert_allclose(result.probabilities[:, 0], [0.2, 0.21, 0.22, 0.23], rtol=1e-5)


@contextmanager
def stalled_worker(queue_batches: int):
    """A threaded batcher (batch_max 1) whose worker is stuck in the model on window a0 until `gate` is set."""
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = Batcher(FunctionClassifier(recorder),
                      ModelSection(batch_max=1, queue_batches=queue_batches, inference_mode="thread"), ManualClock())
    try:
        batcher.add(ready("a", 0))  # taken by the worker, which then blocks in the model
        assert recorder.entered.wait(timeout=30)
        yield batcher, gate
    finally:
        gate.set()
        batcher.close()


def test_slow_classifier_does_not_block_intake_and_a_burst_waits_in_the_backlog():
    with stalled_worker(queue_batches=1) as (batcher, gate):
        batcher.add(ready("a", 1))  # waits in the queue (size 1)
        batcher.add(ready("a", 2))  # queue full: waits in the backlog, add still returns
        assert batcher.counters.inference_dropped_windows == 0
        assert batcher.counters.inference_backlogged_batches == 1 and batcher.pending_count() == 1
        assert batcher.take_results() == []
        gate.set()
        batcher.flush()
        results = batcher.take_results()
        assert [r.windows[0].window.window_start_ns for r in results] == [0, 20_000_000_000, 40_000_000_000]
        assert batcher.pending_count() == 0


def test_backlog_over_its_limit_drops_the_busiest_sensors_oldest_window():
    with stalled_worker(queue_batches=2) as (batcher, gate):
        assert batcher.backlog_limit == 2
        for window in (ready("a", 1), ready("a", 2), ready("a", 3), ready("b", 0)):
            batcher.add(window)  # a1, a2 fill the queue; a3, b0 wait in the backlog
        assert batcher.counters.inference_dropped_windows == 0
        batcher.add(ready("a", 4))  # 3 waiting > 2: sensor a has 2 of them, its oldest (a3) goes
        assert batcher.counters.inference_dropped_windows == 1
        gate.set()
        batcher.flush()
        done = [(w.window.sensor_id, w.window.window_start_ns // 20_000_000_000)
                for r in batcher.take_results() for w in r.windows]
        assert done == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("a", 4)]  # b kept, a in order


def test_poll_hands_the_backlog_on_once_the_worker_has_room():
    with stalled_worker(queue_batches=1) as (batcher, gate):
        batcher.add(ready("a", 1))
        batcher.add(ready("a", 2))
        assert batcher.pending_count() == 1
        gate.set()
        batcher._work.join()  # the worker has emptied the queue: room for the backlog
        batcher.poll()
        assert batcher.pending_count() == 0
        batcher.flush()
        assert len(batcher.take_results()) == 3


def test_failing_classifier_is_counted_not_raised():
    def broken(images, signals):
        raise RuntimeError("CUDA out of memory")

    batcher = Batcher(FunctionClassifier(broken), ModelSection(batch_max=1, inference_mode="inline"), ManualClock())
    batcher.add(ready("a"))
    [result] = batcher.take_results()
    assert result.probabilities is None and "out of memory" in result.error
    assert batcher.counters.inference_failures == 1
