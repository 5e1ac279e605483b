"""The synthetic generator's windows re-synthesised at any sample rate (off-rate sensors, for tests and docs).

`mad.data.synthetic` builds a 7,680 Hz series from pulse events: baseline + a slow per-second wander +
a Gaussian floor + single-sample peaks (with a tail in the next sample) + ADC dropouts. A real sensor at
76.8 kHz or 1 MHz sees the same events, but each pulse lands on the sample that holds its true time,
`floor(time_s * rate)`, not on the 7,680 Hz grid. `series_at_rate` rebuilds a window that way from its
`PulseEvents` and the sensor's parameters (`window.params["sensor"]`): same baseline and per-sample
noise sigma, same pulse magnitudes and tail fraction, int16 like the ADC. Only the noise draw differs
(a window at another rate cannot share the 7,680 Hz samples); it is seeded from the window's identity
and the rate, so a call is a pure function of its arguments.
"""

from __future__ import annotations

import numpy as np

from mad.constants import SAMPLE_RATE_HZ, WINDOW_ROWS, WINDOW_SECONDS
from mad.data.synthetic import ADC_MAX, PulseEvents, SyntheticWindow, generate_window_events

_HIGHRATE_DOMAIN = 0x4852  # separates these noise draws from the generator's own seeds


def samples_at_rate(sample_rate_hz: float) -> int:
    """Samples in one 20 s window at `sample_rate_hz`; the rate must give a whole number of them."""
    n = float(sample_rate_hz) * WINDOW_SECONDS
    if not np.isfinite(n) or n < 1 or n != round(n):
        raise ValueError(f"sample_rate_hz={sample_rate_hz!r} must be > 0 and give a whole number of samples "
                         f"per {WINDOW_SECONDS} s window")
    return round(n)


def _noise_rng(window: SyntheticWindow, n: int, noise_seed: int) -> np.random.Generator:
    identity = [int(window.params.get(key, 0)) for key in ("seed", "index", "sensor_index", "window_index", "label")]
    return np.random.default_rng(np.random.SeedSequence([_HIGHRATE_DOMAIN, noise_seed, n, *identity]))


def series_at_rate(
    window: SyntheticWindow, events: PulseEvents, sample_rate_hz: float, *, noise_seed: int = 0
) -> np.ndarray:
    """(20 * rate,) int16: `window` as a sensor at `sample_rate_hz` would have sampled it.

    Pulse k sits at sample floor(events.time_s[k] * rate) with its magnitude over the floor and its tail
    (`tail_fraction` x magnitude) in the next sample, as the generator does at 7,680 Hz. An ADC dropout
    lasts one 7,680 Hz sample period (130 us) at any rate: the same event, seen by a faster ADC.
    """
    sensor = window.params["sensor"]
    n = samples_at_rate(sample_rate_hz)
    rate = n / WINDOW_SECONDS
    sigma, baseline = float(sensor["noise_sigma"]), float(sensor["baseline"])
    rng = _noise_rng(window, n, noise_seed)

    signal = rng.standard_normal(n, dtype=np.float32)
    signal *= np.float32(sigma)
    wander = np.float32(baseline) + rng.normal(0, 0.06 * sigma, WINDOW_ROWS).astype(np.float32)
    rows = (np.arange(WINDOW_ROWS + 1) * n) // WINDOW_ROWS  # the generator's wander: one offset per 1 s row
    for row in range(WINDOW_ROWS):
        signal[rows[row]:rows[row + 1]] += wander[row]

    index = np.minimum((events.time_s * rate).astype(np.int64), n - 1)
    magnitude = events.magnitude.astype(np.float32)
    peaks = np.zeros(n + 1, np.float32)
    np.maximum.at(peaks, index, magnitude)  # coincident pulses: the larger one, as at 7,680 Hz
    np.maximum.at(peaks, index + 1, magnitude * np.float32(sensor["tail_fraction"]))
    signal += peaks[:n]

    if sensor["glitches"]:
        span = max(1, round(rate / SAMPLE_RATE_HZ))
        starts = rng.integers(0, n - span + 1, int(sensor["glitches"]))
        where = (starts[:, None] + np.arange(span)).reshape(-1)
        signal[where] = np.repeat(rng.uniform(0, 10, starts.size), span).astype(np.float32)
    np.rint(signal, out=signal)
    np.clip(signal, 0, ADC_MAX, out=signal)
    return signal.astype(np.int16)


def generate_window_at_rate(
    preset: str, seed: int, index: int, sample_rate_hz: float, *, label: int | None = None
) -> tuple[SyntheticWindow, np.ndarray]:
    """The generator's window (preset, seed, index) and its series at `sample_rate_hz` (see series_at_rate)."""
    window, events = generate_window_events(preset, seed, index, label=label)
    return window, series_at_rate(window, events, sample_rate_hz)
