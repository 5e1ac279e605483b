"""Agent settings: one TOML file plus `MAD_` environment variables (nested with `__`).

Precedence, highest first: keyword arguments, environment (`MAD_MODEL__DEVICE=cuda`), the TOML
file, the defaults below. Every section forbids unknown keys so a typo fails at start-up instead of
silently running on a default.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent import wire
from mad.constants import DEFAULT_POWER_FREQ_HZ, SAMPLE_RATE_HZ

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pydantic-settings depends on tomli there
    import tomli as tomllib

SENSOR_ID_PATTERN = wire.SENSOR_ID_PATTERN  # one rule for every id (agent/wire.py)
PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]
NonNegativeSeconds = Annotated[float, Field(ge=0, le=86_400)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_CONFIG_PATH = Path("/etc/mad/agent.toml")  # the systemd unit's --config; one path everywhere


class AgentSection(Section):
    id: str = Field("mad-agent-1", pattern=SENSOR_ID_PATTERN)
    state_dir: Path = Path("/var/lib/mad-agent")  # outbox.sqlite3: outbox, open alarms, next seq
    stats_interval_s: PositiveSeconds = 30.0  # counters to topics.stats this often


class ModelSection(Section):
    path: Path = Path("/opt/mad/models/mad_small.safetensors")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    batch_max: int = Field(8, ge=1, le=256)
    max_wait_s: NonNegativeSeconds = 0.5
    # Batches waiting for the inference worker; when full, batches wait in a backlog of as many
    # windows again, and past that the busiest sensor's oldest window is dropped and counted.
    # Every sensor's window closes within the same second (windows are epoch-aligned), so this must
    # hold a burst of (sensors / batch_max) batches: 32 x 8 = 256 sensors (bench/agent_load.py: the
    # old default of 4 dropped windows at 50 sensors). Memory: about 0.8 MB per queued window.
    queue_batches: int = Field(32, ge=1, le=1024)
    # "thread": inference on a worker thread (live). "inline": inside the caller (deterministic replay).
    inference_mode: Literal["thread", "inline"] = "thread"
    # Torch intra-op threads for CPU inference; 0 keeps torch's default (one per core). Set it to
    # the cores the agent really owns: on a shared 2-core box two threads ran 5-10x slower than one.
    threads: int = Field(0, ge=0, le=256)


class WindowingSection(Section):
    reorder_tolerance_s: NonNegativeSeconds = 2.0
    gap_policy: Literal["fill", "drop"] = "fill"
    max_missing_fraction: Probability = 0.05
    idle_close_s: PositiveSeconds = 30.0
    max_open_windows: int = Field(3, ge=1, le=64)
    off_rate_policy: Literal["resample", "reject"] = "resample"


class PairingSection(Section):
    tolerance_s: NonNegativeSeconds = 0.5
    grace_s: NonNegativeSeconds = 5.0
    missing_policy: Literal["render", "signal_only"] = "render"
    max_frames_per_sensor: int = Field(4, ge=1, le=64)


class AlarmsSection(Section):
    window_k: int = Field(3, ge=1, le=100)
    window_n: int = Field(5, ge=1, le=100)
    raise_probability: Probability = 0.7
    uncertain_below: Probability = 0.5
    clear_after: int = Field(3, ge=1, le=1000)
    severity_medium_probability: Probability = 0.8
    severity_high_probability: Probability = 0.9
    activity_rising_factor: float = Field(2.0, gt=1, le=1000)
    pulse_threshold_sigma: float = Field(6.0, gt=0, le=1000)
    # Commissioned sensors (docs/alarms.md, "Commissioning"): a defect vote needs activity >= this x the
    # background's 95th-percentile activity (0: off); severity +1 at >= background_severity_factor x it.
    background_activity_factor: float = Field(2.0, ge=0, le=1000)
    background_severity_factor: float = Field(10.0, ge=0, le=1_000_000)
    stale_after_s: PositiveSeconds = 60.0
    offline_after_s: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _consistent(self) -> AlarmsSection:
        if self.window_k > self.window_n:
            raise ValueError(f"window_k ({self.window_k}) must be <= window_n ({self.window_n})")
        if self.uncertain_below > self.raise_probability:
            raise ValueError(
                f"uncertain_below ({self.uncertain_below}) must be <= raise_probability ({self.raise_probability})"
            )
        if not self.severity_medium_probability <= self.severity_high_probability:
            raise ValueError("severity_medium_probability must be <= severity_high_probability")
        if self.stale_after_s >= self.offline_after_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s}) must be < offline_after_s ({self.offline_after_s})")
        return self


class TlsSection(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


_WIRE_TOPICS = wire.Topics()  # the documented contract (docs/mqtt.md) is the one source of the defaults


class TopicsSection(Section):
    """Topic patterns, `{sensor}` / `{agent}` placeholders; validated by `agent.wire.Topics` itself."""

    pd: str = _WIRE_TOPICS.pd
    prpd: str = _WIRE_TOPICS.prpd
    alarms: str = _WIRE_TOPICS.alarms
    state: str = _WIRE_TOPICS.state
    deadletter: str = _WIRE_TOPICS.deadletter
    status: str = _WIRE_TOPICS.status
    stats: str = _WIRE_TOPICS.stats

    @model_validator(mode="after")
    def _valid_patterns(self) -> TopicsSection:
        self.to_wire()  # raises ValueError naming the bad pattern
        return self

    def to_wire(self) -> wire.Topics:
        return wire.Topics(**self.model_dump())


class MqttSection(Section):
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    tls: TlsSection | None = None
    username: str | None = None
    password_file: Path | None = None
    password: SecretStr | None = None  # prefer password_file or MAD_MQTT__PASSWORD; never logged
    # Empty: "mad-<agent id>-<8 random hex>", unique per start so two agents never kick each other off.
    client_id: str = Field("", max_length=128)
    topics: TopicsSection = TopicsSection()
    qos: int = Field(1, ge=0, le=2)  # subscription QoS for the sensor inputs; alarms are always QoS 1
    deadletter: bool = False  # copy rejected inputs to topics.deadletter
    ha_discovery: bool = False  # publish Home Assistant discovery configs (retained) for each sensor
    ha_discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_\-/]{1,64}$")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: PositiveSeconds = 1.0
    reconnect_max_s: PositiveSeconds = 60.0

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value  # TOML `protocol = 5`

    @model_validator(mode="after")
    def _consistent(self) -> MqttSection:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) must be <= reconnect_max_s ({self.reconnect_max_s})"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self


# The highest rate anything may state (an allow-list entry, limits.sample_rate_max_hz): the wire contract's
# ceiling, so a claim above it is refused by the decoder and never reaches the core.
MAX_SAMPLE_RATE_HZ = wire.DEFAULT_LIMITS.max_sample_rate_hz
MIB = 1024 * 1024


def window_bytes(sample_rate_hz: float, itemsize: int = 2) -> int:
    """Bytes one open 20 s window holds: the samples in the stream's dtype plus a 1-byte presence mask."""
    return round(sample_rate_hz * 20) * (itemsize + 1)


class SensorSpec(Section):
    sample_rate_hz: float = Field(float(SAMPLE_RATE_HZ), gt=0, le=MAX_SAMPLE_RATE_HZ)
    power_freq_hz: float = Field(DEFAULT_POWER_FREQ_HZ, ge=16, le=400)


class LimitsSection(Section):
    intake_queue: int = Field(1000, ge=1, le=1_000_000)  # raw messages between the network thread and the core
    intake_max_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=4 * 1024**3)  # ... and their payload bytes
    # When the intake is full: drop the oldest queued message (keep the newest data) or the incoming one.
    intake_drop_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    max_payload_bytes: int = Field(1_048_576, ge=1024, le=268_435_456)
    outbox_max_rows: int = Field(10_000, ge=1, le=10_000_000)  # alarms kept on disk awaiting PUBACK
    unknown_sensor: Literal["auto-register", "reject"] = "auto-register"
    max_sensors: int = Field(256, ge=1, le=100_000)
    sensors: dict[str, SensorSpec] = Field(default_factory=dict)
    # Sample rates admitted from a sensor not in `sensors` (a listed sensor is held to its own rate instead);
    # anything else is refused (`bad_sample_rate`) before any memory is set aside for it. The ceiling is the
    # resource bound (a 20 s window at 2 MHz is 40 M samples); the floor is a plausibility choice (a slow
    # sensor costs less, and windows per chunk are bounded anyway): docs/agent-config.md argues both.
    sample_rate_min_hz: float = Field(1.0, ge=1.0, le=MAX_SAMPLE_RATE_HZ)
    sample_rate_max_hz: float = Field(2_000_000.0, ge=1.0, le=MAX_SAMPLE_RATE_HZ)
    # Open-window memory, samples in the sensor's own dtype + a 1-byte mask per sample: per sensor (all its
    # open windows together; a 2 MHz int16 window is 120 MB) and for all sensors together. Past either, the
    # sensor's oldest window is closed early (windows_forced); a stream whose single window cannot fit is
    # refused (`window_too_large`), a chunk that finds the shared budget spent is refused (`memory_budget`).
    max_window_bytes_per_sensor: int = Field(128 * MIB, ge=MIB, le=64 * 1024 * MIB)
    max_window_bytes_total: int = Field(512 * MIB, ge=MIB, le=1024 * 1024 * MIB)
    # A sensor whose rate, power frequency or sample dtype changes starts a new stream (its open windows
    # close first, counted in `streams_changed`); more changes than this within a minute are refused
    # (`stream_change_limit`). 0: every change is refused.
    max_stream_changes_per_minute: int = Field(1, ge=0, le=60)

    @model_validator(mode="after")
    def _intake_holds_a_payload(self) -> LimitsSection:
        if self.intake_max_bytes < self.max_payload_bytes:
            raise ValueError(f"intake_max_bytes ({self.intake_max_bytes}) must be >= max_payload_bytes "
                             f"({self.max_payload_bytes})")
        return self

    @model_validator(mode="after")
    def _rates_fit_the_budget(self) -> LimitsSection:
        if self.sample_rate_min_hz > self.sample_rate_max_hz:
            raise ValueError(f"sample_rate_min_hz ({self.sample_rate_min_hz}) must be <= sample_rate_max_hz "
                             f"({self.sample_rate_max_hz})")
        if self.max_window_bytes_per_sensor > self.max_window_bytes_total:
            raise ValueError(f"max_window_bytes_per_sensor ({self.max_window_bytes_per_sensor}) must be <= "
                             f"max_window_bytes_total ({self.max_window_bytes_total})")
        # Checked for int16 samples, what PD sensors send; a wider dtype at the same rate is refused at run time.
        stated = [("sample_rate_max_hz", self.sample_rate_max_hz)] + [
            (f"sensors.{sensor_id}.sample_rate_hz", spec.sample_rate_hz) for sensor_id, spec in self.sensors.items()]
        for name, rate in stated:
            needed = window_bytes(rate)
            if needed > self.max_window_bytes_per_sensor:
                raise ValueError(f"{name} ({rate:g} Hz): one 20 s int16 window takes {needed} bytes, more than "
                                 f"max_window_bytes_per_sensor ({self.max_window_bytes_per_sensor}); raise it")
        return self

    @field_validator("sensors")
    @classmethod
    def _sensor_ids(cls, sensors: dict[str, SensorSpec]) -> dict[str, SensorSpec]:
        for sensor_id in sensors:
            if not re.match(SENSOR_ID_PATTERN, sensor_id):
                raise ValueError(f"sensor id {sensor_id!r} must match {SENSOR_ID_PATTERN}")
        return sensors


class MetricsSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)  # 0 = no /metrics endpoint


class LoggingSection(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    bad_input_interval_s: PositiveSeconds = 60.0

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAD_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    agent: AgentSection = AgentSection()
    model: ModelSection = ModelSection()
    windowing: WindowingSection = WindowingSection()
    pairing: PairingSection = PairingSection()
    alarms: AlarmsSection = AlarmsSection()
    mqtt: MqttSection = MqttSection()
    limits: LimitsSection = LimitsSection()
    metrics: MetricsSection = MetricsSection()
    logging: LoggingSection = LoggingSection()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists one "dotted.path: message (got value)" per bad field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class ConfigFileError(ConfigError):
    """The file itself could not be read or parsed (missing, unreadable, not TOML)."""


def describe_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "<root>"
        value = error.get("input")
        shown = "<hidden>" if "password" in path else repr(value)
        if error["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key (got {shown})")
        elif error["type"] == "missing":
            problems.append(f"{path}: required")
        else:
            problems.append(f"{path}: {error['msg']} (got {shown})")
    return problems


def load_settings(toml_path: Path | str | None = None, **overrides: Any) -> AgentSettings:
    """Read `toml_path` (if given) and the `MAD_` environment; raise ConfigError naming each bad field."""
    source = "defaults + environment"
    settings_cls: type[AgentSettings] = AgentSettings
    if toml_path is not None:
        path = Path(toml_path)
        source = str(path)
        try:
            with path.open("rb") as handle:
                tomllib.load(handle)  # fail here with the file name and line, not deep inside a source
        except FileNotFoundError:
            raise ConfigFileError(source, ["file not found"]) from None
        except OSError as exc:
            raise ConfigFileError(source, [f"cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(source, [f"not valid TOML: {exc}"]) from None

        class _FromFile(AgentSettings):
            model_config = SettingsConfigDict(toml_file=path)

        settings_cls = _FromFile
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(source, describe_validation_error(exc)) from None
    return AgentSettings.model_validate(settings.model_dump()) if settings_cls is not AgentSettings else settings


def read_mqtt_password(mqtt: MqttSection) -> SecretStr | None:
    """The broker password from `password` or `password_file` (first line, stripped)."""
    if mqtt.password is not None:
        return mqtt.password
    if mqtt.password_file is None:
        return None
    try:
        return SecretStr(mqtt.password_file.read_text(encoding="utf-8").splitlines()[0].strip())
    except (OSError, IndexError) as exc:
        raise ConfigError(str(mqtt.password_file), [f"mqtt.password_file: cannot read a password ({exc})"]) from None
