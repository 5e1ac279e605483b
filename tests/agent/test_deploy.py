"""deploy/: the systemd unit verifies, is hardened (exposure <= 2.5), and its environment is valid agent config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "mad-agent.service"
MAX_EXPOSURE = 2.5
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian/Ubuntu package: systemd)"
)


def _unit_lines(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def _runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at a binary that exists here (verify checks it)."""
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={shutil.which('true')}", UNIT.read_text(), flags=re.M)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path) -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(_runnable_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    own_warnings = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not own_warnings, result.stderr


@needs_systemd_analyze
def test_unit_exposure_is_at_most_2_5(tmp_path) -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", str(_runnable_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_has_the_hardening_the_deployment_relies_on() -> None:
    text = UNIT.read_text()
    for setting in ("DynamicUser=yes", "StateDirectory=mad-agent", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "Restart=on-failure", "LoadCredential=mqtt-password:/etc/mad/mqtt-password",
                    "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "PrivateTmp=yes",
                    "ProtectHome=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"):
        assert setting in text, setting
    assert "password" not in "".join(_unit_lines("Environment")).replace("PASSWORD_FILE=%d/mqtt-password", "")


def test_environment_in_unit_and_example_is_valid_agent_config(monkeypatch, tmp_path) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    assignments = {}
    for line in _unit_lines("Environment"):
        key, value = line.split("=", 1)
        assignments[key] = value.replace("%S", "/var/lib").replace("%d", str(tmp_path))
    for line in (DEPLOY / "mad-agent.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            assignments[key] = value
    for key, value in assignments.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.agent.state_dir == Path("/var/lib/mad-agent")
    assert settings.mqtt.password_file == tmp_path / "mqtt-password"
    assert settings.agent.id == assignments["MAD_AGENT__ID"]
