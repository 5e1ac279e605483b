"""Alarm events: JSON round trip and validation of what comes back in."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from agent.core.events import SCHEMA_VERSION, AlarmEvent, iso_utc

START = 1_764_187_200_000_000_000  # 2025-11-26T20:00:00Z


def event(**overrides) -> AlarmEvent:
    event_id = str(uuid.uuid4())
    fields = dict(
        event_id=event_id,
        alarm_id=event_id,
        since_ns=START,
        kind="new",
        sensor_id="gis-bay3",
        class_name="Void",
        probabilities={"Normal": 0.01, "Noise": 0.02, "Surface": 0.03, "Corona": 0.04, "Void": 0.9},
        severity="high",
        window_start_ns=START,
        window_end_ns=START + 20_000_000_000,
        model_name="mad_small",
        model_version="abc123",
        agent_id="agent-7",
        seq=12,
    )
    fields.update(overrides)
    return AlarmEvent.create(**fields)


def test_round_trip_is_exact():
    original = event(degraded=True, degraded_reason="prpd_missing:rendered")
    assert AlarmEvent.from_json(original.to_json()) == original


def test_wire_names_and_iso_times():
    wire = json.loads(event().to_json())
    assert wire["class"] == "Void" and "class_name" not in wire
    assert wire["schema_version"] == SCHEMA_VERSION
    assert wire["window_start"] == "2025-11-26T20:00:00.000Z"
    assert wire["window_end"] == "2025-11-26T20:00:20.000Z"
    assert wire["historical"] is False


def test_event_ids_are_unique_uuids():
    assert event().event_id != event().event_id


def test_historical_copy_keeps_identity():
    original = event()
    again = original.as_historical()
    assert again.historical and again.event_id == original.event_id and again.seq == original.seq


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "raise"), ("class", "Arcing"), ("severity", "extreme"), ("window_start", "yesterday"), ("seq", -1)],
)
def test_from_json_rejects_bad_fields(field, value):
    wire = json.loads(event().to_json())
    wire[field] = value
    with pytest.raises(ValidationError):
        AlarmEvent.from_json(json.dumps(wire))


def test_from_json_rejects_unknown_keys():
    wire = json.loads(event().to_json())
    wire["extra"] = 1
    with pytest.raises(ValidationError, match="extra"):
        AlarmEvent.from_json(json.dumps(wire))


def test_iso_utc_keeps_milliseconds():
    assert iso_utc(START + 1_500_000) == "2025-11-26T20:00:00.001Z"
