"""Outbox: no alarm is lost across broker outages and agent crashes; the size bound keeps onsets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent.intake import Intake
from agent.outbox import Outbox, StateWriteError
from agent.transport import MqttTransport, TransportConfig

REPO = Path(__file__).resolve().parents[2]


def _alarm(kind: str = "new", sensor: str = "s1") -> tuple[str, str]:
    event_id = str(uuid.uuid4())
    return event_id, json.dumps({"event_id": event_id, "kind": kind, "sensor_id": sensor, "historical": False})


# ---------------------------------------------------------------- on-disk behaviour (no broker)


def test_rows_persist_in_order_and_are_removed_once(tmp_path) -> None:
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    ids = [outbox.add("mad/alarms/s1", f'{{"n":{i}}}', "update", f"e{i}") for i in range(3)]
    assert [r.event_id for r in outbox.pending()] == ["e0", "e1", "e2"]
    assert outbox.remove(ids[1]) is True
    assert outbox.remove(ids[1]) is False  # a duplicate PUBACK is harmless
    assert [r.payload for r in outbox.pending()] == [b'{"n":0}', b'{"n":2}']
    assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_size_bound_drops_oldest_update_and_end_first_and_never_the_newest_new(tmp_path) -> None:
    evicted: list[int] = []
    outbox = Outbox(tmp_path / "o.db", max_rows=4, on_drop=evicted.append)
    for event_id, kind in [("n1", "new"), ("u1", "update"), ("n2", "new"), ("e1", "end")]:
        outbox.add("t", "{}", kind, event_id)
    outbox.add("t", "{}", "update", "u2")
    assert [r.event_id for r in outbox.pending()] == ["n1", "n2", "e1", "u2"] and outbox.dropped == 1
    for i in range(3):
        outbox.add("t", "{}", "new", f"n{3 + i}")
    assert [r.event_id for r in outbox.pending()] == ["n2", "n3", "n4", "n5"]  # onsets go last, oldest first
    assert outbox.dropped == 4 == sum(evicted) and len(outbox) == 4


def test_bad_input_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="kind"):
        Outbox(tmp_path / "o.db").add("t", "{}", "resolved", "e")
    with pytest.raises(ValueError, match="max_rows"):
        Outbox(tmp_path / "p.db", max_rows=0)


def test_an_unreadable_state_file_is_moved_aside_once_and_a_fresh_one_works(tmp_path) -> None:
    corrupt = tmp_path / "outbox.sqlite3"
    garbage = b"this is not sqlite" * 100
    corrupt.write_bytes(garbage)
    outbox = Outbox(corrupt)
    assert outbox.reset_from is not None and outbox.reset_from.name.startswith("outbox.sqlite3.corrupt-")
    assert outbox.reset_from.read_bytes() == garbage  # kept for a post-mortem, never deleted
    outbox.add("t", "{}", "new", "e1", seq=3, alarm_state=("s1", {"version": 1}))
    outbox.close()
    again = Outbox(corrupt)  # the fresh file is fine: nothing more is moved (no crash loop)
    assert again.reset_from is None and [r.event_id for r in again.pending()] == ["e1"]
    assert again.next_seq() == 4 and again.alarm_states() == {"s1": {"version": 1}}
    assert sorted(p.name.split(".corrupt-")[0] for p in tmp_path.iterdir() if ".corrupt-" in p.name) == [
        "outbox.sqlite3"]


def test_event_state_and_seq_are_one_transaction(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add("t", "{}", "new", "e1", seq=7, alarm_state=("s1", {"open": True}))
    outbox.save_alarm_states({"s2": {"votes": 1}, "s3": {"votes": 2}})
    outbox.save_alarm_states({"s3": None})
    assert outbox.alarm_states() == {"s1": {"open": True}, "s2": {"votes": 1}} and outbox.next_seq() == 8
    outbox.add("t", "{}", "end", "e2", seq=8, alarm_state=("s1", None))
    assert outbox.alarm_states() == {"s2": {"votes": 1}} and outbox.next_seq() == 9
    outbox.add("t", "{}", "update", "e3", seq=2)  # a lower seq never moves the numbering back
    assert outbox.next_seq() == 9


def test_a_full_disk_keeps_nothing_of_the_failed_write_and_says_so(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add("t", "{}", "new", "e1", seq=1, alarm_state=("s1", {"open": True}))
    (pages,) = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    big = "x" * 20_000  # needs new pages
    with pytest.raises(StateWriteError, match=r"o\.db.*full"):
        outbox.add("t", big, "update", "e2", seq=5, alarm_state=("s1", {"big": big}))
    with pytest.raises(StateWriteError, match="full"):
        outbox.save_alarm_states({"s2": {"big": big}})
    assert [r.event_id for r in outbox.pending()] == ["e1"] and outbox.next_seq() == 2
    assert outbox.alarm_states() == {"s1": {"open": True}}
    assert outbox.remove(1)  # deleting frees space: PUBACKs keep working on a full disk


def test_rows_survive_sigkill_of_the_writer(tmp_path) -> None:
    script = textwrap.dedent("""
        import os, signal, sys
        from agent.outbox import Outbox, StateWriteError
        outbox = Outbox(sys.argv[1])
        for i in range(5):
            outbox.add("mad/alarms/s1", '{"i": %d}' % i, "new", "e%d" % i)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.db")], cwd=REPO, timeout=30)
    assert result.returncode == -9
    assert [r.event_id for r in Outbox(tmp_path / "o.db").pending()] == [f"e{i}" for i in range(5)]


# ---------------------------------------------------------------- against a broker


def _transport(broker, outbox: Outbox) -> MqttTransport:
    config = TransportConfig(agent_id="edge1", host=broker.host, port=broker.port,
                             reconnect_min_s=0.1, reconnect_max_s=0.4)
    return MqttTransport(config, Intake(), outbox)


def _events(subscriber, topic: str = "mad/alarms/s1") -> list[dict]:
    return [json.loads(p) for p in subscriber.on(topic)]


@pytest.mark.mqtt
def test_alarm_is_on_disk_before_paho_sees_it_and_gone_after_puback(mqtt_broker, subscriber_factory, tmp_path,
                                                                    until) -> None:
    outbox = Outbox(tmp_path / "o.db")
    transport = _transport(mqtt_broker, outbox)
    seen_on_disk: list[bool] = []
    real_publish = transport._client.publish

    def spying_publish(topic, payload=None, *args, **kwargs):
        if topic.startswith("mad/alarms/"):
            seen_on_disk.append(any(r.payload == payload for r in Outbox(tmp_path / "o.db").pending()))
        return real_publish(topic, payload, *args, **kwargs)

    transport._client.publish = spying_publish
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#"])
    transport.start()
    try:
        assert transport.wait_connected(5)
        event_id, payload = _alarm()
        transport.publish_alarm("s1", payload, "new", event_id)
        assert watcher.wait_for(lambda: len(watcher.messages) == 1)
        until(lambda: len(outbox) == 0, what="outbox row deleted on PUBACK")
        assert seen_on_disk == [True]  # a second process reading the file saw the row before publish
        assert _events(watcher)[0]["event_id"] == event_id and not _events(watcher)[0]["historical"]
    finally:
        transport.stop(timeout_s=1)


@pytest.mark.mqtt
def test_alarms_during_broker_outage_arrive_once_flagged_historical(broker_factory, subscriber_factory, tmp_path,
                                                                    until) -> None:
    broker = broker_factory(persistence=True)  # the subscriber's session (and its queue) survives the restart
    watcher = subscriber_factory(broker, ["mad/alarms/#"], client_id="outage-watcher")
    outbox = Outbox(tmp_path / "o.db")
    transport = _transport(broker, outbox)
    transport.start()
    try:
        assert transport.wait_connected(5)
        before_id, before = _alarm()
        transport.publish_alarm("s1", before, "new", before_id)
        until(lambda: len(outbox) == 0, what="first alarm acknowledged")
        broker.stop()
        until(lambda: not transport.connected, what="transport to notice the outage")
        during = [_alarm("update") for _ in range(5)]
        for event_id, payload in during:
            transport.publish_alarm("s1", payload, "update", event_id)
        assert len(outbox) == 5  # held on disk while the broker is down
        broker.start()
        assert watcher.wait_for(lambda: len(watcher.messages) >= 6, timeout_s=10), (
            f"got {len(watcher.messages)} alarms, outbox depth {len(outbox)}; broker log: {broker.log.read_text()}")
        until(lambda: len(outbox) == 0, what="backlog acknowledged")
        events = _events(watcher)
        counts = Counter(e["event_id"] for e in events)
        assert counts == Counter([before_id] + [event_id for event_id, _ in during])  # each exactly once
        assert [e["historical"] for e in events] == [False] + [True] * 5
    finally:
        transport.stop(timeout_s=1)


@pytest.mark.mqtt
def test_new_outbox_on_the_same_file_republishes_what_a_killed_agent_left(mqtt_broker, subscriber_factory,
                                                                         tmp_path, until) -> None:
    left = Outbox(tmp_path / "o.db")  # the agent wrote these, then died before any PUBACK
    leftovers = [_alarm() for _ in range(3)]
    for event_id, payload in leftovers:
        left.add("mad/alarms/s1", payload, "new", event_id)
    left.close()
    watcher = subscriber_factory(mqtt_broker, ["mad/alarms/#"])
    outbox = Outbox(tmp_path / "o.db")
    transport = _transport(mqtt_broker, outbox)
    transport.start()
    try:
        assert watcher.wait_for(lambda: len(watcher.messages) == 3)
        until(lambda: len(outbox) == 0, what="restart backlog acknowledged")
        events = _events(watcher)
        assert [e["event_id"] for e in events] == [event_id for event_id, _ in leftovers]
        assert all(e["historical"] for e in events)
    finally:
        transport.stop(timeout_s=1)
