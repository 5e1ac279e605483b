"""Alarm state survives a restart: the state machine's snapshot, its validation, and a pipeline (and a
live service) that continues an open alarm instead of raising it again."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from agent.core.alarms import SensorAlarm, SnapshotError
from agent.core.clock import ManualClock
from agent.core.pipeline import Pipeline
from agent.core.types import SampleChunk
from agent.core.windowing import WINDOW_NS
from agent.inference import FunctionClassifier
from agent.settings import AlarmsSection
from mad.constants import CLASS_NAMES
from tests.agent.test_pipeline import SECOND, START, settings, void_when_loud

CONFIG = AlarmsSection(window_k=2, window_n=3, clear_after=2)


def probs(name: str, p: float = 0.95) -> np.ndarray:
    out = np.full(5, (1 - p) / 4, np.float32)
    out[CLASS_NAMES.index(name)] = p
    return out


def test_a_restored_machine_decides_exactly_as_the_one_that_was_saved():
    script = [("Void", 0.95), ("Normal", 0.9), ("Void", 0.85), ("Corona", 0.95), ("Void", 0.97), ("Normal", 0.9),
              ("Normal", 0.9), ("Corona", 0.95), ("Corona", 0.99), ("Normal", 0.9), ("Normal", 0.9)]
    for cut in range(len(script)):
        original = SensorAlarm(CONFIG)
        decisions = []
        for k, (name, p) in enumerate(script[:cut]):
            decision = original.observe(probs(name, p), activity=float(k))
            if decision.kind == "new":
                original.open(f"00000000-0000-4000-8000-{k:012d}", k)
            decisions.append(decision.kind)
        snapshot = json.loads(json.dumps(original.snapshot()))  # through JSON, as stored
        restored = SensorAlarm.restore(CONFIG, snapshot)
        assert (restored.opened is None) == (original.opened is None)
        for k, (name, p) in enumerate(script[cut:], start=cut):
            a = original.observe(probs(name, p), activity=float(k))
            b = restored.observe(probs(name, p), activity=float(k))
            assert (a.kind, a.alarm_class, a.severity) == (b.kind, b.alarm_class, b.severity), (cut, k)
            if a.kind == "new":
                original.open("00000000-0000-4000-8000-000000000001", k)
                restored.open("00000000-0000-4000-8000-000000000001", k)
            elif (a.kind in ("update", "end") and original.opened is not None) or a.kind == "end":
                assert a.alarm is not None and b.alarm is not None
                assert a.alarm.alarm_id == b.alarm.alarm_id and b.alarm.since_ns == a.alarm.since_ns


def test_a_restored_open_alarm_is_marked_resumed_and_a_fresh_one_is_not():
    alarm = SensorAlarm(CONFIG)
    alarm.observe(probs("Void"))
    assert alarm.observe(probs("Void")).kind == "new"
    alarm.open("6f1c2b7e-8d3a-4f5e-9a61-2b0c4d8e7f10", 123)
    assert alarm.opened.resumed is False
    restored = SensorAlarm.restore(CONFIG, alarm.snapshot())
    assert restored.opened.resumed and restored.opened.alarm_id == "6f1c2b7e-8d3a-4f5e-9a61-2b0c4d8e7f10"
    assert restored.state == "alarm" and not SensorAlarm(CONFIG).worth_keeping() and restored.worth_keeping()


@pytest.mark.parametrize(("change", "field"), [
    ({"version": 99}, "version"),
    ({"history": "x"}, "history"),
    ({"history": [["defect", "Arcing", 0.9, 0.0]]}, "class"),
    ({"history": [["maybe", "Void", 0.9, 0.0]]}, "outcome"),
    ({"history": [["defect", "Void", 1.5, 0.0]]}, "probability"),
    ({"history": [["defect", "Void", float("nan"), 0.0]]}, "probability"),
    ({"active_class": "Noise"}, "active_class"),
    ({"severity": "extreme"}, "severity"),
    ({"clean_streak": -1}, "clean_streak"),
    ({"alarm_id": "not-a-uuid"}, "alarm_id"),
    ({"since_ns": -5}, "since_ns"),
    ({"activity_at_raise": "lots"}, "activity_at_raise"),
])
def test_a_bad_snapshot_is_refused_naming_the_field(change, field):
    alarm = SensorAlarm(CONFIG)
    alarm.observe(probs("Void"))
    alarm.observe(probs("Void"))
    alarm.open("6f1c2b7e-8d3a-4f5e-9a61-2b0c4d8e7f10", 0)
    snapshot = alarm.snapshot() | change
    with pytest.raises(SnapshotError, match=field):
        SensorAlarm.restore(CONFIG, snapshot)


def test_a_smaller_window_n_after_a_restart_keeps_the_newest_verdicts():
    alarm = SensorAlarm(AlarmsSection(window_k=3, window_n=5, clear_after=2))  # no alarm: votes only
    for name in ("Void", "Normal", "Normal", "Corona", "Corona"):
        alarm.observe(probs(name))
    restored = SensorAlarm.restore(CONFIG, alarm.snapshot())
    assert [v.class_name for v in restored.history] == ["Normal", "Corona", "Corona"]


def _pipeline(state: dict, events: list, clock: ManualClock, states: list | None = None) -> Pipeline:
    """A pipeline whose durable state is the dict `state` (what the service keeps in SQLite)."""

    def keep(changed):
        for sensor, snapshot in changed.items():
            if snapshot is None:
                state.pop(sensor, None)
            else:
                state[sensor] = json.loads(json.dumps(snapshot))

    pipeline: Pipeline

    def sink(event):
        events.append(event)
        keep({event.sensor_id: pipeline.alarm_snapshot(event.sensor_id)})

    pipeline = Pipeline(settings(), FunctionClassifier(void_when_loud, name="double", version="1"), clock, sink,
                        on_alarm_states=keep, on_state=None if states is None else states.append)
    pipeline.restore_alarms(dict(state))
    return pipeline


def _feed_windows(pipeline: Pipeline, clock: ManualClock, levels: dict[int, int], sensor: str = "s1") -> None:
    """Window index -> level, one 64 Hz chunk per second, the clock following event time."""
    for k, level in levels.items():
        for sec in range(20):
            t0 = START + k * WINDOW_NS + sec * SECOND
            clock.set_ns(t0)
            pipeline.on_chunk(SampleChunk(sensor, k * 20 + sec, t0, 64.0, 60.0, np.full(64, level, np.int16)))
            pipeline.tick()


def test_a_restarted_pipeline_continues_the_open_alarm_and_ends_it_once():
    state: dict = {}
    clock, before, after, states = ManualClock(), [], [], []
    first = _pipeline(state, before, clock)
    _feed_windows(first, clock, {0: 100, 1: 100, 2: 100})  # Void, Void (k=2 of 3: new), Void; then it dies
    first.flush()
    assert [e.kind for e in before] == ["new"] and set(state) == {"s1"}
    # Restart: the fault is still there for a window, then it clears (clear_after=2).
    second = _pipeline(state, after, clock, states)
    assert second.sensor_states() == {"s1": "alarm"} and states[-1].state == "alarm"  # retained state at once
    assert second.counters()["alarms_restored"] == 1
    _feed_windows(second, clock, {3: 100, 4: 0, 5: 0, 6: 0})
    second.flush()
    assert [e.kind for e in after] == ["end"]  # no second `new` for the same fault
    (new,), (end,) = before, after
    assert end.alarm_id == new.alarm_id == new.event_id and end.since_ns == new.since_ns == new.window_start_ns
    assert end.resumed and not new.resumed and end.class_name == "Void"
    assert state == {} and second.sensor_states()["s1"] == "ok"


def test_without_the_state_a_restart_raises_the_same_fault_again():
    """The control: what the restore prevents (a second `new` for one fault)."""
    clock, before, after = ManualClock(), [], []
    _feed_windows(_pipeline({}, before, clock), clock, {0: 100, 1: 100, 2: 100})
    second = _pipeline({}, after, clock)
    _feed_windows(second, clock, {3: 100, 4: 100, 5: 0})
    second.flush()
    assert [e.kind for e in before] == ["new"] and [e.kind for e in after] == ["new"]


def test_invalid_stored_states_are_counted_and_handed_back_to_be_dropped():
    clock = ManualClock()
    pipeline = Pipeline(settings(), FunctionClassifier(void_when_loud), clock, lambda e: None)
    bad = pipeline.restore_alarms({"s1": "not json", "bad id!": {"version": 1}, "s2": {"version": 1}})
    assert sorted(bad) == ["bad id!", "s1", "s2"] and pipeline.counters()["alarm_states_invalid"] == 3


def test_the_service_restores_open_alarms_from_its_state_dir(tmp_path, mqtt_broker):
    """Two AgentService lifetimes on one state dir: the second resumes the alarm the first raised."""
    from agent.service import OUTBOX_FILE, AgentService
    from agent.settings import load_settings

    def make() -> AgentService:
        cfg = load_settings(None, agent={"id": "dur", "state_dir": str(tmp_path / "state")},
                            mqtt={"host": mqtt_broker.host, "port": mqtt_broker.port}, metrics={"port": 0},
                            alarms={"window_k": 1, "window_n": 1})
        return AgentService(cfg, FunctionClassifier(void_when_loud, name="double", version="1"))

    service = make()
    from agent.core.types import SampleChunk
    from tests.agent.test_pipeline import START

    for second in range(20):
        service.pipeline.on_chunk(SampleChunk("s9", second, START + second * 10**9, 64.0, 60.0,
                                              np.full(64, 100, np.int16)))
    service.pipeline.flush()
    service.outbox.close()  # as a SIGKILL would leave it: nothing else written
    with sqlite3.connect(tmp_path / "state" / OUTBOX_FILE) as db:
        (stored,) = db.execute("SELECT snapshot FROM alarm_state WHERE sensor_id = 's9'").fetchone()
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    assert json.loads(stored)["active_class"] == "Void" and next_seq == 1

    again = make()
    assert again.pipeline.sensor_states() == {"s9": "alarm"} and again.first_seq == 1
    assert again.stats()["alarms_restored"] == 1 and again.stats()["state_store_resets"] == 0
    again.outbox.close()
