"""Pipeline: windows flow end to end into results and alarm events; bad input never raises."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.core.clock import ManualClock
from agent.core.events import AlarmEvent
from agent.core.pipeline import Pipeline
from agent.core.types import PrpdFrame, SampleChunk
from agent.core.windowing import WINDOW_NS
from agent.inference import FunctionClassifier, TorchClassifier
from agent.settings import AgentSettings
from mad.constants import SAMPLE_RATE_HZ

START = 88_000 * WINDOW_NS
SECOND = 1_000_000_000


def settings(**sections) -> AgentSettings:
    base = dict(
        model=dict(batch_max=4, max_wait_s=0.0, inference_mode="inline"),
        windowing=dict(reorder_tolerance_s=1.0),
        pairing=dict(grace_s=0.0, missing_policy="signal_only"),
        alarms=dict(window_k=2, window_n=3, clear_after=2),
    )
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return AgentSettings.model_validate(base)


def void_when_loud(images, signals):
    """Deterministic double: Void when the window's mean is high, Normal otherwise."""
    loud = signals.mean(axis=(1, 2)) > 50
    out = np.full((signals.shape[0], 5), 0.01, np.float32)
    out[loud, 4] = 0.96
    out[~loud, 0] = 0.96
    return out


def feed(pipeline: Pipeline, clock: ManualClock, levels: list[int], sensor: str = "s1", rate: int = 64) -> None:
    """One chunk per second per window at `rate` Hz, the clock following event time."""
    for k, level in enumerate(levels):
        for second in range(20):
            t0 = START + k * WINDOW_NS + second * SECOND
            clock.set_ns(t0)
            pipeline.on_chunk(
                SampleChunk(sensor, k * 20 + second, t0, float(rate), 60.0, np.full(rate, level, np.int16))
            )
            pipeline.tick()


def test_windows_flow_to_results_and_events():
    clock, events, results, states = ManualClock(), [], [], []
    pipeline = Pipeline(
        settings(),
        FunctionClassifier(void_when_loud, name="double", version="1"),
        clock,
        events.append,
        on_result=results.append,
        on_state=states.append,
    )
    feed(pipeline, clock, [100, 100, 100, 0, 0, 0])
    pipeline.flush()
    assert [r.class_name for r in results] == ["Void"] * 3 + ["Normal"] * 3
    assert all(r.degraded and r.degraded_reason == "prpd_missing:signal_only" for r in results)
    assert [(e.kind, e.class_name, e.seq) for e in events] == [("new", "Void", 0), ("end", "Void", 1)]
    assert events[0].window_start_ns == START + WINDOW_NS and events[0].model_name == "double"
    assert AlarmEvent.from_json(events[0].to_json()) == events[0]
    assert [s.state for s in states] == ["ok", "uncertain", "alarm", "ok"]  # one Void window before k of n: suspect
    counters = pipeline.counters()
    assert counters["windows_classified"] == 6 and counters["events_emitted"] == 2
    assert counters["inference_windows"] == 6


def test_resampled_sensor_and_paired_frame():
    clock, results = ManualClock(), []
    seen = []

    def spy(images, signals):
        seen.append((images is not None, signals.shape))
        return void_when_loud(images, signals)

    pipeline = Pipeline(
        settings(pairing=dict(grace_s=30.0)), FunctionClassifier(spy), clock, lambda e: None, on_result=results.append
    )
    pipeline.on_frame(PrpdFrame("s1", START, np.zeros((256, 256, 3), np.uint8)))
    feed(pipeline, clock, [100], rate=64)
    pipeline.flush()
    assert seen == [(True, (1, 20, SAMPLE_RATE_HZ))]
    assert results[0].degraded is False


def test_bad_input_is_counted_never_raised():
    clock = ManualClock()
    pipeline = Pipeline(
        settings(limits=dict(unknown_sensor="reject", sensors={"s1": {"sample_rate_hz": 64}})),
        FunctionClassifier(void_when_loud),
        clock,
        lambda e: None,
    )
    pipeline.on_chunk(SampleChunk("intruder", 0, START, 64.0, 60.0, np.zeros(64, np.int16)))
    pipeline.on_chunk(SampleChunk("s1", 1, START, 128.0, 60.0, np.zeros(64, np.int16)))
    pipeline.on_chunk(SampleChunk("s1", 2, START, 64.0, 60.0, np.full(64, np.nan)))
    pipeline.on_chunk(SampleChunk("s1", 3, -5, 64.0, 60.0, np.zeros(64, np.int16)))
    pipeline.on_frame(PrpdFrame("s1", START, np.zeros((10, 10), np.uint8)))
    counters = pipeline.counters()
    assert counters["chunks_rejected"] == 4 and counters["frames_rejected"] == 1
    assert {k: v for k, v in counters.items() if k.startswith("reject_reason_")} == {
        "reject_reason_unknown_sensor": 1,
        "reject_reason_rate_mismatch": 1,
        "reject_reason_bad_samples": 1,
        "reject_reason_bad_time": 1,
        "reject_reason_bad_image": 1,
    }


def test_rate_change_starts_a_new_stream_and_flapping_is_refused_for_that_sensor_only():
    clock = ManualClock()
    pipeline = Pipeline(settings(), FunctionClassifier(void_when_loud), clock, lambda e: None)
    pipeline.on_chunk(SampleChunk("s1", 0, START, 64.0, 60.0, np.zeros(64, np.int16)))
    pipeline.on_chunk(SampleChunk("s1", 1, START + SECOND, 128.0, 60.0, np.zeros(128, np.int16)))  # new stream
    pipeline.on_chunk(SampleChunk("s1", 2, START + 2 * SECOND, 64.0, 60.0, np.zeros(64, np.int16)))  # flapping
    pipeline.on_chunk(SampleChunk("s2", 0, START, 128.0, 60.0, np.zeros(128, np.int16)))
    counters = pipeline.counters()
    assert counters["streams_changed"] == 1 and counters["reject_reason_stream_change_limit"] == 1
    assert counters["chunks_rejected"] == 1


def test_stale_and_offline_from_the_clock():
    clock, states = ManualClock(), []
    pipeline = Pipeline(
        settings(alarms=dict(stale_after_s=60, offline_after_s=300)),
        FunctionClassifier(void_when_loud),
        clock,
        lambda e: None,
        on_state=states.append,
    )
    pipeline.on_chunk(SampleChunk("s1", 0, START, 64.0, 60.0, np.zeros(64, np.int16)))
    clock.advance(59)
    pipeline.tick()
    clock.advance(1)
    pipeline.tick()
    clock.advance(240)
    pipeline.tick()
    pipeline.on_chunk(SampleChunk("s1", 1, START + SECOND, 64.0, 60.0, np.zeros(64, np.int16)))
    assert [s.state for s in states] == ["ok", "stale", "offline", "ok"]


def test_slow_model_does_not_block_on_chunk():
    gate, entered = threading.Event(), threading.Event()

    def blocking(images, signals):
        entered.set()
        gate.wait(timeout=30)
        return void_when_loud(images, signals)

    clock, results = ManualClock(), []
    pipeline = Pipeline(
        settings(model=dict(batch_max=1, inference_mode="thread")),
        FunctionClassifier(blocking),
        clock,
        lambda e: None,
        on_result=results.append,
    )
    try:
        feed(pipeline, clock, [100, 100])  # the first window goes to the worker, which blocks
        assert entered.wait(timeout=30)
        pipeline.on_chunk(SampleChunk("s1", 999, START + 3 * WINDOW_NS, 64.0, 60.0, np.zeros(64, np.int16)))
        assert results == []  # on_chunk returned while the model is still blocked
        gate.set()
        pipeline.flush()
        assert len(results) == 2 and pipeline.counters()["windows_dropped"] == 1  # last window: 1 s of 20
    finally:
        gate.set()
        pipeline.close()


@pytest.mark.slow
def test_real_tiny_model_end_to_end():
    import mad

    classifier = TorchClassifier(mad.build_model("mad_tiny", seed=0), name="mad_tiny", version="seed0")
    clock, results = ManualClock(), []
    pipeline = Pipeline(
        settings(pairing=dict(missing_policy="render")), classifier, clock, lambda e: None, on_result=results.append
    )
    feed(pipeline, clock, [100, 3], rate=64)
    pipeline.flush()
    assert len(results) == 2
    for result in results:
        assert result.degraded_reason == "prpd_missing:rendered"
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
