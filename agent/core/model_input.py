"""Turn a closed window into what the model takes: (20, 7680) samples at the model's rate."""

from __future__ import annotations

import numpy as np

from agent.core.windowing import ClosedWindow
from mad.constants import ROW_SAMPLES, WINDOW_ROWS, WINDOW_SAMPLES
from mad.data.resample import peak_hold_resample


def to_model_signal(window: ClosedWindow) -> np.ndarray:
    """(20, 7680) float32. A sensor at another rate is brought to 7,680 Hz over the same 20 s by
    `peak_hold_resample` (the one resampler: `mad-agent record --rate` uses it too), which keeps every
    pulse at its amplitude within one output sample; interpolation would drop most of them."""
    samples = window.samples
    if samples.shape[0] != WINDOW_SAMPLES:
        samples = peak_hold_resample(samples, WINDOW_SAMPLES)
    return samples.reshape(WINDOW_ROWS, ROW_SAMPLES)
