"""The agent's durable state (SQLite, WAL, one file in the state dir): the alarm outbox, the open
alarms per sensor and the next event sequence number.

Outbox: an alarm row is written before publish and deleted on PUBACK, so an alarm survives a broker
outage and an agent crash (even SIGKILL): the row is committed before the MQTT client ever sees it.
Bounded: when full, the oldest `update`/`end` rows go first, `new` rows only when nothing else is
left; the row being added is never dropped.

Alarm state: each sensor's alarm snapshot (agent/core/alarms.py) is written in the SAME transaction as
the outbox row of its event, together with the next `seq`, so after any crash the open alarms, the
published events and the numbering agree. Snapshots that change without an event (the k-of-n history)
are written once per inference batch.

A file that is not a readable SQLite database at start is renamed aside (`outbox.sqlite3.corrupt-<UTC>`)
and a fresh one is made (`reset_from` says which): the agent starts with empty state instead of
exiting on every start. A write that fails (disk full, I/O error) raises `StateWriteError`; the caller
publishes the alarm anyway and counts the failure.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ALARM_KINDS = ("new", "update", "end")
_SIDECARS = ("-wal", "-shm", "-journal")
log = logging.getLogger(__name__)


class StateWriteError(OSError):
    """Writing the state dir failed (disk full, I/O error, read-only): nothing of that write was kept."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alarm_state (
    sensor_id  TEXT PRIMARY KEY,
    snapshot   TEXT    NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    row_id: int
    event_id: str
    kind: str
    topic: str
    payload: bytes
    created_ns: int


class Outbox:
    """Thread-safe (one connection behind a lock): the core adds rows, the MQTT thread deletes them on PUBACK."""

    def __init__(
        self, path: Path | str, max_rows: int = 10_000, on_drop: Callable[[int], None] | None = None
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"outbox max_rows={max_rows}: must be >= 1")
        self.path = Path(path)
        self.max_rows = max_rows
        self.dropped = 0  # rows evicted by the size bound since this object was opened
        self._on_drop = on_drop  # e.g. metrics.outbox_dropped.inc
        self._lock = threading.Lock()
        self.reset_from: Path | None = None  # where a corrupt file was moved at start, if one was
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:
            self.reset_from = _move_aside(self.path)
            log.error("state file %s is not a readable SQLite database (%s): moved to %s; starting with no "
                      "pending alarms and no open alarm state", self.path, error, self.reset_from)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as again:
                raise OSError(f"outbox {self.path}: cannot create a fresh SQLite file ({again})") from None

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"outbox {self.path}: cannot create its folder ({error.strerror})") from None
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed alarm survives power loss, not only a process crash; alarms are rare.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM outbox").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def add(
        self,
        topic: str,
        payload: bytes | str,
        kind: str,
        event_id: str,
        *,
        seq: int | None = None,
        alarm_state: tuple[str, Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Persist one alarm (committed on return) and return its row id. In the same transaction:
        `seq` makes the next sequence number seq + 1, `alarm_state` = (sensor_id, snapshot or None)
        replaces that sensor's stored alarm state. Raises StateWriteError if the write fails."""
        if kind not in ALARM_KINDS:
            raise ValueError(f"outbox kind={kind!r}: expected one of {ALARM_KINDS}")
        body = payload.encode() if isinstance(payload, str) else bytes(payload)

        def write() -> int:
            self._evict_for_one_more()
            cursor = self._db.execute(
                "INSERT INTO outbox (event_id, kind, topic, payload, created_ns) VALUES (?, ?, ?, ?, ?)",
                (event_id, kind, topic, body, time.time_ns()),
            )
            if seq is not None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) ON CONFLICT(key) "
                                 "DO UPDATE SET value = max(value, excluded.value)", (seq + 1,))
            if alarm_state is not None:
                self._put_states({alarm_state[0]: alarm_state[1]})
            return int(cursor.lastrowid)

        return self._transaction(write)

    def save_alarm_states(self, states: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Replace these sensors' stored alarm states (None deletes) in one transaction."""
        if states:
            self._transaction(lambda: self._put_states(states))

    def alarm_states(self) -> dict[str, Any]:
        """Stored snapshots by sensor; a row that is not JSON comes back as its text (the restore refuses it)."""
        with self._lock:
            rows = self._db.execute("SELECT sensor_id, snapshot FROM alarm_state ORDER BY sensor_id").fetchall()
        out: dict[str, Any] = {}
        for sensor_id, text in rows:
            try:
                out[sensor_id] = json.loads(text)
            except (TypeError, ValueError):
                out[sensor_id] = text
        return out

    def next_seq(self) -> int:
        """The first `seq` this process may use: past every stored one (meta) and every one still pending."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            payloads = self._db.execute("SELECT payload FROM outbox").fetchall()
        first = int(row[0]) if row else 0
        for (payload,) in payloads:
            try:
                first = max(first, int(json.loads(payload)["seq"]) + 1)
            except (ValueError, KeyError, TypeError):
                continue
        return first

    def raise_next_seq(self, value: int) -> None:
        """Make the next sequence number at least `value` (migrating the old `last_seq` file)."""
        self._transaction(lambda: self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('next_seq', ?) ON CONFLICT(key) "
            "DO UPDATE SET value = max(value, excluded.value)", (int(value),)))

    def _put_states(self, states: Mapping[str, Mapping[str, Any] | None]) -> None:
        now = time.time_ns()
        for sensor_id, snapshot in states.items():
            if snapshot is None:
                self._db.execute("DELETE FROM alarm_state WHERE sensor_id = ?", (sensor_id,))
            else:
                self._db.execute(
                    "INSERT INTO alarm_state (sensor_id, snapshot, updated_ns) VALUES (?, ?, ?) ON CONFLICT(sensor_id) "
                    "DO UPDATE SET snapshot = excluded.snapshot, updated_ns = excluded.updated_ns",
                    (sensor_id, json.dumps(snapshot, separators=(",", ":")), now),
                )

    def _transaction(self, write: Callable[[], Any]) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = write()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StateWriteError(f"state file {self.path}: write failed ({error})") from error
            return result

    def _evict_for_one_more(self) -> None:
        (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        excess = count + 1 - self.max_rows
        if excess <= 0:
            return
        # Oldest non-`new` first, then oldest `new`: the alarm onsets are what an engineer must not miss.
        victims = self._db.execute(
            "SELECT row_id FROM outbox ORDER BY (kind = 'new'), row_id LIMIT ?", (excess,)
        ).fetchall()
        self._db.executemany("DELETE FROM outbox WHERE row_id = ?", victims)
        self.dropped += len(victims)
        if self._on_drop is not None:
            self._on_drop(len(victims))

    def remove(self, row_id: int) -> bool:
        """Delete an acknowledged row; False if it was already gone (evicted, or a duplicate PUBACK) or the
        delete failed (disk full: the row stays and is re-sent, marked historical, after the next connect)."""
        with self._lock:
            try:
                return self._db.execute("DELETE FROM outbox WHERE row_id = ?", (row_id,)).rowcount > 0
            except sqlite3.Error as error:
                log.warning("outbox %s: could not delete acknowledged row %d (%s)", self.path, row_id, error)
                return False

    def pending(self, limit: int | None = None) -> list[OutboxRow]:
        """Unacknowledged rows, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT row_id, event_id, kind, topic, payload, created_ns FROM outbox ORDER BY row_id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _move_aside(path: Path) -> Path:
    """Rename a bad state file (and its WAL/SHM) to `<name>.corrupt-<UTC stamp>`; returns the new name."""
    stamp = datetime.now(tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    try:
        path.replace(target)
        for suffix in _SIDECARS:
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.replace(target.with_name(target.name + suffix))
    except OSError as error:
        raise OSError(f"outbox {path}: unreadable and cannot be moved aside ({error.strerror})") from None
    return target
