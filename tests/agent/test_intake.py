"""Intake: bounded by count and bytes, every drop counted, the producer never blocks."""

from __future__ import annotations

import threading

import pytest

from agent.intake import Intake, RawMessage


def _msg(i: int, size: int = 10) -> RawMessage:
    return RawMessage(topic=f"mad/sensors/s/{i}", payload=bytes(size), received_ns=i)


def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    dropped: list[RawMessage] = []
    intake = Intake(max_messages=3, policy="drop_oldest", on_drop=dropped.append)
    results = [intake.put(_msg(i)) for i in range(5)]
    assert results == [True] * 5
    assert [m.received_ns for m in intake.get_batch(10, timeout=0)] == [2, 3, 4]
    assert [m.received_ns for m in dropped] == [0, 1]
    assert (intake.dropped, intake.accepted, intake.depth, intake.depth_bytes) == (2, 5, 0, 0)


def test_drop_newest_refuses_the_incoming_message() -> None:
    intake = Intake(max_messages=2, policy="drop_newest")
    assert [intake.put(_msg(i)) for i in range(4)] == [True, True, False, False]
    assert [m.received_ns for m in intake.get_batch(10, timeout=0)] == [0, 1]
    assert intake.dropped == 2


def test_byte_bound_and_oversized_message() -> None:
    intake = Intake(max_messages=100, max_bytes=100)
    for i in range(4):
        intake.put(_msg(i, size=30))
    assert intake.depth == 3 and intake.depth_bytes == 90 and intake.dropped == 1
    assert intake.put(_msg(9, size=101)) is False
    assert intake.dropped == 2 and intake.depth == 3


def test_get_batch_times_out_empty_and_close_wakes_consumer() -> None:
    intake = Intake()
    assert intake.get_batch(timeout=0.01) == []
    got: list[list[RawMessage]] = []
    consumer = threading.Thread(target=lambda: got.append(intake.get_batch(timeout=None)))
    consumer.start()
    intake.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive() and got == [[]]
    assert intake.put(_msg(1)) is False and intake.dropped == 0


def test_producer_never_blocks_and_nothing_is_lost_uncounted() -> None:
    intake = Intake(max_messages=50)
    total = 20_000
    received: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while not (done.is_set() and intake.depth == 0):
            received.extend(m.received_ns for m in intake.get_batch(64, timeout=0.01))

    def produce() -> None:
        for i in range(total):
            intake.put(_msg(i))

    consumer = threading.Thread(target=consume)
    producer = threading.Thread(target=produce)
    consumer.start()
    producer.start()
    producer.join(timeout=20)
    assert not producer.is_alive(), "put() blocked"
    done.set()
    consumer.join(timeout=5)
    assert len(received) + intake.dropped == total
    assert received == sorted(received)  # FIFO survives concurrent drops


@pytest.mark.parametrize("kwargs", [{"max_messages": 0}, {"max_bytes": 0}, {"policy": "drop_random"}])
def test_bad_configuration_names_the_field(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Intake(**kwargs)


@pytest.mark.mqtt
def test_a_flood_with_a_stalled_consumer_never_stalls_the_network_thread(mqtt_broker, tmp_path, until) -> None:
    import json

    import paho.mqtt.publish as publish

    from agent.outbox import Outbox
    from agent.transport import MqttTransport, TransportConfig

    intake = Intake(max_messages=5)
    outbox = Outbox(tmp_path / "o.db")
    transport = MqttTransport(TransportConfig(agent_id="edge1", host=mqtt_broker.host, port=mqtt_broker.port),
                              intake, outbox)
    transport.start()
    try:
        assert transport.wait_subscribed(5)
        flood = [{"topic": "mad/sensors/s1/pd", "payload": bytes(100), "qos": 1} for _ in range(300)]
        publish.multiple(flood, hostname=mqtt_broker.host, port=mqtt_broker.port)
        until(lambda: intake.accepted == 300, what="all flood messages seen by the network thread")
        assert intake.depth == 5 and intake.dropped == 295
        # Nobody consumed the intake, yet the network thread still handles PUBACKs.
        transport.publish_alarm("s1", json.dumps({"event_id": "e1"}), "new", "e1")
        until(lambda: len(outbox) == 0, what="alarm PUBACK while the intake is full")
    finally:
        transport.stop(timeout_s=1)
