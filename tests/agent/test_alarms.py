"""Alarm state machine: scripted probability sequences give exactly the expected events."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.alarms import SensorAlarm, judge, pulse_rate
from agent.settings import AlarmsSection
from mad.constants import CLASS_NAMES

CONFIG = AlarmsSection(window_k=3, window_n=5, raise_probability=0.7, uncertain_below=0.5, clear_after=2)


def probs(name: str, p: float) -> np.ndarray:
    out = np.full(len(CLASS_NAMES), (1 - p) / (len(CLASS_NAMES) - 1), np.float32)
    out[CLASS_NAMES.index(name)] = p
    return out


def run(script: list[tuple[str, float]], config: AlarmsSection = CONFIG) -> tuple[SensorAlarm, list]:
    alarm = SensorAlarm(config)
    events = []
    for i, (name, p) in enumerate(script):
        decision = alarm.observe(probs(name, p))
        if decision.kind is not None:
            events.append((i, decision.kind, decision.alarm_class, decision.severity))
    return alarm, events


def test_raises_after_k_of_n_and_not_at_k_minus_1():
    _, events = run([("Void", 0.95), ("Normal", 0.9), ("Void", 0.95)])
    assert events == []
    _, events = run([("Void", 0.95), ("Normal", 0.9), ("Void", 0.95), ("Noise", 0.9), ("Void", 0.95)])
    assert events == [(4, "new", "Void", "high")]


def test_votes_outside_the_last_n_do_not_count():
    script = [("Void", 0.95), ("Void", 0.95)] + [("Normal", 0.9)] * 4 + [("Void", 0.95)]
    assert run(script)[1] == []


def test_below_raise_probability_is_uncertain_not_a_vote():
    alarm, events = run([("Corona", 0.65)] * 5)
    assert events == [] and alarm.state == "uncertain"


def test_update_on_class_change_and_clear_after_m_clean():
    script = [("Void", 0.95)] * 3 + [("Surface", 0.95)] * 3 + [("Normal", 0.9)] * 2
    _, events = run(script)
    assert events == [(2, "new", "Void", "high"), (5, "update", "Surface", "high"), (7, "end", "Surface", "high")]


def test_update_on_severity_change():
    script = [("Corona", 0.75)] * 3 + [("Corona", 0.95)] * 5
    _, events = run(script)
    assert events[0] == (2, "new", "Corona", "low")
    assert [e[3] for e in events[1:]] == ["medium", "high"]


def test_interference_and_uncertain_neither_clear_nor_reset_the_clean_count():
    script = [("Void", 0.95)] * 3 + [("Normal", 0.9), ("Noise", 0.9), ("Normal", 0.2), ("Normal", 0.9)]
    alarm, events = run(script)
    assert events[-1] == (6, "end", "Void", "high")
    assert alarm.state == "ok"


def test_defect_window_resets_the_clean_count():
    script = [("Void", 0.95)] * 3 + [("Normal", 0.9), ("Void", 0.95), ("Normal", 0.9)]
    alarm, events = run(script)
    assert [e[1] for e in events] == ["new"] and alarm.state == "alarm"


def test_noise_is_interference_never_a_defect():
    alarm, events = run([("Noise", 0.99)] * 10)
    assert events == [] and alarm.state == "interference"


def test_low_confidence_is_uncertain_never_normal():
    alarm, _ = run([("Normal", 0.4)])
    assert alarm.state == "uncertain"
    assert judge(probs("Normal", 0.4), 0.0, CONFIG).outcome == "uncertain"


def test_no_immediate_reraise_after_clear():
    config = AlarmsSection(window_k=2, window_n=5, clear_after=1, raise_probability=0.7, uncertain_below=0.5)
    _, events = run([("Void", 0.95)] * 2 + [("Normal", 0.9)] + [("Void", 0.95)], config)
    assert [e[1] for e in events] == ["new", "end"]


def test_rising_activity_raises_severity_one_level():
    alarm = SensorAlarm(CONFIG)
    kinds = [alarm.observe(probs("Void", 0.75), activity=10.0) for _ in range(3)]
    assert (kinds[-1].kind, kinds[-1].severity) == ("new", "low")
    decisions = [alarm.observe(probs("Void", 0.75), activity=50.0) for _ in range(3)]
    assert decisions[-1].severity == "medium"


def test_pulse_rate_counts_spikes_per_second():
    rng = np.random.default_rng(0)
    signal = rng.normal(100, 5, (20, 7680)).astype(np.float32)
    quiet = pulse_rate(signal, 6.0)
    signal.reshape(-1)[::1000] += 500  # 154 pulses over 20 s
    assert pulse_rate(signal, 6.0) - quiet == pytest.approx(154 / 20, abs=0.2)


def test_config_rejects_k_greater_than_n():
    with pytest.raises(ValueError, match="window_k"):
        AlarmsSection(window_k=6, window_n=5)
