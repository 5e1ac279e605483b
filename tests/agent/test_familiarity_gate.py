"""The familiarity gate in the agent: an `unfamiliar` window never votes for a defect, puts the sensor in
`uncertain` (never ok), is counted, carried in the window results, and shown by replay."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.alarms import SensorAlarm, judge
from agent.core.clock import ManualClock
from agent.core.pipeline import Pipeline
from agent.core.types import SampleChunk
from agent.core.windowing import WINDOW_NS
from agent.inference import ClassifierError, FunctionClassifier, Scores, scores_of
from agent.metrics import AgentMetrics
from agent.settings import AgentSettings, AlarmsSection
from agent.timeline import plot_timeline
from mad.constants import CLASS_NAMES

CONFIG = AlarmsSection(window_k=3, window_n=5, raise_probability=0.7, uncertain_below=0.5, clear_after=2)
START = 88_000 * WINDOW_NS
SECOND = 1_000_000_000
THRESHOLD = -2.0


def probs(name: str, p: float) -> np.ndarray:
    out = np.full(len(CLASS_NAMES), (1 - p) / (len(CLASS_NAMES) - 1), np.float32)
    out[CLASS_NAMES.index(name)] = p
    return out


# ---- the state machine


def test_unfamiliar_verdict_comes_first_and_keeps_the_top_class():
    verdict = judge(probs("Void", 0.99), 3.0, CONFIG, familiar=False)
    assert (verdict.outcome, verdict.class_name, verdict.probability) == ("unfamiliar", "Void", pytest.approx(0.99))
    assert judge(probs("Void", 0.99), 3.0, CONFIG).outcome == "defect"  # familiar by default: as before


def test_unfamiliar_defect_windows_never_raise_and_the_sensor_is_uncertain():
    alarm = SensorAlarm(CONFIG)
    for _ in range(10):
        decision = alarm.observe(probs("Void", 0.99), familiar=False)
        assert decision.kind is None and alarm.state == "uncertain"
    assert alarm.active_class is None
    # Familiar Void windows after them start the count from zero: no unfamiliar window voted.
    kinds = [alarm.observe(probs("Void", 0.99)).kind for _ in range(3)]
    assert kinds == [None, None, "new"]


def test_unfamiliar_windows_neither_clear_nor_reset_a_raised_alarm():
    alarm = SensorAlarm(CONFIG)
    for _ in range(3):
        alarm.observe(probs("Void", 0.95))
    assert alarm.state == "alarm"
    assert alarm.observe(probs("Normal", 0.95)).kind is None  # clean 1 of 2
    assert alarm.observe(probs("Normal", 0.95), familiar=False).kind is None  # says nothing: no reset, no count
    assert alarm.state == "alarm"
    assert alarm.observe(probs("Normal", 0.95)).kind == "end"  # clean 2 of 2
    assert alarm.observe(probs("Normal", 0.95), familiar=False).kind is None and alarm.state == "uncertain"


# ---- the pipeline with a classifier double


def settings() -> AgentSettings:
    return AgentSettings.model_validate(dict(
        model=dict(batch_max=4, max_wait_s=0.0, inference_mode="inline"),
        windowing=dict(reorder_tolerance_s=1.0),
        pairing=dict(grace_s=0.0, missing_policy="signal_only"),
        alarms=dict(window_k=2, window_n=3, clear_after=2),
    ))


def always_void(images, signals):
    return np.tile(probs("Void", 0.97), (signals.shape[0], 1))


def familiarity_from_level(images, signals):
    """Quiet windows (mean < 50) are familiar (0.0), loud ones far below the threshold (-10)."""
    return np.where(signals.mean(axis=(1, 2)) < 50, 0.0, -10.0).astype(np.float32)


def feed(pipeline: Pipeline, clock: ManualClock, levels: list[int], sensor: str = "s1", rate: int = 64) -> None:
    for k, level in enumerate(levels):
        for second in range(20):
            t0 = START + k * WINDOW_NS + second * SECOND
            clock.set_ns(t0)
            pipeline.on_chunk(SampleChunk(sensor, k * 20 + second, t0, float(rate), 60.0,
                                          np.full(rate, level, np.int16)))
            pipeline.tick()


def run_pipeline(levels: list[int], classifier: FunctionClassifier):
    clock, events, results, states = ManualClock(), [], [], []
    pipeline = Pipeline(settings(), classifier, clock, events.append, on_result=results.append,
                        on_state=states.append)
    feed(pipeline, clock, levels)
    pipeline.flush()
    return pipeline, events, results, states


def test_a_classifier_whose_familiarity_is_low_never_raises_a_defect_alarm():
    double = FunctionClassifier(always_void, name="double", version="1", familiarity=familiarity_from_level,
                                familiarity_threshold=THRESHOLD)
    pipeline, events, results, states = run_pipeline([100] * 6, double)
    assert events == []  # six Void windows at p = 0.97, every one unfamiliar
    assert [r.outcome for r in results] == ["unfamiliar"] * 6
    assert all(r.class_name == "Void" and r.familiarity == pytest.approx(-10.0) for r in results)
    assert [s.state for s in states] == ["ok", "uncertain"]  # first data, then never ok again
    assert pipeline.sensor_states() == {"s1": "uncertain"}
    assert pipeline.counters()["windows_unfamiliar"] == 6


def test_the_same_double_familiar_raises_as_before():
    double = FunctionClassifier(always_void, name="double", version="1", familiarity=familiarity_from_level,
                                familiarity_threshold=THRESHOLD)
    pipeline, events, results, _ = run_pipeline([0] * 3, double)  # quiet: familiar
    assert [(e.kind, e.class_name) for e in events] == [("new", "Void")]
    assert [r.outcome for r in results] == ["defect"] * 3 and pipeline.counters()["windows_unfamiliar"] == 0


def test_without_a_gate_nothing_is_unfamiliar():
    pipeline, events, results, _ = run_pipeline([100] * 3, FunctionClassifier(always_void))
    assert pipeline.familiarity_threshold is None
    assert [e.kind for e in events] == ["new"] and all(r.familiarity is None for r in results)


def test_a_missing_or_nan_familiarity_under_a_gate_is_unfamiliar():
    double = FunctionClassifier(always_void, familiarity=lambda i, s: np.full(s.shape[0], np.nan, np.float32),
                                familiarity_threshold=THRESHOLD)
    _, events, results, _ = run_pipeline([100] * 4, double)
    assert events == [] and all(r.outcome == "unfamiliar" for r in results)


def test_function_classifier_checks_its_familiarity():
    with pytest.raises(ValueError, match="both or neither"):
        FunctionClassifier(always_void, familiarity=familiarity_from_level)
    bad = FunctionClassifier(always_void, familiarity=lambda i, s: np.zeros(3, np.float32), familiarity_threshold=0.0)
    with pytest.raises(ClassifierError, match="familiarity shape"):
        bad.score(None, np.zeros((2, 20, 7680), np.float32))


def test_scores_of_falls_back_to_predict_for_a_plain_classifier():
    class Plain:
        name, version, class_names = "plain", "0", CLASS_NAMES

        def predict(self, images, signals):
            return np.tile(probs("Normal", 0.9), (signals.shape[0], 1))

    scores = scores_of(Plain(), None, np.zeros((2, 20, 7680), np.float32))
    assert isinstance(scores, Scores) and scores.familiarity is None and scores.probabilities.shape == (2, 5)


def test_unfamiliar_windows_are_a_prometheus_counter():
    metrics = AgentMetrics()
    metrics.windows_unfamiliar.labels("s1").inc()
    assert b'mad_windows_unfamiliar_total{sensor="s1"} 1.0' in metrics.render()


def test_timeline_marks_unfamiliar_windows(tmp_path):
    double = FunctionClassifier(always_void, familiarity=familiarity_from_level, familiarity_threshold=THRESHOLD)
    _, events, results, _ = run_pipeline([100, 0, 0], double)
    path = plot_timeline(results, events, {}, tmp_path / "t.png")
    assert path.stat().st_size > 1000 and [r.unfamiliar for r in results] == [True, False, False]


def test_the_live_agents_timed_wrapper_passes_familiarity_through():
    from agent.service import TimedClassifier

    observed: list[float] = []
    double = FunctionClassifier(always_void, familiarity=familiarity_from_level, familiarity_threshold=THRESHOLD)
    timed = TimedClassifier(double, observed.append)
    scores = timed.score(None, np.full((2, 20, 7680), 100, np.float32))
    assert timed.familiarity_threshold == THRESHOLD and scores.familiarity.tolist() == [-10.0, -10.0]
    assert len(observed) == 1
