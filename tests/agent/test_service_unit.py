"""Service wiring without a broker: settings -> TransportConfig, event seq across restarts, `run` exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent import wire
from agent.commands import run as run_command
from agent.outbox import Outbox
from agent.service import LEGACY_SEQ_FILE, first_event_seq, transport_config
from agent.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MAD_"):
            monkeypatch.delenv(name)


def test_transport_config_maps_the_connection_settings(tmp_path):
    (tmp_path / "pw").write_text("s3cret\nignored\n")
    settings = load_settings(None, agent={"id": "bay-7"}, mqtt={
        "host": "broker.plant", "port": 8883, "username": "mad", "password_file": str(tmp_path / "pw"),
        "tls": {}, "qos": 0, "deadletter": True, "protocol": "3.1.1", "reconnect_min_s": 2, "reconnect_max_s": 9,
        "topics": {"alarms": "plant/{sensor}/alarm"}})
    config = transport_config(settings)
    assert (config.agent_id, config.host, config.port, config.username, config.password) == (
        "bay-7", "broker.plant", 8883, "mad", "s3cret")
    assert config.tls and config.tls_ca_file is None and config.client_id is None  # empty id -> unique per start
    assert (config.subscribe_qos, config.deadletter, config.protocol) == (0, True, "3.1.1")
    assert (config.reconnect_min_s, config.reconnect_max_s) == (2, 9)
    assert config.topics == wire.Topics(alarms="plant/{sensor}/alarm")
    assert "s3cret" not in repr(config)


def test_default_topics_are_the_wire_contract():
    assert load_settings().mqtt.topics.to_wire() == wire.Topics()


@pytest.mark.parametrize(("topics", "field"), [({"alarms": "mad/alarms"}, "alarms"), ({"pd": "mad/+/{sensor}"}, "pd"),
                                               ({"status": "mad/status"}, "status")])
def test_bad_topic_pattern_is_named(topics, field):
    with pytest.raises(ConfigError, match=f"topics.{field}"):
        load_settings(None, mqtt={"topics": topics})


def test_metrics_port_zero_means_off_and_intake_must_hold_a_payload():
    assert load_settings(None, metrics={"port": 0}).metrics.port == 0
    with pytest.raises(ConfigError, match="intake_max_bytes"):
        load_settings(None, limits={"intake_max_bytes": 2048, "max_payload_bytes": 4096})


def test_event_seq_continues_from_the_state_file_the_outbox_or_an_old_seq_file(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    assert first_event_seq(tmp_path, outbox) == 0
    outbox.add("mad/alarms/s", json.dumps({"seq": 41}), "new", "e0", seq=41)
    outbox.remove(1)  # acknowledged: only the state file remembers 41
    assert first_event_seq(tmp_path, outbox) == 42
    outbox.add("mad/alarms/s", json.dumps({"seq": 57}), "new", "e1")  # pending, written without seq
    outbox.add("mad/alarms/s", b"not json", "new", "e2")
    assert first_event_seq(tmp_path, outbox) == 58
    (tmp_path / LEGACY_SEQ_FILE).write_text("99\n")  # an older agent's file: taken once, then removed
    assert first_event_seq(tmp_path, outbox) == 100
    assert not (tmp_path / LEGACY_SEQ_FILE).exists() and first_event_seq(tmp_path, outbox) == 100
    (tmp_path / LEGACY_SEQ_FILE).write_text("garbage")
    assert first_event_seq(tmp_path, outbox) == 100  # unreadable old file: the state file still counts
    outbox.close()


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return run_command.run(parser.parse_args(argv))


def test_run_exits_2_naming_a_bad_config_or_model(tmp_path: Path, capsys):
    bad = tmp_path / "agent.toml"
    bad.write_text("[metrics]\nenabled = true\n")  # the old switch is gone: port = 0 turns metrics off
    assert _run(["--config", str(bad)]) == 2
    assert "metrics.enabled: unknown key" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n[metrics]\nport = 0\n')
    assert _run(["--config", str(good), "--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
