"""Phase-resolved PD (PRPD) images: one convention, used by the generator and by the agent.

Convention (see docs/formats.md):
- image (256, 256, 3) uint8, row 0 at the top;
- x: phase 0-360 deg left to right, 256 columns of 1.40625 deg; phase 0 is the first sample of
  the window (the series carries no phase reference, so the renderer assumes the recording
  starts at a positive-going zero crossing; a sensor offset shows up as a horizontal shift);
- y: pulse magnitude above the window's baseline, bottom to top, linear, PER-WINDOW scale: the top
  row is 1.1 x the largest pulse, never less than `MIN_FULL_SCALE_SIGMA` (50) noise sigmas, so sensor
  gain does not move patterns while a quiet window stays near the bottom;
- colour: black background, pulse counts per cell (normalised to pulses per 1,200 cycles, the
  20 s of a 60 Hz window) on a log scale through a jet-like map (blue = one pulse, red = dense);
- a grey sine (the supply voltage in the assumed reference) is drawn under the pulses.
"""

from __future__ import annotations

import numpy as np

from mad.constants import DEFAULT_POWER_FREQ_HZ, IMAGE_SIZE, SAMPLE_RATE_HZ, WINDOW_SECONDS

DETECT_THRESHOLD_SIGMA = 5.0  # Gaussian floor: P(>5 sigma) x 153,600 samples ~ 0.04 false pulses per window
MIN_FULL_SCALE_SIGMA = 50.0
FULL_SCALE_HEADROOM = 1.1
REFERENCE_CYCLES = 1_200  # counts are normalised to this many cycles (20 s at 60 Hz)
COUNT_AT_TOP_COLOUR = 200.0  # a cell with this many pulses per REFERENCE_CYCLES gets the hottest colour
SINE_GREY = 70


def _jet_lut() -> np.ndarray:
    """256 RGB entries; entry 0 is the background (black), 1..255 go blue -> cyan -> yellow -> red."""
    x = np.linspace(0.0, 1.0, 255)
    red = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0, 1)
    green = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0, 1)
    blue = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0, 1)
    blue[: len(x) // 8] = np.maximum(blue[: len(x) // 8], 0.6)  # one-pulse cells must stay visible on black
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[1:] = np.round(np.stack([red, green, blue], axis=1) * 255).astype(np.uint8)
    return lut


COLOUR_LUT = _jet_lut()


def _sine_mask() -> np.ndarray:
    cols = np.arange(IMAGE_SIZE)
    phase = (cols + 0.5) / IMAGE_SIZE * 2 * np.pi
    rows = np.round((IMAGE_SIZE - 1) / 2 * (1 - 0.9 * np.sin(phase))).astype(np.int64)
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    mask[rows, cols] = True
    mask[np.clip(rows + 1, 0, IMAGE_SIZE - 1), cols] = True  # 2 px thick so it survives resizing
    return mask


SINE_MASK = _sine_mask()


def noise_floor(series: np.ndarray) -> tuple[float, float]:
    """Robust (baseline, sigma) of a window: median and 1.4826 x MAD, sigma floored at 0.5 count."""
    flat = np.asarray(series).reshape(-1)
    baseline = float(np.median(flat))
    mad = float(np.median(np.abs(flat - baseline)))
    return baseline, max(1.4826 * mad, 0.5)


def detect_pulses(
    series: np.ndarray, threshold_sigma: float = DETECT_THRESHOLD_SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """Pulses = local maxima more than `threshold_sigma` robust sigmas above the median.

    Returns (sample index into the flattened series, magnitude above baseline in counts).
    A pulse's tail in the next sample is not counted twice (strict local maximum on the right).
    """
    flat = np.asarray(series).reshape(-1).astype(np.float32)
    if flat.size < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    baseline, sigma = noise_floor(flat)
    above = flat - baseline
    candidate = above > threshold_sigma * sigma
    candidate[1:] &= above[1:] >= above[:-1]
    candidate[:-1] &= above[:-1] > above[1:]
    index = np.flatnonzero(candidate)
    return index.astype(np.int64), above[index]


def _full_scale(amplitude: np.ndarray, sigma: float | None, full_scale: float | None) -> float:
    if full_scale is not None:
        return float(full_scale)
    top = FULL_SCALE_HEADROOM * float(amplitude.max()) if amplitude.size else 0.0
    if sigma is not None:
        top = max(top, MIN_FULL_SCALE_SIGMA * sigma)
    return max(top, 1e-6)


def _colour_index(counts: np.ndarray, n_cycles: float) -> np.ndarray:
    """Colour-map index per cell: 0 for empty cells, 1..255 on a log scale of the count rate."""
    rate = counts * (REFERENCE_CYCLES / max(float(n_cycles), 1e-9))
    level = np.log1p(rate) / np.log1p(COUNT_AT_TOP_COLOUR)
    return np.where(counts > 0, 1 + np.clip(np.round(level * 254), 0, 254), 0).astype(np.intp)


def _colourise(counts: np.ndarray, n_cycles: float, draw_sine: bool) -> np.ndarray:
    """counts (256 rows top->bottom, 256 phase cols) -> RGB uint8."""
    if np.issubdtype(counts.dtype, np.integer):
        # Integer counts take few distinct values: colour each value once, then look the grid up
        # (the log over all 65,536 cells was half the cost of a synthetic window).
        index = _colour_index(np.arange(int(counts.max()) + 1), n_cycles)[counts]
    else:
        index = _colour_index(counts, n_cycles)
    image = COLOUR_LUT.take(index, axis=0)
    if draw_sine:
        image[SINE_MASK & (index == 0)] = SINE_GREY
    return image


def _accumulate(col: np.ndarray, amplitude: np.ndarray, top: float, weight: np.ndarray | None = None) -> np.ndarray:
    row = (IMAGE_SIZE - 1) - np.clip((amplitude / top * IMAGE_SIZE).astype(np.int64), 0, IMAGE_SIZE - 1)
    flat = row * IMAGE_SIZE + np.mod(col, IMAGE_SIZE)
    return np.bincount(flat, weights=weight, minlength=IMAGE_SIZE * IMAGE_SIZE).reshape(IMAGE_SIZE, IMAGE_SIZE)


def render_prpd_from_events(
    phase_deg: np.ndarray,
    amplitude: np.ndarray,
    n_cycles: float,
    *,
    noise_sigma: float | None = None,
    full_scale: float | None = None,
    draw_sine: bool = True,
) -> np.ndarray:
    """PRPD image from pulse events (phase in degrees, magnitude above baseline in counts)."""
    phase = np.mod(np.asarray(phase_deg, dtype=np.float64), 360.0)
    amp = np.asarray(amplitude, dtype=np.float64)
    if phase.shape != amp.shape:
        raise ValueError(f"phase_deg shape {phase.shape} != amplitude shape {amp.shape}")
    top = _full_scale(amp, noise_sigma, full_scale)
    col = (phase / 360.0 * IMAGE_SIZE).astype(np.int64)
    return _colourise(_accumulate(col, amp, top), n_cycles, draw_sine)


def render_prpd_from_series(
    series: np.ndarray,
    sample_rate_hz: float = SAMPLE_RATE_HZ,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ,
    *,
    threshold_sigma: float = DETECT_THRESHOLD_SIGMA,
    draw_sine: bool = True,
) -> np.ndarray:
    """PRPD image of a window's own pulses (detect_pulses), phase from the sample index.

    One sample spans 360 * f / fs degrees (2.8 deg at 60 Hz: two columns), and the pulse could
    have happened anywhere inside it, so its count is shared over the columns it covers:
    otherwise every other column would stay empty at 60 Hz.
    """
    flat = np.asarray(series).reshape(-1)
    if flat.size == 0:
        raise ValueError("series is empty")
    if sample_rate_hz <= 0 or power_freq_hz <= 0:
        raise ValueError(f"sample_rate_hz={sample_rate_hz} and power_freq_hz={power_freq_hz} must be > 0")
    _, sigma = noise_floor(flat)
    index, amp = detect_pulses(flat, threshold_sigma)
    n_cycles = flat.size / sample_rate_hz * power_freq_hz
    top = _full_scale(amp, sigma, None)
    cols_per_sample = IMAGE_SIZE * power_freq_hz / sample_rate_hz
    cycles = index * (power_freq_hz / sample_rate_hz)
    start = (cycles - np.floor(cycles)) * IMAGE_SIZE  # fractional column where the sample begins
    counts = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    first_col = np.floor(start).astype(np.int64)
    for k in range(int(np.ceil(cols_per_sample)) + 1):  # a handful of column offsets, not a per-pulse loop
        col = first_col + k
        overlap = np.minimum(col + 1, start + cols_per_sample) - np.maximum(col, start)
        keep = overlap > 1e-9
        if keep.any():
            counts += _accumulate(col[keep], amp[keep], top, overlap[keep] / cols_per_sample)
    return _colourise(counts, n_cycles, draw_sine)


def amplitude_edges(n_amp: int, full_scale: float, scale: str = "linear", floor: float | None = None) -> np.ndarray:
    """Bin edges (n_amp + 1, increasing) of an instrument's amplitude axis, in its own unit.

    linear: 0 .. full_scale in equal steps; log: `floor` .. full_scale in equal dB steps (a log axis
    cannot start at 0: its lowest edge is the instrument's floor).
    """
    if isinstance(n_amp, bool) or int(n_amp) != n_amp or not 1 <= n_amp <= 4096:
        raise ValueError(f"n_amp must be an integer in 1..4096, got {n_amp!r}")
    if not (np.isfinite(full_scale) and full_scale > 0):
        raise ValueError(f"full_scale must be finite and > 0, got {full_scale!r}")
    if scale == "linear":
        return np.linspace(0.0, float(full_scale), int(n_amp) + 1)
    if scale == "log":
        if floor is None or not (np.isfinite(floor) and 0 < floor < full_scale):
            raise ValueError(f"a log amplitude axis needs 0 < floor < full_scale, got floor={floor!r}, "
                             f"full_scale={full_scale!r}")
        return np.geomspace(float(floor), float(full_scale), int(n_amp) + 1)
    raise ValueError(f"amplitude scale must be 'linear' or 'log', got {scale!r}")


def bin_overlap(lo: np.ndarray, hi: np.ndarray, n_pixels: int, pixel: float) -> np.ndarray:
    """(bins, n_pixels): the share of each bin [lo, hi) that falls in pixel k = [k, k+1) * `pixel`.

    Rows sum to 1 for bins inside the axis, so spreading a bin's count over its pixels keeps the total.
    """
    left = np.arange(n_pixels) * pixel
    inside = np.clip(np.minimum(hi[:, None], left[None, :] + pixel) - np.maximum(lo[:, None], left[None, :]), 0, None)
    width = np.maximum(hi - lo, 1e-12)
    return inside / width[:, None]


def render_prpd_from_matrix(
    counts: np.ndarray,
    n_cycles: float = REFERENCE_CYCLES,
    *,
    amplitude_edges: np.ndarray | None = None,
    draw_sine: bool = True,
) -> np.ndarray:
    """An instrument's count matrix redrawn in this project's convention (the style the model knows).

    counts: (n_phase, n_amp) pulse counts, phase bin 0 starting at 0 deg, amplitude bin 0 the smallest.
    amplitude_edges: (n_amp + 1) increasing edges of the amplitude bins in the instrument's unit (linear,
    dB-spaced or quantised alike: see `amplitude_edges`); default equal linear bins. The unit does not
    matter: as for pulse events, the top of the image is 1.1 x the upper edge of the highest occupied
    bin (per-window scale), and at least 10 x the lowest occupied amplitude (the threshold). Each cell's
    count is spread evenly over the pixels its phase and amplitude span, so totals are kept and a coarse
    matrix is not drawn as isolated dots.
    """
    matrix = np.asarray(counts, dtype=np.float64)
    if matrix.ndim != 2 or min(matrix.shape) < 1:
        raise ValueError(f"counts must be a 2-D (n_phase, n_amp) matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or (matrix < 0).any():
        raise ValueError("counts must be finite and >= 0")
    n_phase, n_amp = matrix.shape
    edges = np.arange(n_amp + 1, dtype=np.float64) if amplitude_edges is None else np.asarray(
        amplitude_edges, dtype=np.float64)
    if edges.shape != (n_amp + 1,) or not np.all(np.isfinite(edges)) or edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"amplitude_edges must be {n_amp + 1} finite, increasing values >= 0 for {n_amp} amplitude "
                         f"bins, got shape {edges.shape}")
    occupied = np.flatnonzero(matrix.sum(axis=0) > 0)
    if occupied.size:
        # As for events, the full scale is at least 10x the detection threshold (50 / 5 sigma), so a quiet
        # window's few threshold crossings stay near the bottom instead of being drawn as a strong pattern.
        # A matrix carries no noise level: the centre of the lowest occupied bin stands for the threshold.
        threshold = 0.5 * float(edges[occupied[0]] + edges[occupied[0] + 1])
        top = max(FULL_SCALE_HEADROOM * float(edges[occupied[-1] + 1]),
                  MIN_FULL_SCALE_SIGMA / DETECT_THRESHOLD_SIGMA * threshold)
    else:
        top = float(edges[-1])
    phase_edges = np.arange(n_phase + 1) * (IMAGE_SIZE / n_phase)
    phase_share = bin_overlap(phase_edges[:-1], phase_edges[1:], IMAGE_SIZE, 1.0)  # (n_phase, W)
    amp_share = bin_overlap(edges[:-1], edges[1:], IMAGE_SIZE, top / IMAGE_SIZE)  # (n_amp, H) bottom row first
    grid = amp_share.T @ matrix.T @ phase_share  # (H bottom-up, W)
    return _colourise(grid[::-1], n_cycles, draw_sine)


def window_cycles(power_freq_hz: float = DEFAULT_POWER_FREQ_HZ) -> float:
    """Supply cycles in one 20 s window."""
    return WINDOW_SECONDS * power_freq_hz
