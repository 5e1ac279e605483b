"""Turn a closed window into what the model takes: (20, 7680) samples at the model's rate."""

from __future__ import annotations

import numpy as np

from agent.core.windowing import ClosedWindow
from mad.constants import ROW_SAMPLES, WINDOW_ROWS, WINDOW_SAMPLES


def to_model_signal(window: ClosedWindow) -> np.ndarray:
    """(20, 7680) float32; a sensor at another rate is linearly resampled over the same 20 s."""
    samples = window.samples
    if samples.shape[0] != WINDOW_SAMPLES:
        # Both grids span the window; sample k sits at k / rate seconds from its start.
        source_t = np.arange(samples.shape[0], dtype=np.float64) / samples.shape[0]
        target_t = np.arange(WINDOW_SAMPLES, dtype=np.float64) / WINDOW_SAMPLES
        samples = np.interp(target_t, source_t, samples).astype(np.float32)
    return samples.reshape(WINDOW_ROWS, ROW_SAMPLES)
