"""PRPDs drawn the many ways real instruments draw them: named rendering families (domain randomisation).

No two vendors draw a PRPD alike (../shared/docs/prpd-instruments.md): phase and amplitude binnings,
linear or dB amplitude, a fixed (calibrated) or per-window full scale, amplitude quantised to a few
levels, a noise-floor band across all phases, counts saturated at a display maximum, colour maps,
black or white background, a bipolar display around a centre line, the sine drawn or not. A family
is a named region of that space; each window draws its own style inside its family from its own
seeded generator. Training uses `TRAIN_FAMILIES`; `HELD_OUT_FAMILIES` use values (binnings,
quantisation, dB ranges, colour maps) that no training family ever draws, so a score on them says
how the image branch does on an instrument it has never seen. `native` is the project's own
renderer (mad.data.prpd) and `matrix` is the agent's count-matrix path: an instrument's matrix
redrawn by `render_prpd_from_matrix`. docs/data.md lists the families.

All drawing works from pulse events (phase, magnitude above baseline), the same events the native
renderer draws, so every family shows the same physics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mad.constants import IMAGE_SIZE
from mad.data.prpd import (
    COLOUR_LUT,
    DETECT_THRESHOLD_SIGMA,
    FULL_SCALE_HEADROOM,
    MIN_FULL_SCALE_SIGMA,
    REFERENCE_CYCLES,
    SINE_GREY,
    SINE_MASK,
    amplitude_edges,
    bin_overlap,
    render_prpd_from_events,
    render_prpd_from_matrix,
)


@dataclass(frozen=True)
class PrpdStyle:
    """How one instrument draws (or exports) a PRPD. Amplitudes are in noise sigmas of the window."""

    phase_bins: int = IMAGE_SIZE
    amp_bins: int = IMAGE_SIZE
    amp_scale: str = "linear"  # "linear" | "log" (dB axis from the detection threshold up)
    log_range_db: float = 40.0  # log axis: full scale / lowest edge
    fixed_scale: float | None = None  # calibrated full scale, x the per-window one; None: per window
    amp_levels: int | None = None  # amplitudes quantised to this many steps of the full scale (stepped detector)
    noise_band: float = 0.0  # mean counts per low-amplitude cell per 1,200 cycles from background crossings
    count_cap: float | None = None  # counts saturate here (display maximum)
    colour_map: str = "jet"  # see COLOUR_MAPS
    colour_scale: str = "log"  # "log" | "linear" count-to-colour
    background: str = "black"  # "black" | "white"
    draw_sine: bool = True
    bipolar: bool = False  # amplitude drawn up in the positive half-cycle, down in the negative, from a centre line
    redraw: bool = False  # True: export a count matrix and redraw it with the project's renderer (the agent's path)


def _lerp_lut(anchors: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """255 colours interpolated through (position, RGB) anchors; position 0 = one pulse, 1 = densest."""
    x = np.linspace(0.0, 1.0, 255)
    pos = np.array([a[0] for a in anchors])
    rgb = np.array([a[1] for a in anchors], dtype=np.float64)
    return np.stack([np.interp(x, pos, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


# Colour maps (entries 1..255); the background colour is set per style. Dark maps are for black
# backgrounds and are reversed on white, so one pulse always stands out from the background.
COLOUR_MAPS: dict[str, np.ndarray] = {
    "jet": COLOUR_LUT[1:],
    "hot": _lerp_lut([(0, (90, 0, 0)), (0.4, (255, 30, 0)), (0.75, (255, 220, 0)), (1, (255, 255, 255))]),
    "grey": _lerp_lut([(0, (90, 90, 90)), (1, (255, 255, 255))]),
    "viridis": _lerp_lut([(0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
                          (1, (253, 231, 37))]),
    "mono_green": _lerp_lut([(0, (0, 110, 0)), (1, (120, 255, 120))]),
    "mono_red": _lerp_lut([(0, (120, 0, 0)), (1, (255, 90, 90))]),
}
_DARK_ON_WHITE = {"grey", "mono_green", "mono_red"}  # reversed on white: dense cells darkest


def _lut(style: PrpdStyle) -> np.ndarray:
    colours = COLOUR_MAPS[style.colour_map]
    if style.background == "white" and style.colour_map in _DARK_ON_WHITE:
        colours = 255 - colours
    background = (255, 255, 255) if style.background == "white" else (0, 0, 0)
    return np.concatenate([np.array([background], np.uint8), colours])


def event_matrix(phase_deg: np.ndarray, amplitude: np.ndarray, n_cycles: float, noise_sigma: float,
                 style: PrpdStyle, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The instrument's (n_phase, n_amp) count matrix of pulse events and its amplitude edges (in counts).

    Full scale: per window as the native renderer (1.1 x largest pulse, at least 50 sigma), or a fixed
    range `fixed_scale` times that (pulses above it saturate in the top bin). A log axis starts at the
    detection threshold. Quantisation snaps amplitudes to `amp_levels` steps before binning.
    """
    amp = np.asarray(amplitude, dtype=np.float64)
    sigma = max(float(noise_sigma), 1e-6)
    top = max(FULL_SCALE_HEADROOM * float(amp.max()) if amp.size else 0.0, MIN_FULL_SCALE_SIGMA * sigma)
    if style.fixed_scale is not None:
        top *= style.fixed_scale
    if style.amp_levels:
        step = top / style.amp_levels
        amp = np.maximum(np.round(amp / step), 1) * step
    floor = max(top / 10 ** (style.log_range_db / 20), DETECT_THRESHOLD_SIGMA * sigma * 0.9)
    edges = amplitude_edges(style.amp_bins, top, style.amp_scale, floor if style.amp_scale == "log" else None)
    amp_bin = np.clip(np.searchsorted(edges, amp, side="right") - 1, 0, style.amp_bins - 1)
    phase_bin = (np.mod(np.asarray(phase_deg, dtype=np.float64), 360.0) / 360.0 * style.phase_bins).astype(np.int64)
    phase_bin = np.minimum(phase_bin, style.phase_bins - 1)
    counts = np.bincount(phase_bin * style.amp_bins + amp_bin,
                         minlength=style.phase_bins * style.amp_bins).reshape(style.phase_bins, style.amp_bins)
    counts = counts.astype(np.float64)
    if style.noise_band > 0:
        # Threshold crossings of the background: counted in every phase bin, just above the threshold.
        band_top = np.searchsorted(edges, 1.6 * DETECT_THRESHOLD_SIGMA * sigma, side="right")
        band = slice(0, max(int(band_top), 1))
        mean = style.noise_band * n_cycles / REFERENCE_CYCLES * np.ones(counts[:, band].shape)
        counts[:, band] += rng.poisson(mean)
    if style.count_cap is not None:
        np.minimum(counts, style.count_cap, out=counts)
    return counts, edges


def _screen_share(n_bins: int, n_pixels: int) -> np.ndarray:
    """(n_bins, n_pixels) weights of a screen drawing: a bin wider than a pixel paints every pixel it covers
    with its own count (a rectangle), bins narrower than a pixel add up in it."""
    edges = np.arange(n_bins + 1) * (n_pixels / n_bins)
    share = bin_overlap(edges[:-1], edges[1:], n_pixels, 1.0)  # fractions of each bin, rows sum to 1
    return share * max(n_pixels / n_bins, 1.0)


def _draw_matrix(counts: np.ndarray, n_cycles: float, style: PrpdStyle) -> np.ndarray:
    """Draw the matrix as the instrument's own screen: its colour map, scale and background."""
    n_phase, n_amp = counts.shape
    phase_share = _screen_share(n_phase, IMAGE_SIZE)  # (n_phase, W)
    if style.bipolar:  # centre line at mid height: positive half-cycle drawn up, negative half-cycle down
        half = IMAGE_SIZE // 2
        amp_share = _screen_share(n_amp, half)  # (n_amp, half) from the centre line outwards
        negative = ((np.arange(n_phase) + 0.5) / n_phase >= 0.5)[:, None]
        up = amp_share.T @ np.where(negative, 0.0, counts).T @ phase_share
        down = amp_share.T @ np.where(negative, counts, 0.0).T @ phase_share
        grid = np.concatenate([up[::-1], down])
    else:
        grid = (_screen_share(n_amp, IMAGE_SIZE).T @ counts.T @ phase_share)[::-1]  # row 0 = top = largest
    grid[grid < 1e-9] = 0.0
    if style.colour_scale == "log":
        rate = grid * (REFERENCE_CYCLES / max(float(n_cycles), 1e-9))
        level = np.log1p(rate) / np.log1p(200.0)
    else:
        level = grid / max(float(style.count_cap or grid.max() or 1.0), 1e-9)
    index = np.where(grid > 0, 1 + np.clip(np.round(level * 254), 0, 254), 0).astype(np.intp)
    image = _lut(style).take(index, axis=0)
    if style.draw_sine:
        grey = 255 - SINE_GREY if style.background == "white" else SINE_GREY
        image[SINE_MASK & (index == 0)] = grey
    if style.bipolar:
        centre = IMAGE_SIZE // 2
        image[centre][index[centre] == 0] = 128  # the centre line
    return image


def render_styled(phase_deg: np.ndarray, amplitude: np.ndarray, n_cycles: float, noise_sigma: float,
                  style: PrpdStyle | None, rng: np.random.Generator) -> np.ndarray:
    """(256, 256, 3) uint8 PRPD of pulse events drawn in `style` (None: the native renderer)."""
    if style is None:
        return render_prpd_from_events(phase_deg, amplitude, n_cycles, noise_sigma=noise_sigma)
    counts, edges = event_matrix(phase_deg, amplitude, n_cycles, noise_sigma, style, rng)
    if style.redraw:
        return render_prpd_from_matrix(counts, n_cycles, amplitude_edges=edges, draw_sine=style.draw_sine)
    return _draw_matrix(counts, n_cycles, style)


# ------------------------------------------------------------------------------ families

StyleDraw = Callable[[np.random.Generator], PrpdStyle | None]


def _pick(rng: np.random.Generator, values: tuple) -> object:
    return values[int(rng.integers(len(values)))]


def _mixed(rng: np.random.Generator, *, phase_bins: tuple, amp_bins: tuple, levels: tuple, db: tuple,
           maps: tuple, redraw: bool) -> PrpdStyle:
    """Any combination of the axes' values: instruments differ on several at once."""
    background = str(_pick(rng, ("black", "white")))
    return PrpdStyle(
        phase_bins=int(_pick(rng, phase_bins)), amp_bins=int(_pick(rng, amp_bins)),
        amp_scale=str(_pick(rng, ("linear", "log"))), log_range_db=float(rng.uniform(*db)),
        fixed_scale=float(rng.uniform(1.2, 4.0)) if rng.random() < 0.4 else None,
        amp_levels=int(_pick(rng, levels)) if rng.random() < 0.3 else None,
        noise_band=float(rng.uniform(0.3, 3.0)) if rng.random() < 0.3 else 0.0,
        count_cap=float(_pick(rng, (20.0, 30.0))) if rng.random() < 0.3 else None,
        colour_map=str(_pick(rng, maps)), colour_scale=str(_pick(rng, ("log", "linear"))), background=background,
        draw_sine=bool(rng.random() < 0.5), bipolar=bool(rng.random() < 0.15) and not redraw, redraw=redraw,
    )


# Values the training families draw from; the held-out families use only values outside these.
TRAIN_PHASE_BINS = (64, 128, 256, 360)
TRAIN_AMP_BINS = (64, 128, 256)
TRAIN_LEVELS = (16, 24, 32)
TRAIN_DB = (40.0, 60.0)
TRAIN_MAPS = ("jet", "hot", "grey")
HELD_OUT_PHASE_BINS = (32, 100, 400)
HELD_OUT_AMP_BINS = (32, 50, 100)
HELD_OUT_LEVELS = (12, 40)
HELD_OUT_DB = (20.0, 30.0)
HELD_OUT_MAPS = ("viridis", "mono_green", "mono_red")

_TRAIN = {"phase_bins": TRAIN_PHASE_BINS, "amp_bins": TRAIN_AMP_BINS, "levels": TRAIN_LEVELS, "db": TRAIN_DB,
          "maps": TRAIN_MAPS}

TRAIN_FAMILIES: dict[str, StyleDraw] = {
    "native": lambda rng: None,
    "binning": lambda rng: PrpdStyle(phase_bins=int(_pick(rng, TRAIN_PHASE_BINS)),
                                     amp_bins=int(_pick(rng, TRAIN_AMP_BINS))),
    "log_amplitude": lambda rng: PrpdStyle(amp_bins=int(_pick(rng, TRAIN_AMP_BINS)), amp_scale="log",
                                           log_range_db=float(rng.uniform(*TRAIN_DB))),
    "fixed_scale": lambda rng: PrpdStyle(fixed_scale=float(rng.uniform(1.2, 4.0))),
    "quantised": lambda rng: PrpdStyle(amp_levels=int(_pick(rng, TRAIN_LEVELS))),
    "noise_band": lambda rng: PrpdStyle(noise_band=float(rng.uniform(0.3, 3.0))),
    "saturated": lambda rng: PrpdStyle(count_cap=float(_pick(rng, (20.0, 30.0))), colour_scale="linear"),
    "colour_map": lambda rng: PrpdStyle(colour_map=str(_pick(rng, TRAIN_MAPS)),
                                        background=str(_pick(rng, ("black", "white"))),
                                        draw_sine=bool(rng.random() < 0.5)),
    "bipolar": lambda rng: PrpdStyle(bipolar=True, background="white", colour_map=str(_pick(rng, TRAIN_MAPS)),
                                     phase_bins=int(_pick(rng, TRAIN_PHASE_BINS)), draw_sine=False),
    "matrix": lambda rng: _mixed(rng, **_TRAIN, redraw=True),
    "mixed": lambda rng: _mixed(rng, **_TRAIN, redraw=False),
}

HELD_OUT_FAMILIES: dict[str, StyleDraw] = {
    "ho_binning": lambda rng: PrpdStyle(phase_bins=int(_pick(rng, HELD_OUT_PHASE_BINS)),
                                        amp_bins=int(_pick(rng, HELD_OUT_AMP_BINS))),
    "ho_quantised": lambda rng: PrpdStyle(amp_levels=int(_pick(rng, HELD_OUT_LEVELS))),
    "ho_log_range": lambda rng: PrpdStyle(amp_scale="log", log_range_db=float(rng.uniform(*HELD_OUT_DB)),
                                          amp_bins=int(_pick(rng, HELD_OUT_AMP_BINS))),
    "ho_colour_map": lambda rng: PrpdStyle(colour_map=str(_pick(rng, HELD_OUT_MAPS)),
                                           background=str(_pick(rng, ("black", "white"))),
                                           draw_sine=bool(rng.random() < 0.5)),
    "ho_matrix": lambda rng: _mixed(rng, phase_bins=HELD_OUT_PHASE_BINS, amp_bins=HELD_OUT_AMP_BINS,
                                    levels=HELD_OUT_LEVELS, db=HELD_OUT_DB, maps=TRAIN_MAPS, redraw=True),
    "ho_mixed": lambda rng: _mixed(rng, phase_bins=HELD_OUT_PHASE_BINS, amp_bins=HELD_OUT_AMP_BINS,
                                   levels=HELD_OUT_LEVELS, db=HELD_OUT_DB, maps=HELD_OUT_MAPS, redraw=False),
}

FAMILIES: dict[str, StyleDraw] = {**TRAIN_FAMILIES, **HELD_OUT_FAMILIES}


def check_families(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The names as a tuple; a name that is no family is refused with the known ones."""
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown PRPD rendering families {unknown}; known: {sorted(FAMILIES)}")
    return tuple(names)


def draw_style(family: str, rng: np.random.Generator) -> PrpdStyle | None:
    """One style of `family` (None for `native`)."""
    check_families([family])
    return FAMILIES[family](rng)
