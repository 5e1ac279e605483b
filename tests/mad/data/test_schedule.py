"""Fault schedules: one parser for synth-recording and the live simulator."""

import json

import pytest

from mad.constants import CLASS_NAMES
from mad.data.schedule import (
    ScheduleError,
    default_schedule,
    load_schedule_file,
    parse_schedule,
    sensor_steps,
    state_at,
)


def test_default_schedule_grows_a_void_on_sensor_0():
    schedule = parse_schedule(default_schedule(3), 3)
    assert state_at(schedule[0], 1.0, 6.0) == (CLASS_NAMES.index("Normal"), 0.7)
    label, early = state_at(schedule[0], 3.0, 6.0)
    _, late = state_at(schedule[0], 5.5, 6.0)
    assert CLASS_NAMES[label] == "Void" and early == pytest.approx(0.1) and late > 0.8
    assert CLASS_NAMES[state_at(schedule[1], 2.0, 6.0)[0]] == "Noise"


def test_intensity_ramps_linearly_until_the_next_step():
    steps = parse_schedule({"0": [{"from_min": 4, "label": "Corona"},
                                  {"from_min": 0, "label": "Void", "intensity": 0.2, "to_intensity": 0.6}]}, 1)[0]
    assert [s["label"] for s in steps] == ["Void", "Corona"]  # sorted by from_min
    assert state_at(steps, 2.0, 10.0) == (CLASS_NAMES.index("Void"), pytest.approx(0.4))
    assert state_at(steps, 4.0, 10.0)[0] == CLASS_NAMES.index("Corona")


def test_unnamed_sensor_stays_normal():
    assert CLASS_NAMES[state_at(sensor_steps({}, 7), 1.0, 2.0)[0]] == "Normal"


@pytest.mark.parametrize(("raw", "message"), [
    ([], "JSON object"),
    ({"3": [{"label": "Void"}]}, "index below"),
    ({"x": [{"label": "Void"}]}, "'x'"),
    ({"0": []}, "non-empty"),
    ({"0": [{"label": "Arcing"}]}, "label"),
    ({"0": [{"label": "Void", "from_min": "3"}]}, "from_min='3'"),
    ({"0": [{"label": "Void", "from_min": -1}]}, "from_min=-1"),
    ({"0": [{"label": "Void", "intensity": 1.5}]}, "intensity=1.5"),
    ({"0": [{"label": "Void", "intensity": True}]}, "intensity=True"),
    ({"0": [{"label": "Void", "ramp": 1}]}, "ramp"),
])
def test_bad_schedules_name_the_field_and_value(raw, message):
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[")):
        parse_schedule(raw, 2)


def test_schedule_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    with pytest.raises(ScheduleError, match=r"s\.json"):
        load_schedule_file(bad, 1)
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"0": [{"label": "Surface"}]}))
    assert load_schedule_file(good, 1)[0][0]["label"] == "Surface"
