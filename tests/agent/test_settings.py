"""Settings: TOML + environment override, bad fields named with their value, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.commands import check_config
from agent.settings import AgentSettings, ConfigError, ConfigFileError, load_settings, tomllib

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "agent.example.toml"
OPTIONAL_COMMENTED = {("mqtt", "username"), ("mqtt", "password_file"), ("mqtt", "password"), ("mqtt", "tls")}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MAD_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_example_loads_and_lists_every_field():
    settings = load_settings(EXAMPLE)
    assert settings == AgentSettings()  # the example documents the defaults
    table = tomllib.loads(EXAMPLE.read_text())
    for section, model in AgentSettings.model_fields.items():
        for field in model.annotation.model_fields:
            if (section, field) not in OPTIONAL_COMMENTED and field != "sensors":
                assert field in table[section], f"{section}.{field} missing from {EXAMPLE.name}"


def test_environment_overrides_toml(tmp_path, monkeypatch):
    path = write(tmp_path, '[model]\ndevice = "cpu"\nbatch_max = 4\n[limits.sensors.bay-1]\nsample_rate_hz = 3840\n')
    monkeypatch.setenv("MAD_MODEL__BATCH_MAX", "16")
    monkeypatch.setenv("MAD_MQTT__PASSWORD", "hunter2")
    settings = load_settings(path)
    assert settings.model.batch_max == 16 and settings.model.device == "cpu"
    assert settings.limits.sensors["bay-1"].sample_rate_hz == 3840
    assert settings.mqtt.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()


def test_bad_field_is_named_with_its_value(tmp_path):
    path = write(tmp_path, "[alarms]\nraise_probability = 1.5\n[mqtt]\nqos = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(p.startswith("alarms.raise_probability:") and "(got 1.5)" in p for p in info.value.problems)
    assert any(p.startswith("mqtt.qos:") and "(got 3)" in p for p in info.value.problems)


def test_unknown_key_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"windowing\.gap_polcy: unknown key"):
        load_settings(write(tmp_path, '[windowing]\ngap_polcy = "drop"\n'))


def test_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match="window_k"):
        load_settings(write(tmp_path, "[alarms]\nwindow_k = 6\nwindow_n = 5\n"))
    with pytest.raises(ConfigError, match="cert_file and key_file"):
        load_settings(write(tmp_path, '[mqtt.tls]\ncert_file = "/c.pem"\n'))


def test_password_value_is_never_echoed(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[mqtt]\npassword = 12345\n"))
    assert "12345" not in str(info.value)


def test_unreadable_file_is_a_file_error(tmp_path):
    with pytest.raises(ConfigFileError, match="file not found"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_settings(write(tmp_path, "[model\n"))


@pytest.mark.parametrize(("text", "code"), [("", 0), ("[model]\nbatch_max = 0\n", 1), ("[[", 2)])
def test_check_config_exit_codes(tmp_path, capsys, text, code):
    import argparse

    parser = argparse.ArgumentParser()
    check_config.add_arguments(parser)
    assert check_config.run(parser.parse_args([str(write(tmp_path, text))])) == code
    if code == 1:
        assert "model.batch_max" in capsys.readouterr().err


def test_logging_json_lines_and_rate_limit():
    import io
    import json as jsonlib

    from agent.logging import RateLimitedLog, configure_logging, get_logger

    stream = io.StringIO()
    configure_logging("auto", "info", stream=stream)  # not a TTY: JSON lines
    now = [0.0]
    limited = RateLimitedLog(get_logger("test"), interval_s=60.0, now=lambda: now[0])
    assert limited.warning("bad:s1", "input rejected", sensor_id="s1")
    assert not limited.warning("bad:s1", "input rejected", sensor_id="s1")
    assert limited.warning("bad:s2", "input rejected", sensor_id="s2")
    now[0] = 60.0
    assert limited.warning("bad:s1", "input rejected", sensor_id="s1")
    lines = [jsonlib.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["sensor_id"], line["suppressed"]) for line in lines] == [("s1", 0), ("s2", 0), ("s1", 1)]
    assert lines[0]["level"] == "warning" and "timestamp" in lines[0]
    with pytest.raises(ValueError, match=r"logging\.level"):
        configure_logging("json", "loud")


def test_stdlib_logging_lines_share_the_json_format():
    """The transport and service log through `logging`: their lines must be JSON like the core's."""
    import io
    import json as jsonlib
    import logging

    from agent.logging import configure_logging

    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    configure_logging("json", "info", stream=stream)  # configuring twice must not double the lines
    logging.getLogger("agent.transport").warning("broker %s unreachable", "127.0.0.1:1883")
    logging.getLogger("agent.transport").debug("below the level: not written")
    lines = [jsonlib.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "broker 127.0.0.1:1883 unreachable"
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "agent.transport" and "timestamp" in lines[0]
