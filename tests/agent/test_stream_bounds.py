"""Per-sensor resources are bounded by configuration, not by what a message claims (issue 15.1 and 15.2).

The probes of the issue (a 38-byte chunk claiming 10 MHz or 100 MHz; a 20 KB chunk of 20,000 samples at
1 Hz) go through the wire decoder and the pipeline as the live agent runs them: each is refused with a
reason code, costing well under a few MB and 100 ms. Before the fix the 10 MHz probe set aside ~950 MB
(tracemalloc) and its close took 1.8 s; the 1 Hz one made 999 windows and took 4.3 s.
"""

from __future__ import annotations

import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import wire
from agent.core.clock import ManualClock
from agent.core.pipeline import Pipeline
from agent.core.types import SampleChunk
from agent.core.windowing import WINDOW_NS, SensorStreamError, Windower
from agent.inference import FunctionClassifier
from agent.settings import MIB, AgentSettings, ConfigError, LimitsSection, WindowingSection, load_settings

START = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z, a window start (epoch-aligned 20 s)
SECOND = 1_000_000_000
FEW_MB = 4 * MIB
FAST_S = 0.100


def _settings(**sections) -> AgentSettings:
    base = dict(
        model=dict(batch_max=4, max_wait_s=0.0, inference_mode="inline"),
        pairing=dict(grace_s=0.0, missing_policy="signal_only"),
    )
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return AgentSettings.model_validate(base)


def _pipeline(settings: AgentSettings | None = None, seen: list | None = None) -> tuple[Pipeline, ManualClock]:
    def classify(images, signals):
        if seen is not None:
            seen.append(signals.dtype)
        return np.full((signals.shape[0], 5), 0.2, np.float32)

    clock = ManualClock(START)
    return Pipeline(settings or _settings(), FunctionClassifier(classify), clock, lambda e: None), clock


def _rejections(pipeline: Pipeline) -> dict[str, float]:
    counters = pipeline.counters()
    return {k.removeprefix("reject_reason_"): v for k, v in counters.items() if k.startswith("reject_reason_")}


def _probe(pipeline: Pipeline, payload: bytes) -> str:
    """One message as the agent's core thread runs it: decode, then the pipeline; the reason it was refused."""
    try:
        chunk = wire.decode_message("mad/sensors/x/pd", payload, now_ns=START + SECOND)
    except wire.WireError as error:
        return f"wire:{error.reason}"
    before = _rejections(pipeline)
    pipeline.on_chunk(chunk)
    pipeline.tick()
    after = _rejections(pipeline)
    return ",".join(f"core:{r}" for r in after if after[r] != before.get(r, 0)) or "accepted"


# The issue's repro: struct.pack("<4sBBHQqffI", b"MADP", 1, 1, 0, 1, now_ns, rate, 60.0, 1) + b"\x01\x00"
PROBES = {
    "10 MHz, one sample": (struct.pack("<4sBBHQqffI", b"MADP", 1, 1, 0, 1, START, 1e7, 60.0, 1) + b"\x01\x00",
                           "core:bad_sample_rate"),
    "100 MHz, one sample": (struct.pack("<4sBBHQqffI", b"MADP", 1, 1, 0, 1, START, 1e8, 60.0, 1) + b"\x01\x00",
                            "wire:bad_sample_rate"),
    "1 Hz, 20,000 int8 samples": (wire.encode_pd_chunk(1, START, np.ones(20_000, np.int8), 1.0, 60.0),
                                  "core:chunk_too_long"),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_extreme_rate_probes_are_refused_cheaply_with_a_reason(name):
    payload, reason = PROBES[name]
    pipeline, _ = _pipeline()
    pipeline.on_chunk(SampleChunk("warm", 0, START, 7680.0, 60.0, np.zeros(7680, np.int16)))  # first-use costs
    pipeline.on_chunk(SampleChunk("warm", 1, START, 1e7, 60.0, np.zeros(1, np.int16)))  # (the first log line)
    pipeline.flush()
    tracemalloc.start()
    try:
        started = time.perf_counter()
        got = _probe(pipeline, payload)
        pipeline.flush()  # nothing was set aside, so closing everything costs nothing either
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == reason
    assert peak < FEW_MB, f"{name}: {peak / MIB:.1f} MB"
    assert elapsed < FAST_S, f"{name}: {elapsed * 1e3:.0f} ms"
    assert pipeline.counters()["windows_classified"] == 0 and pipeline.windower.held_bytes == 0
    assert pipeline.windower.sensors() == ["warm"]  # the probe's sensor got no stream


def test_a_claim_that_skips_the_wire_is_refused_by_the_core_too():
    pipeline, _ = _pipeline()
    for rate in (1e8, float("inf"), float("nan"), 2_000_000.05):
        pipeline.on_chunk(SampleChunk("x", 0, START, rate, 60.0, np.ones(1, np.int16)))
    assert _rejections(pipeline) == {"bad_sample_rate": 3, "bad_rate": 1}  # NaN: the older "> 0" check
    assert pipeline.windower.sensors() == []  # no stream, no memory, for a refused claim


def test_the_admitted_range_comes_from_config():
    pipeline, _ = _pipeline(_settings(limits=dict(sample_rate_min_hz=1000.0, sample_rate_max_hz=100_000.0)))
    for seq, rate in enumerate((64.0, 500.0, 1000.0, 7680.0, 100_000.0, 200_000.0)):
        pipeline.on_chunk(SampleChunk(f"s{seq}", 0, START, rate, 60.0, np.ones(10, np.int16)))
    assert _rejections(pipeline) == {"bad_sample_rate": 3}
    assert sorted(pipeline.windower.sensors()) == ["s2", "s3", "s4"]


def test_a_listed_sensor_is_held_to_its_own_rate_even_outside_the_global_range():
    settings = _settings(limits=dict(sample_rate_max_hz=100_000.0,
                                     sensors={"hf": {"sample_rate_hz": 1_000_000.0, "power_freq_hz": 50.0}}))
    pipeline, _ = _pipeline(settings)
    pipeline.on_chunk(SampleChunk("hf", 0, START, 1_000_000.0, 50.0, np.ones(1000, np.int16)))  # its own: taken
    pipeline.on_chunk(SampleChunk("hf", 1, START + SECOND, 100_000.0, 50.0, np.ones(1000, np.int16)))  # not its own
    pipeline.on_chunk(SampleChunk("other", 0, START, 1_000_000.0, 50.0, np.ones(1000, np.int16)))  # above the range
    assert _rejections(pipeline) == {"rate_mismatch": 1, "bad_sample_rate": 1}
    assert pipeline.windower.held_bytes == 20_000_000 * 3  # one int16 window at 1 MHz, plus its mask


def test_a_listed_rate_whose_window_cannot_fit_the_budget_is_a_config_error(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[limits.sensors.gis-1]\nsample_rate_hz = 5000000.0\n")
    with pytest.raises(ConfigError, match=r"sensors\.gis-1\.sample_rate_hz.*max_window_bytes_per_sensor"):
        load_settings(path)
    path.write_text("[limits]\nmax_window_bytes_per_sensor = 314572800\n[limits.sensors.gis-1]\n"
                    "sample_rate_hz = 5000000.0\n")
    assert load_settings(path).limits.sensors["gis-1"].sample_rate_hz == 5e6
    with pytest.raises(ConfigError, match="sample_rate_max_hz"):
        load_settings(limits={"sample_rate_max_hz": 5e6})  # the global ceiling is checked the same way
    with pytest.raises(ConfigError, match="sample_rate_min_hz"):
        load_settings(limits={"sample_rate_min_hz": 10_000.0, "sample_rate_max_hz": 1000.0})


def _second(pipeline: Pipeline, clock: ManualClock, seq: int, second: int, rate: float, dtype=np.int16,
            power: float = 60.0, sensor: str = "s1") -> None:
    t0 = START + second * SECOND
    clock.set_ns(t0)
    pipeline.on_chunk(SampleChunk(sensor, seq, t0, rate, power, np.ones(int(rate), dtype)))


def test_a_stream_change_closes_the_old_stream_and_starts_a_new_one_once_a_minute():
    pipeline, clock = _pipeline(_settings(windowing=dict(reorder_tolerance_s=1.0)))
    for second in range(25):  # window 0 whole, window 1 up to 5 s
        _second(pipeline, clock, second, second, 7680.0)
    assert pipeline.counters()["windows_classified"] == 1
    _second(pipeline, clock, 25, 25, 76_800.0)  # the sensor was reconfigured: new stream
    counters = pipeline.counters()
    assert counters["streams_changed"] == 1 and counters["chunks_rejected"] == 0
    assert counters["windows_dropped"] == 1  # window 1 (5 s of 20) closed under the old stream, too partial
    assert counters["late_samples"] == 76_800  # the new stream starts with the next window (40 s)
    for second in range(26, 40):
        _second(pipeline, clock, second, second, 76_800.0)
    _second(pipeline, clock, 40, 40, 7680.0)  # and back within the minute: refused, the new stream carries on
    _second(pipeline, clock, 41, 40, 76_800.0)
    assert _rejections(pipeline) == {"stream_change_limit": 1}
    assert pipeline.windower.open_window_starts("s1") == [START + 2 * WINDOW_NS]
    _second(pipeline, clock, 42, 86, 7680.0, power=50.0)  # a minute later a change is taken again
    assert pipeline.counters()["streams_changed"] == 2 and _rejections(pipeline) == {"stream_change_limit": 1}


@pytest.mark.parametrize(("change", "kwargs"), [("dtype", dict(dtype=np.float32)), ("power", dict(power=50.0))])
def test_a_dtype_or_power_frequency_change_is_a_stream_change_too(change, kwargs):
    pipeline, clock = _pipeline(_settings(limits=dict(max_stream_changes_per_minute=0)))  # 0: never taken
    _second(pipeline, clock, 0, 0, 7680.0)
    _second(pipeline, clock, 1, 1, 7680.0, **kwargs)
    assert _rejections(pipeline) == {"stream_change_limit": 1}, change


def test_windows_keep_the_sensor_dtype_and_the_model_still_gets_float32():
    seen: list = []
    pipeline, clock = _pipeline(_settings(windowing=dict(reorder_tolerance_s=0.0)), seen)
    for second in range(21):
        _second(pipeline, clock, second, second, 76_800.0, sensor="fast")
        _second(pipeline, clock, second, second, 7680.0, sensor="native")
    assert pipeline.windower.held_bytes == 76_800 * 20 * 3 + 7680 * 20 * 3  # window 1 each, int16 + mask
    pipeline.flush()
    assert pipeline.counters()["windows_classified"] == 2 and set(seen) == {np.dtype(np.float32)}


def test_the_shared_budget_refuses_new_sensors_instead_of_growing():
    limits = dict(sample_rate_max_hz=500_000.0, max_window_bytes_per_sensor=32 * MIB, max_window_bytes_total=64 * MIB)
    pipeline, _ = _pipeline(_settings(limits=limits))
    tracemalloc.start()
    try:
        for k in range(50):  # 50 sensors claim the highest admitted rate with one sample each
            pipeline.on_chunk(SampleChunk(f"s{k}", 0, START, 500_000.0, 60.0, np.ones(1, np.int16)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _rejections(pipeline) == {"memory_budget": 48}  # 2 windows of 30 MB fit in 64 MiB
    assert pipeline.windower.held_bytes == 2 * 30_000_000
    assert peak < 64 * MIB + FEW_MB


# ------------------------------------------------------------------ property: never above the configured bytes

RATES = st.integers(1, 80_000).map(lambda n: n / 4)  # 0.25 .. 20,000 Hz, exact in binary: whole samples per window
DTYPES = st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])


@st.composite
def chunk_plans(draw):
    return [
        (draw(st.sampled_from("abc")), draw(RATES), draw(st.sampled_from([50.0, 60.0])), draw(DTYPES),
         draw(st.integers(0, 5)), draw(st.floats(0, 0.999)), draw(st.integers(1, 30_000)), draw(st.floats(0, 90)))
        for _ in range(draw(st.integers(1, 25)))
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=chunk_plans(), per_sensor_mib=st.sampled_from([1, 2, 4]), total_mib=st.sampled_from([1, 4, 8]),
       max_open=st.integers(1, 4), changes=st.integers(0, 2))
def test_the_windower_never_holds_more_than_the_configured_bytes(plan, per_sensor_mib, total_mib, max_open, changes):
    per_sensor = min(per_sensor_mib, total_mib) * MIB
    limits = LimitsSection(sample_rate_max_hz=10_000.0, max_window_bytes_per_sensor=per_sensor,
                           max_window_bytes_total=total_mib * MIB, max_stream_changes_per_minute=changes)
    clock = ManualClock(START)
    windower = Windower(WindowingSection(max_open_windows=max_open, max_missing_fraction=1.0), clock, limits)
    for seq, (sensor, rate, power, dtype, window, offset, count, advance_s) in enumerate(plan):
        clock.advance(advance_s)
        t0 = START + window * WINDOW_NS + int(offset * WINDOW_NS)
        try:
            closed = windower.add(SampleChunk(sensor, seq, t0, rate, power, np.ones(count, dtype)))
        except SensorStreamError as error:
            assert error.reason in {"window_too_large", "memory_budget", "chunk_too_long", "stream_change_limit"}
            closed = []
        assert len(closed) <= 2 * max_open  # a changed stream's windows, then its own
        closed += windower.close_idle()
        held = {s: [w.samples.nbytes + w.present.nbytes for w in stream.open_windows.values()]
                for s, stream in windower._streams.items()}
        assert sum(map(sum, held.values())) == windower.held_bytes <= total_mib * MIB
        assert all(sum(sizes) <= per_sensor and len(sizes) <= max_open for sizes in held.values())
    windower.close_all()
    assert windower.held_bytes == 0


def test_a_closed_window_waiting_for_its_frame_keeps_no_sensor_rate_samples():
    """The 40 MB of a 1 MHz window leave the window budget when it closes; they must leave memory too."""
    rate = 1_000_000.0
    settings = _settings(pairing=dict(grace_s=30.0, missing_policy="signal_only"),
                         windowing=dict(reorder_tolerance_s=1.0), limits=dict(sample_rate_max_hz=2e6))
    pipeline, clock = _pipeline(settings)
    for second in range(22):  # window 0 whole (it closes by watermark), nothing of its frame
        _second(pipeline, clock, second, second, rate)
    waiting = [entry.ready for sensor in pipeline.pairer._sensors.values() for entry in sensor.pending]
    assert len(waiting) == 1 and pipeline.counters()["windows_classified"] == 0  # held for its frame
    assert waiting[0].window.samples.nbytes == 0 and waiting[0].signal.shape == (20, 7680)
