"""Plain data that crosses the core's boundary: what a source (MQTT or a recording) hands in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SampleChunk:
    """A run of consecutive PD samples from one sensor, as decoded from the wire or a recording."""

    sensor_id: str
    seq: int  # sensor-local sequence number (monotonic per sensor; used for duplicate detection)
    t0_ns: int  # UTC time of samples[0], nanoseconds since the epoch
    sample_rate_hz: float
    power_freq_hz: float
    samples: np.ndarray  # (n,) integer ADC counts

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])


@dataclass(frozen=True, slots=True)
class PrpdFrame:
    """A PRPD image for the window that starts at `window_start_ns`.

    `source` says where the image came from: "image" (the sensor drew it) or "matrix" (the sensor sent a
    count matrix and the agent drew it in the project's own style), so counters can tell the paths apart.
    """

    sensor_id: str
    window_start_ns: int  # UTC ns; the frame covers [window_start_ns, window_start_ns + 20 s)
    image: np.ndarray  # (256, 256, 3) uint8 RGB
    source: str = "image"
