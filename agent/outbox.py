"""On-disk outbox for alarms (SQLite, WAL): written before publish, deleted on PUBACK.

An alarm survives a broker outage and an agent crash (even SIGKILL) because the row is
committed before the MQTT client ever sees it. Bounded: when full, the oldest `update`/`end`
rows go first, `new` rows only when nothing else is left; the row being added is never dropped.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ALARM_KINDS = ("new", "update", "end")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_ns INTEGER NOT NULL
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed alarm survives power loss, not only a process crash; alarms are rare.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM outbox").fetchone()
        except sqlite3.DatabaseError as error:
            raise OSError(f"outbox {self.path}: cannot open as SQLite ({error})") from None

    def add(self, topic: str, payload: bytes | str, kind: str, event_id: str) -> int:
        """Persist one alarm (committed on return) and return its row id."""
        if kind not in ALARM_KINDS:
            raise ValueError(f"outbox kind={kind!r}: expected one of {ALARM_KINDS}")
        body = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._evict_for_one_more()
                cursor = self._db.execute(
                    "INSERT INTO outbox (event_id, kind, topic, payload, created_ns) VALUES (?, ?, ?, ?, ?)",
                    (event_id, kind, topic, body, time.time_ns()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

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
        """Delete an acknowledged row; False if it was already gone (evicted, or a duplicate PUBACK)."""
        with self._lock:
            return self._db.execute("DELETE FROM outbox WHERE row_id = ?", (row_id,)).rowcount > 0

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
