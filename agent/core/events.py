"""Alarm events: the versioned JSON the agent publishes (schema in docs/alarms.md)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mad.constants import CLASS_NAMES

SCHEMA_VERSION = 2  # 2 added alarm_id, since_ns/since and resumed (docs/alarms.md)
EventKind = Literal["new", "update", "end"]
Severity = Literal["low", "medium", "high"]


def iso_utc(ns: int) -> str:
    """UTC ISO-8601 with milliseconds and a Z, e.g. 2026-11-26T20:00:00.000Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


class AlarmEvent(BaseModel):
    """One alarm transition for one sensor. Field names are the wire names (`class` on the wire)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[2] = SCHEMA_VERSION
    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    kind: EventKind
    # One alarm's events share its alarm_id (the event_id of its `new`), across agent restarts too.
    alarm_id: str
    since_ns: int = Field(ge=0)  # start of the window that raised the alarm
    since: str
    resumed: bool = False  # the alarm was open when this agent process started (restored from the state dir)
    sensor_id: str = Field(min_length=1)
    class_name: str = Field(alias="class")
    probabilities: dict[str, float]
    severity: Severity
    window_start_ns: int = Field(ge=0)
    window_end_ns: int = Field(ge=0)
    window_start: str
    window_end: str
    degraded: bool = False
    degraded_reason: str | None = None
    model_name: str
    model_version: str
    agent_id: str
    seq: int = Field(ge=0)
    historical: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> AlarmEvent:
        if self.window_end_ns <= self.window_start_ns:
            raise ValueError("window_end_ns must be after window_start_ns")
        if self.window_start != iso_utc(self.window_start_ns) or self.window_end != iso_utc(self.window_end_ns):
            raise ValueError("window_start/window_end must be the ISO form of window_start_ns/window_end_ns")
        if self.since != iso_utc(self.since_ns):
            raise ValueError("since must be the ISO form of since_ns")
        if self.since_ns > self.window_start_ns:
            raise ValueError("since_ns must not be after the triggering window's start")
        if self.kind == "new" and (self.alarm_id != self.event_id or self.since_ns != self.window_start_ns):
            raise ValueError("a `new` event opens its alarm: alarm_id is its event_id, since_ns its window start")
        if self.class_name not in CLASS_NAMES:
            raise ValueError(f"class {self.class_name!r} is not one of {CLASS_NAMES}")
        if self.degraded != (self.degraded_reason is not None):
            raise ValueError("degraded_reason is given exactly when degraded is true")
        uuid.UUID(self.event_id)  # raises ValueError naming a malformed id
        uuid.UUID(self.alarm_id)
        return self

    @classmethod
    def create(cls, *, window_start_ns: int, window_end_ns: int, since_ns: int, **fields) -> AlarmEvent:
        """Build an event, deriving the ISO times from the ns ones."""
        return cls(
            window_start_ns=window_start_ns,
            window_end_ns=window_end_ns,
            window_start=iso_utc(window_start_ns),
            window_end=iso_utc(window_end_ns),
            since_ns=since_ns,
            since=iso_utc(since_ns),
            **fields,
        )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> AlarmEvent:
        return cls.model_validate_json(text)

    def as_historical(self) -> AlarmEvent:
        """The same event marked as a re-publish (the outbox uses this after a broker outage)."""
        return self.model_copy(update={"historical": True})
