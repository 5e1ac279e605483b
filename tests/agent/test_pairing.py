"""Pairing: frame on time, late within grace, missing -> degraded (both policies), order kept."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.clock import ManualClock
from agent.core.pairing import Pairer, ReadyWindow
from agent.core.types import PrpdFrame
from agent.core.windowing import WINDOW_NS, ClosedWindow
from agent.settings import PairingSection

START = 90_000 * WINDOW_NS
IMAGE = np.full((256, 256, 3), 7, np.uint8)


def ready(k: int, sensor: str = "s1") -> ReadyWindow:
    window = ClosedWindow(sensor, START + k * WINDOW_NS, 64.0, 60.0, np.zeros(1280, np.float32), 0, 0)
    return ReadyWindow(window, np.zeros((20, 7680), np.float32), 0.0)


def frame(k: int, offset_ns: int = 0, sensor: str = "s1") -> PrpdFrame:
    return PrpdFrame(sensor, START + k * WINDOW_NS + offset_ns, IMAGE)


def pairer(**overrides) -> tuple[Pairer, ManualClock, list]:
    rendered = []

    def renderer(series, rate, power_freq):
        rendered.append((series.shape, rate, power_freq))
        return np.full((256, 256, 3), 1, np.uint8)

    config = dict(tolerance_s=0.5, grace_s=5.0, missing_policy="render")
    config.update(overrides)
    clock = ManualClock()
    return Pairer(PairingSection(**config), clock, renderer), clock, rendered


def test_frame_on_time_pairs_immediately():
    p, _, _ = pairer()
    assert p.add_frame(frame(0, offset_ns=300_000_000)) == []  # early frame waits, within tolerance
    [out] = p.add_window(ready(0))
    assert out.image is IMAGE and out.degraded_reasons == ()


def test_frame_outside_tolerance_does_not_pair():
    p, clock, _ = pairer()
    p.add_frame(frame(0, offset_ns=600_000_000))
    assert p.add_window(ready(0)) == []
    clock.advance(5.0)
    [out] = p.expire()
    assert out.image is not IMAGE and out.degraded_reasons == ("prpd_missing:rendered",)


def test_late_frame_within_grace_pairs():
    p, clock, _ = pairer()
    assert p.add_window(ready(0)) == []
    clock.advance(4.9)
    assert p.expire() == []
    [out] = p.add_frame(frame(0))
    assert out.image is IMAGE and p.counters.frames_paired == 1


def test_missing_frame_rendered_after_grace_is_degraded():
    p, clock, rendered = pairer()
    p.add_window(ready(0))
    clock.advance(5.0)
    [out] = p.expire()
    assert out.degraded_reasons == ("prpd_missing:rendered",) and out.image is not None
    assert rendered == [((20, 7680), 7680.0, 60.0)]
    assert p.add_frame(frame(0)) == [] and p.counters.frames_orphaned == 1  # too late now


def test_missing_frame_signal_only_policy():
    p, clock, rendered = pairer(missing_policy="signal_only")
    p.add_window(ready(0))
    clock.advance(5.0)
    [out] = p.expire()
    assert out.image is None and out.degraded_reasons == ("prpd_missing:signal_only",) and rendered == []


def test_render_failure_falls_back_to_signal_only():
    def broken(*_):
        raise RuntimeError("boom")

    p = Pairer(PairingSection(grace_s=0.0), ManualClock(), broken)
    [out] = p.add_window(ready(0))
    assert out.image is None and out.degraded_reasons == ("prpd_missing:render_failed",)


def test_windows_leave_in_order_per_sensor():
    p, clock, _ = pairer()
    p.add_window(ready(0))
    p.add_window(ready(1))
    assert p.add_frame(frame(1)) == []  # window 1 waits behind window 0
    assert p.add_window(ready(0, sensor="s2")) == []  # other sensors are independent
    clock.advance(5.0)
    out = p.expire()
    assert [(r.window.sensor_id, r.window.window_start_ns) for r in out] == [
        ("s1", START),
        ("s1", START + WINDOW_NS),
        ("s2", START),
    ]
    assert out[1].image is IMAGE


@pytest.mark.parametrize("count", [5, 9])
def test_early_frames_are_bounded(count):
    p, _, _ = pairer(max_frames_per_sensor=4)
    for k in range(count):
        p.add_frame(frame(k + 1))
    assert p.counters.frames_orphaned == count - 4
