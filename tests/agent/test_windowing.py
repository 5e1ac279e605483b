"""Windowing: every sample lands in exactly one closed window, gaps/late/duplicates counted exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.clock import ManualClock
from agent.core.types import SampleChunk
from agent.core.windowing import WINDOW_NS, SensorStreamError, Windower
from agent.settings import WindowingSection

RATE = 64  # windowing is rate-generic; a small rate keeps property tests fast
N = RATE * 20
NS_PER_SAMPLE = 1_000_000_000 // RATE  # 15,625,000 ns: exact at 64 Hz
BASE_WINDOW = 86_400 * 1_000_000_000 // WINDOW_NS * 3  # some epoch-aligned window number


def make_chunk(start: int, values: np.ndarray, seq: int, sensor: str = "s1", rate: float = RATE) -> SampleChunk:
    return SampleChunk(sensor, seq, BASE_WINDOW * WINDOW_NS + start * NS_PER_SAMPLE, rate, 60.0, values)


def windower(**overrides) -> tuple[Windower, ManualClock]:
    config = dict(reorder_tolerance_s=8.0, gap_policy="fill", max_missing_fraction=1.0, max_open_windows=3)
    config.update(overrides)
    clock = ManualClock()
    return Windower(WindowingSection(**config), clock), clock


@st.composite
def streams(draw):
    total = draw(st.integers(N + 1, 4 * N))
    offset = draw(st.integers(0, N - 1))  # the stream may start mid-window
    cuts = sorted(set(draw(st.lists(st.integers(1, total - 1), max_size=60))))
    bounds = [0, *cuts, total]
    # chunks longer than 200 samples are split so reordering stays within the tolerance
    chunks = []
    for a, b in itertools.pairwise(bounds):
        chunks += [(offset + s, min(200, b - s)) for s in range(a, b, 200)]
    dropped = draw(st.sets(st.integers(0, len(chunks) - 1), max_size=len(chunks) // 3))
    duplicated = draw(st.sets(st.integers(0, len(chunks) - 1), max_size=5))
    jitter = draw(st.lists(st.integers(0, 300), min_size=len(chunks), max_size=len(chunks)))
    return chunks, dropped, duplicated, jitter


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_every_sample_lands_once_and_gaps_are_exact(stream):
    chunks, dropped, duplicated, jitter = stream
    w, _ = windower()
    # arrival order: start + jitter, so reordering stays within the tolerance (jitter + chunk <= 512 samples)
    arrivals = []
    for i, (start, _) in enumerate(chunks):
        if i in dropped:
            continue
        arrivals.append((start + jitter[i], i))
        if i in duplicated:
            arrivals.append((start + jitter[i] + 1, i))
    arrivals.sort()
    closed = []
    for _, i in arrivals:
        start, length = chunks[i]
        closed += w.add(make_chunk(start, np.arange(start, start + length, dtype=np.int32), seq=i))
    closed += w.close_all()

    present = np.zeros((4 + 1) * N + N, bool)
    for i, (start, length) in enumerate(chunks):
        if i not in dropped:
            present[start : start + length] = True
    touched = {start // N for i, (start, _) in enumerate(chunks) if i not in dropped} | {
        (start + length - 1) // N for i, (start, length) in enumerate(chunks) if i not in dropped
    }
    assert [c.window_start_ns for c in closed] == [(BASE_WINDOW + k) * WINDOW_NS for k in sorted(touched)]
    expected_missing = expected_runs = 0
    for window in closed:
        k = window.window_start_ns // WINDOW_NS - BASE_WINDOW
        mask = present[k * N : (k + 1) * N]
        expected = np.arange(k * N, (k + 1) * N)
        np.testing.assert_array_equal(window.samples[mask], expected[mask])
        assert window.missing_samples == int((~mask).sum())
        runs = int((~mask)[0]) + int(np.count_nonzero(~mask[1:] & mask[:-1]))
        assert window.gap_runs == runs
        expected_missing += window.missing_samples
        expected_runs += runs
    assert w.counters.late_samples == 0
    assert w.counters.duplicate_chunks == len(duplicated - dropped)
    assert w.counters.gap_samples == expected_missing
    assert w.counters.gap_runs == expected_runs
    assert w.counters.windows_closed == len(closed)


def test_window_closes_on_watermark_and_late_data_is_counted():
    w, _ = windower(reorder_tolerance_s=1.0)
    assert w.add(make_chunk(0, np.ones(N, np.int16), seq=0)) == []  # watermark short of the window end
    closed = w.add(make_chunk(N, np.ones(RATE, np.int16), seq=1))  # 1 s past the end: closes
    assert [c.window_start_ns for c in closed] == [BASE_WINDOW * WINDOW_NS]
    assert closed[0].missing_samples == 0
    w.add(make_chunk(N - 10, np.ones(30, np.int16), seq=2))  # 10 samples belong to the closed window
    assert w.counters.late_samples == 10
    assert w.open_window_starts("s1") == [(BASE_WINDOW + 1) * WINDOW_NS]


def test_silent_sensor_closes_on_idle_timer():
    w, clock = windower(idle_close_s=30.0)
    w.add(make_chunk(0, np.ones(N // 2, np.int16), seq=0))
    clock.advance(29.9)
    assert w.close_idle() == []
    clock.advance(0.1)
    [window] = w.close_idle()
    assert window.missing_samples == N // 2 and window.gap_runs == 1


def test_drop_policy_drops_windows_with_gaps():
    w, _ = windower(gap_policy="drop")
    w.add(make_chunk(0, np.ones(N - 1, np.int16), seq=0))
    assert w.close_all() == []
    assert w.counters.windows_dropped == 1 and w.counters.gap_samples == 1


def test_fill_policy_fills_with_median_up_to_the_missing_fraction():
    w, _ = windower(max_missing_fraction=0.01)
    values = np.full(N - 5, 7, np.int16)
    values[:3] = 1000
    w.add(make_chunk(5, values, seq=0))
    [window] = w.close_all()
    assert window.missing_samples == 5 and np.all(window.samples[:5] == 7)
    w.add(make_chunk(N + N // 2, np.ones(N // 2, np.int16), seq=1))  # half missing > 1 %: dropped
    assert w.close_all() == [] and w.counters.windows_dropped == 1


def test_rate_change_starts_a_new_stream_at_most_once_a_minute_for_that_sensor_only():
    # Issue 15: a change of rate is a new stream (counted), not an error until restart; flapping is refused.
    w, clock = windower()
    w.add(make_chunk(0, np.ones(10, np.int16), seq=0))
    [old] = w.add(make_chunk(10, np.ones(10, np.int16), seq=1, rate=128))  # the first change is taken:
    assert old.sample_rate_hz == RATE and old.missing_samples == N - 10  # the old stream's window closes,
    assert w.counters.streams_changed == 1 and w.counters.late_samples == 10  # the new one starts with the next
    with pytest.raises(SensorStreamError, match="sample_rate_hz 128 -> 64") as info:
        w.add(make_chunk(20, np.ones(10, np.int16), seq=2))  # back again within the minute: refused
    assert info.value.reason == "stream_change_limit"
    w.add(make_chunk(0, np.ones(10, np.int16), seq=0, sensor="s2", rate=64))  # s2 is not affected
    clock.advance(60.0)
    w.add(make_chunk(N, np.ones(10, np.int16), seq=3))  # a minute later the change is taken again
    assert w.open_window_starts("s1") == [(BASE_WINDOW + 1) * WINDOW_NS]
    assert w.counters.rejected_chunks == 1 and w.counters.streams_changed == 2
    assert sorted(w.sensors()) == ["s1", "s2"]


def test_rate_with_fractional_window_is_rejected():
    w, _ = windower()
    with pytest.raises(SensorStreamError, match="non-integer"):
        w.add(make_chunk(0, np.ones(10, np.int16), seq=0, rate=64.01))


def test_open_window_cap_bounds_memory():
    w, _ = windower(reorder_tolerance_s=1000.0, max_open_windows=2)
    for k in range(4):
        w.add(make_chunk(k * N, np.ones(N, np.int16), seq=k))
    assert len(w.open_window_starts("s1")) == 2
    assert w.counters.windows_forced == 2 and w.counters.windows_closed == 2


def test_chunk_spanning_several_windows_is_split_by_slice():
    w, _ = windower(reorder_tolerance_s=0.0)
    closed = w.add(make_chunk(0, np.arange(3 * N, dtype=np.int32), seq=0))
    assert len(closed) == 3
    np.testing.assert_array_equal(closed[2].samples, np.arange(2 * N, 3 * N))


def test_sample_index_uses_rounding_of_timestamp():
    w, _ = windower(reorder_tolerance_s=0.0)
    jittered = SampleChunk(
        "s1",
        0,
        BASE_WINDOW * WINDOW_NS + NS_PER_SAMPLE * 3 + NS_PER_SAMPLE // 3,
        RATE,
        60.0,
        np.arange(N - 3, dtype=np.int32),
    )
    [window] = w.add(jittered)
    assert window.missing_samples == 3
    np.testing.assert_array_equal(window.samples[3:], np.arange(N - 3))
