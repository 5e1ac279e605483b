"""peak_hold_resample: pulses keep their count, time (within one output sample), amplitude and sign at any
rate; the noise floor keeps its statistics; bad input is refused naming the argument."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mad.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from mad.data.highrate import generate_window_at_rate, samples_at_rate, series_at_rate
from mad.data.prpd import detect_pulses, noise_floor
from mad.data.resample import peak_hold_resample
from mad.data.synthetic import CORONA, generate_window_events

BASELINE, SIGMA = 30.0, 5.0


def floor_with_pulses(n: int, n_pulses: int, seed: int, amplitude=(10.0, 60.0), negative_share: float = 0.0):
    """int16 Gaussian floor with single-sample pulses at well separated random positions (> 3 model samples
    apart at any rate here); returns (series, pulse index, signed pulse height in sigmas)."""
    rng = np.random.default_rng(seed)
    series = BASELINE + SIGMA * rng.standard_normal(n)
    spacing = n // n_pulses
    index = np.arange(n_pulses) * spacing + rng.integers(0, spacing // 2, n_pulses)
    height = rng.uniform(*amplitude, n_pulses) * np.where(rng.random(n_pulses) < negative_share, -1, 1)
    series[index] = BASELINE + SIGMA * height  # the pulse sample replaces the floor there
    return np.rint(series).astype(np.int16), index, height


def reference(samples: np.ndarray, n_out: int, threshold_sigma: float = 5.0) -> np.ndarray:
    """The method written as a per-bin loop (the definition the vectorised code must match)."""
    x = samples.astype(np.float64)
    starts = [-(-k * x.size // n_out) for k in range(n_out)] + [x.size]  # ceil: by sampling time
    first = x[starts[:-1]]
    baseline = float(np.median(first))
    spread = max(1.4826 * float(np.median(np.abs(first - baseline))), 1e-3)
    out = []
    for k in range(n_out):
        block = x[starts[k]:starts[k + 1]]
        hi, lo = block.max(), block.min()
        peak = hi if hi - baseline >= baseline - lo else lo
        out.append(peak if abs(peak - baseline) > threshold_sigma * spread else block[0])
    return np.array(out, np.float32)


@pytest.mark.parametrize("rate", [15_360, 76_800, 1_000_000])
def test_every_pulse_kept_with_its_amplitude_within_one_output_sample(rate: int):
    n_in = samples_at_rate(rate)
    series, index, height = floor_with_pulses(n_in, 400, seed=rate, negative_share=0.3)
    out = peak_hold_resample(series, WINDOW_SAMPLES)
    assert out.shape == (WINDOW_SAMPLES,) and out.dtype == np.float32

    expected = index * WINDOW_SAMPLES // n_in  # the output sample whose 1/7680 s holds the pulse
    found = np.flatnonzero(np.abs(out - BASELINE) > 8 * SIGMA)
    np.testing.assert_array_equal(found, expected)  # same count, each in its own output sample
    np.testing.assert_array_equal(out[expected], series[index])  # the pulse sample itself: amplitude and sign
    assert (out[expected][height < 0] < BASELINE - 8 * SIGMA).all()  # negative-going pulses stay negative
    # Phase (60 Hz) within one output sample (2.8 deg) of the true time.
    true_s, shown_s = index / rate, expected / SAMPLE_RATE_HZ
    assert np.all((true_s - shown_s >= 0) & (true_s - shown_s < 1 / SAMPLE_RATE_HZ))


@pytest.mark.parametrize("rate", [15_360, 76_800, 1_000_000])
def test_the_floor_keeps_its_median_and_spread(rate: int):
    """Plain peak hold would not: the largest of m Gaussian deviations is ~1.8 sigma at m = 10 and 2.8 at 130."""
    series, _, _ = floor_with_pulses(samples_at_rate(rate), 400, seed=1)
    baseline, sigma = noise_floor(peak_hold_resample(series, WINDOW_SAMPLES))
    assert (baseline, sigma) == noise_floor(series)  # MAD of the rounded floor: 3 counts, sigma 4.45


@pytest.mark.parametrize("n_in,n_out", [(1_000, 77), (997, 100), (1_536, 768), (10_000, 7_680 // 4), (50, 50)])
def test_matches_the_per_bin_definition_for_integer_and_non_integer_ratios(n_in: int, n_out: int):
    series, _, _ = floor_with_pulses(n_in, 5, seed=n_in, negative_share=0.5)
    np.testing.assert_array_equal(peak_hold_resample(series, n_out), reference(series, n_out))


def test_non_integer_ratio_keeps_pulses_at_10_khz():
    n_in = samples_at_rate(10_000)  # 1.302 input samples per output sample: bins of 1 and 2 samples
    series, index, _ = floor_with_pulses(n_in, 300, seed=3)
    out = peak_hold_resample(series, WINDOW_SAMPLES)
    found = np.flatnonzero(np.abs(out - BASELINE) > 8 * SIGMA)
    np.testing.assert_array_equal(found, index * WINDOW_SAMPLES // n_in)


def test_upsampling_is_a_zero_order_hold_keeping_amplitude():
    series, _, _ = floor_with_pulses(samples_at_rate(3_840), 50, seed=4)
    out = peak_hold_resample(series, WINDOW_SAMPLES)
    np.testing.assert_array_equal(out, np.repeat(series, 2))  # 2x: every sample held for two
    odd = peak_hold_resample(series[:1000], 1_337)  # non-integer: output j holds input floor(j 1000 / 1337)
    np.testing.assert_array_equal(odd, series[np.arange(1_337) * 1000 // 1_337])
    assert out.max() == series.max()


def test_same_length_is_a_float32_copy():
    series = np.arange(10, dtype=np.int16)
    out = peak_hold_resample(series, 10)
    assert out.dtype == np.float32 and np.shares_memory(out, series) is False
    np.testing.assert_array_equal(out, series)


def test_integer_counts_stay_integer_and_float_sensors_in_volts_keep_their_pulses():
    series, index, _ = floor_with_pulses(samples_at_rate(76_800), 100, seed=5)
    out = peak_hold_resample(series, WINDOW_SAMPLES)
    assert np.array_equal(out, np.rint(out))  # every output is an input sample: int16 storage is lossless
    volts = (series.astype(np.float32) - BASELINE) * 2e-4  # floor sigma 1 mV: under noise_floor's 0.5 floor
    out_v = peak_hold_resample(volts, WINDOW_SAMPLES)
    found = np.flatnonzero(np.abs(out_v) > 8 * SIGMA * 2e-4)
    np.testing.assert_array_equal(found, index * WINDOW_SAMPLES // volts.size)


def test_generator_corona_pulses_survive_at_1_mhz_as_at_7680():
    """The generator's Corona window: the detector finds as many pulses after 1 MHz + resampling as at 7,680 Hz."""
    window, series = generate_window_at_rate("standard", 0, 0, 1_000_000, label=CORONA)
    native = detect_pulses(window.series)[0].size
    resampled = detect_pulses(peak_hold_resample(series, WINDOW_SAMPLES))[0].size
    assert native > 100 and abs(resampled - native) <= 0.05 * native
    stepped = np.interp(np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES, np.arange(series.size) / series.size, series)
    assert detect_pulses(stepped)[0].size < 0.05 * native  # what linear interpolation left of them


def test_highrate_series_places_each_pulse_at_its_true_sample():
    """mad.data.highrate: the generator's events at floor(time_s x rate) on the same floor, not a copy of the
    7,680 Hz samples."""
    window, events = generate_window_events("standard", 0, 0, label=CORONA)
    sensor = window.params["sensor"]
    fast = series_at_rate(window, events, 76_800)
    assert fast.shape == (10 * WINDOW_SAMPLES,) and fast.dtype == np.int16
    assert np.array_equal(fast, series_at_rate(window, events, 76_800))  # a pure function of its arguments
    baseline, sigma = noise_floor(fast)  # the floor of the 7,680 Hz window (a MAD in whole counts, 4 here)
    assert abs(baseline - sensor["baseline"]) < 1 and sigma == noise_floor(window.series)[1]
    big = events.magnitude > 10 * sensor["noise_sigma"]
    shown = fast[(events.time_s[big] * 76_800).astype(np.int64)] - sensor["baseline"]
    assert big.sum() > 100 and np.all(shown > events.magnitude[big] - 6 * sensor["noise_sigma"])
    assert np.mean(fast[1:] == fast[:-1]) < 0.2  # a Gaussian floor, not each 7,680 Hz sample held 10 times


def test_twenty_million_samples_in_well_under_a_second():
    """1 MHz x 20 s, float32 as the agent's window buffer holds it."""
    series = np.random.default_rng(6).normal(30, 5, 20_000_000).astype(np.float32)
    series[::1000] = 200
    peak_hold_resample(series[:100_000], 1_000)  # warm up
    started = time.perf_counter()
    out = peak_hold_resample(series, WINDOW_SAMPLES)
    assert time.perf_counter() - started < 1.0  # ~40 ms on one core; np.interp takes ~1.3 s
    assert np.count_nonzero(out == 200) == 20_000


@pytest.mark.parametrize(
    "samples,n_out,match",
    [
        (np.zeros(10), 0, "n_out must be a positive integer, got 0"),
        (np.zeros(10), -3, "n_out must be a positive integer, got -3"),
        (np.zeros(10), 2.5, "n_out must be a positive integer, got 2.5"),
        (np.zeros(10), True, "n_out must be a positive integer, got True"),
        (np.zeros((2, 5)), 3, r"samples must be a non-empty 1-D array, got shape \(2, 5\)"),
        (np.zeros(0), 3, r"samples must be a non-empty 1-D array, got shape \(0,\)"),
        (np.array([1.0, np.nan, np.inf]), 2, "samples must be finite, got 2 NaN/inf value"),
        (np.zeros(4, np.complex64), 2, "samples must be real integers or floats, got dtype complex64"),
        (np.array(["a", "b"]), 1, "samples must be real integers or floats"),
    ],
)
def test_bad_input_names_the_argument_and_the_value(samples, n_out, match):
    with pytest.raises(ValueError, match=match):
        peak_hold_resample(samples, n_out)


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold_sigma must be a finite number > 0"):
        peak_hold_resample(np.zeros(10), 5, threshold_sigma=threshold)
