"""Synthetic PD windows in the AI Hub format, after ../shared/docs/pd-physics.md (see docs/data.md).

A window is built from pulse EVENTS (time, true supply phase, magnitude): the series places them
as single-sample peaks (the fixture's pulses are one sample wide) on baseline + Gaussian noise,
and the PRPD image is the phase-resolved accumulation of the same events as the series shows them.
Nuisance variables (phase offset, gain, baseline, noise floor, supply frequency drift, weak
interference, glitches, intensity) are drawn from the same ranges for every class.
Every draw comes from np.random.Generator(PCG64) seeded by SeedSequence over integers only.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mad.constants import (
    CLASS_NAMES,
    DEFAULT_POWER_FREQ_HZ,
    NUM_CLASSES,
    SAMPLE_RATE_HZ,
    WINDOW_ROWS,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
)
from mad.data.prpd import DETECT_THRESHOLD_SIGMA
from mad.data.prpd_styles import PrpdStyle, check_families, draw_style, render_styled

GENERATOR_VERSION = 2  # 2: sensor noise drawn from a fixed Gaussian table (4x faster)
NORMAL, NOISE, SURFACE, CORONA, VOID = range(NUM_CLASSES)
ADC_MAX = 4095  # the real ADC range is unknown; 12 bits leaves the fixture's scale far from saturation
_PRESET_IDS = {"easy": 1, "standard": 2, "hard": 3}
_STREAM_DOMAIN = 7  # separates stream seeds from window seeds
_STYLE_WORD, _FAMILY_WORD = 4, 5  # stream words of a window's PRPD style and of its family pick


@dataclass(frozen=True)
class Preset:
    """Ranges of the nuisance variables; identical for every class (that is the point)."""

    name: str
    phase_offset_deg: float  # sensor zero vs supply zero: uniform in +-this
    gain: tuple[float, float]  # sensor coupling, log-uniform multiplier of every pulse
    baseline: tuple[float, float]  # ADC counts
    noise_sigma: tuple[float, float]  # ADC counts
    freq_dev_hz: float  # supply frequency error vs nominal: uniform in +-this (smears phase)
    intensity: tuple[float, float]  # 0 = at inception (few, small pulses), 1 = well developed
    weak_interference_prob: float  # chance a non-Noise window carries a weak (<= 4.5 sigma) source
    multi_source_prob: float  # chance a defect window also carries a Noise-strength source
    grounded_corona_prob: float  # corona from a grounded point: pattern shifted by 180 deg
    glitch_prob: float  # ADC dropouts to near zero, as in the fixture
    description: str = ""


PRESETS: dict[str, Preset] = {
    "easy": Preset(
        "easy", 0.0, (0.8, 1.25), (28, 32), (4, 6), 0.0, (0.6, 1.0), 0.0, 0.0, 0.0, 0.0,
        "textbook patterns: no phase offset, fixed-ish gain and floor, developed defects, no weak interference",
    ),
    "standard": Preset(
        "standard", 30.0, (0.5, 2.0), (15, 60), (2.5, 8), 0.002, (0.2, 1.0), 0.5, 0.1, 0.1, 0.2,
        "field-like: +-30 deg offset, 4x gain range, weak interference in half the windows, 10% defect+noise",
    ),
    "hard": Preset(
        "hard", 60.0, (0.3, 3.0), (10, 100), (2, 12), 0.01, (0.03, 1.0), 0.8, 0.3, 0.25, 0.3,
        "near inception (some defects at the floor), +-60 deg offset, 10x gain, 30% defect under strong noise",
    ),
}


@dataclass
class SyntheticWindow:
    image: np.ndarray  # (256, 256, 3) uint8
    series: np.ndarray  # (20, 7680) int16
    label: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PulseEvents:
    """Events of one window; `true_phase_deg` is the supply phase (before the sensor offset)."""

    time_s: np.ndarray
    true_phase_deg: np.ndarray
    magnitude: np.ndarray  # counts above baseline, gain applied
    is_pd: np.ndarray  # bool: discharge (True) or interference (False)


def check_preset(preset: str | Preset) -> Preset:
    """The named preset, or a variant made by `preset_variant` (kept: it carries its base preset's name)."""
    if isinstance(preset, Preset):
        if preset.name not in _PRESET_IDS:
            raise ValueError(f"preset variant of unknown preset {preset.name!r}; base one of {sorted(PRESETS)}")
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


# Fields a training config may change: probabilities of a window's nuisances, for oversampling the rare
# hard cases (e.g. defects under strong noise) in training while tests keep the preset as it is.
VARIANT_FIELDS = ("weak_interference_prob", "multi_source_prob", "grounded_corona_prob", "glitch_prob")


def preset_variant(name: str, overrides: dict[str, float]) -> Preset:
    """`name` with some nuisance probabilities replaced. A variant draws the same random streams as its
    base preset (same seeds, same labels), so only the windows whose drawn nuisance changes differ."""
    base = check_preset(name)
    for key, value in overrides.items():
        if key not in VARIANT_FIELDS:
            raise ValueError(f"preset override {key!r}: not one of {list(VARIANT_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"preset override {key}={value!r}: must be a probability in [0, 1]")
    if not overrides:
        return base
    changes = ", ".join(f"{k}={v:g}" for k, v in overrides.items())
    return dataclasses.replace(base, **{k: float(v) for k, v in overrides.items()},
                               description=f"{base.name} with {changes}")


def check_non_negative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_freq(power_freq_hz: float) -> float:
    if not 40.0 <= float(power_freq_hz) <= 70.0:
        raise ValueError(f"power_freq_hz must be a supply frequency in 40-70 Hz, got {power_freq_hz!r}")
    return float(power_freq_hz)


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([GENERATOR_VERSION, *words])))


def balanced_label(preset: str | Preset, seed: int, index: int) -> int:
    """Class of sample `index`: each block of 5 consecutive indices holds every class once, shuffled."""
    preset_id, seed = _PRESET_IDS[check_preset(preset).name], check_non_negative_int("seed", seed)
    block_rng = _rng(preset_id, seed, 1, check_non_negative_int("index", index) // NUM_CLASSES)
    return int(block_rng.permutation(NUM_CLASSES)[index % NUM_CLASSES])


# ---------------------------------------------------------------- parameter draws (small dicts)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _draw_sensor(rng: np.random.Generator, p: Preset) -> dict[str, Any]:
    return {
        "phase_offset_deg": float(rng.uniform(-p.phase_offset_deg, p.phase_offset_deg)),
        "gain": float(np.exp(rng.uniform(np.log(p.gain[0]), np.log(p.gain[1])))),
        "baseline": _uniform(rng, p.baseline),
        "noise_sigma": _uniform(rng, p.noise_sigma),
        "freq_dev_hz": float(rng.uniform(-p.freq_dev_hz, p.freq_dev_hz)),
        "glitches": int(rng.integers(5, 40)) if rng.random() < p.glitch_prob else 0,
        "tail_fraction": float(rng.uniform(0.0, 0.1)),
    }


def _draw_interference(rng: np.random.Generator, strong: bool, power_freq_hz: float) -> list[dict[str, Any]]:
    """Interference sources. Strong: amplitude 8-40 sigma x gain (Noise class, or multi-source).
    Weak: 2.5-4.5 sigma, no gain, at most ~20 pulses/s: mostly under the detection threshold."""
    kinds = ["train", "random", "converter"]
    n_sources = int(rng.integers(1, 3)) if strong else 1
    sources = []
    for kind in rng.choice(kinds, size=n_sources, replace=False, p=[0.45, 0.35, 0.2]):
        snr = float(rng.uniform(8, 40)) if strong else float(rng.uniform(2.5, 4.5))
        src: dict[str, Any] = {"kind": str(kind), "snr": snr, "scaled_by_gain": strong}
        if kind == "train":
            rate = float(rng.uniform(20, 300) if strong else rng.uniform(5, 20))
            ratio = rate / power_freq_hz
            if abs(ratio - round(ratio)) < 0.02:  # keep it non-synchronous: a locked train is a converter line
                rate += 0.05 * power_freq_hz
            src.update(rate_hz=rate, t0_s=float(rng.uniform(0, 1 / rate)), jitter_samples=float(rng.uniform(0.1, 0.5)))
        elif kind == "random":
            src.update(rate_hz=float(rng.uniform(20, 600) if strong else rng.uniform(2, 20)),
                       spread=float(rng.uniform(0.2, 0.6)))
        else:
            src.update(lines_per_cycle=int(rng.choice([6, 12])), phase_deg=float(rng.uniform(0, 360)),
                       fire_prob=float(rng.uniform(0.2, 1.0) if strong else rng.uniform(0.01, 0.02)))
        sources.append(src)
    return sources


def _draw_defect(rng: np.random.Generator, label: int, p: Preset) -> dict[str, Any]:
    """Shape of the discharge source (pd-physics.md table). Amplitudes in noise sigmas at gain 1."""
    if label == CORONA:
        return {
            "centre_deg": float(rng.uniform(255, 285)),
            "half_width_deg": float(rng.uniform(28, 45)),
            "rate_per_cycle": float(rng.uniform(3, 20)),  # Trichel pulses: very many per negative half
            "snr": float(rng.uniform(14, 26)),
            "amp_spread": float(rng.uniform(0.04, 0.12)),  # nearly constant: a horizontal band
            "grounded": bool(rng.random() < p.grounded_corona_prob),
            "positive_peak_rate": float(rng.uniform(0.05, 0.4)),  # larger, sparser pulses near 90 deg at high voltage
        }
    if label == VOID:
        return {
            "start_deg": float(rng.uniform(-35, 5)),  # often starting before the zero crossing
            "end_deg": float(rng.uniform(60, 100)),
            "rate_per_cycle": float(rng.uniform(0.7, 8)),
            "snr": float(np.exp(rng.uniform(np.log(12), np.log(40)))),
            "amp_spread": float(rng.uniform(0.3, 0.5)),  # broad spread
            "shape": str(rng.choice(["rabbit_ear", "turtle"])),
            "negative_ratio": float(rng.uniform(0.8, 1.25)),  # roughly symmetric half-cycles
        }
    if label == SURFACE:
        return {
            "start_deg": float(rng.uniform(-10, 20)),
            "end_deg": float(rng.uniform(115, 165)),  # extends past the peak
            "rate_per_cycle": float(rng.uniform(0.7, 6)),
            "snr": float(np.exp(rng.uniform(np.log(25), np.log(80)))),  # larger than void
            "weaker_half": int(rng.integers(0, 2)),
            "polarity_ratio": float(rng.uniform(0.3, 0.7)),  # unequal between polarities
        }
    return {}


# ---------------------------------------------------------------- event synthesis (vectorised)


def _defect_events(rng, label, shape, intensity, n_cycles, sigma, gain):
    """(true phase deg, magnitude counts) of the discharges in one window."""
    rate_factor = 0.05 + 0.95 * intensity**1.5
    amp_factor = 0.6 + 0.4 * intensity
    if label == CORONA:
        n = rng.poisson(shape["rate_per_cycle"] * rate_factor * n_cycles)
        half = shape["half_width_deg"] * (0.6 + 0.4 * intensity)  # the band widens with voltage
        phase = shape["centre_deg"] + half * (2 * rng.beta(1.3, 1.3, n) - 1)
        amp = shape["snr"] * amp_factor * (1 + shape["amp_spread"] * rng.standard_normal(n))
        if intensity > 0.6:  # positive-peak pulses appear at higher voltage
            m = rng.poisson(shape["positive_peak_rate"] * (intensity - 0.6) / 0.4 * n_cycles)
            phase = np.concatenate([phase, rng.normal(90, 15, m)])
            amp = np.concatenate([amp, shape["snr"] * amp_factor * rng.uniform(2, 4, m)])
        if shape["grounded"]:
            phase = phase + 180.0
    elif label in (VOID, SURFACE):
        n = rng.poisson(shape["rate_per_cycle"] * rate_factor * n_cycles)
        negative = rng.random(n) < 0.5
        span = shape["end_deg"] - shape["start_deg"]
        if label == VOID:
            u = rng.beta(1.5, 2.5, n)  # denser early in the rising quadrant
            envelope = 1.0 - 0.65 * u if shape["shape"] == "rabbit_ear" else 0.45 + 0.55 * np.sin(np.pi * u)
            amp = shape["snr"] * envelope * np.exp(shape["amp_spread"] * rng.standard_normal(n))
            amp = np.where(negative, amp * shape["negative_ratio"], amp)
        else:
            u = rng.beta(1.3, 1.6, n)
            envelope = 0.15 + 0.85 * u**0.8  # wedge: the amplitude ceiling grows across the cluster
            amp = shape["snr"] * envelope * rng.uniform(0.15, 1.0, n)
            weaker = negative if shape["weaker_half"] else ~negative
            amp = np.where(weaker, amp * shape["polarity_ratio"], amp)
        phase = shape["start_deg"] + span * u + np.where(negative, 180.0, 0.0) + rng.normal(0, 3, n)
        amp = amp * amp_factor
    else:
        return np.zeros(0), np.zeros(0)
    return np.mod(phase, 360.0), np.maximum(amp, 0.0) * sigma * gain


def _interference_events(rng, sources, n_cycles, f_act, sigma, gain, phase0, t_start):
    """(time s, true phase deg, magnitude) of interference pulses; times are window-relative."""
    times, phases, amps = [np.zeros(0)], [np.zeros(0)], [np.zeros(0)]
    for src in sources:
        level = src["snr"] * sigma * (gain if src["scaled_by_gain"] else 1.0)
        if src["kind"] == "train":
            period = 1.0 / src["rate_hz"]
            first = np.mod(src["t0_s"] - t_start, period)  # the train runs on across consecutive windows
            t = first + period * np.arange(int((WINDOW_SECONDS - first) / period) + 1)
            t = t + rng.normal(0, src["jitter_samples"] / SAMPLE_RATE_HZ, t.size)
            a = level * (1 + 0.04 * rng.standard_normal(t.size))
        elif src["kind"] == "random":
            t = rng.uniform(0, WINDOW_SECONDS, rng.poisson(src["rate_hz"] * WINDOW_SECONDS))
            a = level * np.exp(src["spread"] * rng.standard_normal(t.size))
        else:
            lines = src["lines_per_cycle"]
            cycle = np.repeat(np.arange(n_cycles), lines)
            ph = np.tile(src["phase_deg"] + 360.0 * np.arange(lines) / lines, n_cycles)
            fire = rng.random(cycle.size) < src["fire_prob"]
            cycle, ph = cycle[fire], ph[fire] + rng.normal(0, 1.0, fire.sum())
            t = (cycle + np.mod((ph - phase0) / 360.0, 1.0)) / f_act
            a = level * (1 + 0.08 * rng.standard_normal(t.size))
        times.append(t)
        amps.append(a)
        phases.append(np.mod(phase0 + 360.0 * f_act * t, 360.0))
    return np.concatenate(times), np.concatenate(phases), np.maximum(np.concatenate(amps), 0.0)


# 65,536 standard-normal values drawn once from a fixed seed: indexing them with random 16-bit
# words is ~4x faster than drawing 153,600 normals per window, and the per-window noise is still
# a pure function of the window's own generator.
_GAUSS_TABLE = np.random.default_rng(0x6D6164).standard_normal(1 << 16).astype(np.float32)


def _gaussian_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """n float32 samples, approximately N(0, 1)."""
    return _GAUSS_TABLE.take(np.frombuffer(rng.bytes(2 * n), dtype="<u2"))


def _synthesize(
    rng: np.random.Generator,
    *,
    sensor: dict[str, Any],
    label: int,
    defect: dict[str, Any],
    intensity: float,
    interference: list[dict[str, Any]],
    power_freq_hz: float,
    t_start: float,
    prpd_style: PrpdStyle | None = None,
    style_rng: np.random.Generator | None = None,
) -> tuple[SyntheticWindow, PulseEvents]:
    sigma, gain = sensor["noise_sigma"], sensor["gain"]
    f_act = power_freq_hz + sensor["freq_dev_hz"]
    # Supply phase at the window start, as seen from the sensor's (offset) zero.
    phase0 = float(np.mod(sensor["phase_offset_deg"] + 360.0 * f_act * t_start, 360.0))
    n_cycles = int(np.ceil(WINDOW_SECONDS * f_act)) + 1

    pd_phase, pd_amp = _defect_events(rng, label, defect, intensity, n_cycles, sigma, gain)
    pd_cycle = rng.integers(-1, n_cycles, pd_phase.size)
    pd_time = (pd_cycle + np.mod((pd_phase - phase0) / 360.0, 1.0)) / f_act
    it_time, it_phase, it_amp = _interference_events(
        rng, interference, n_cycles, f_act, sigma, gain, phase0, t_start
    )
    time = np.concatenate([pd_time, it_time])
    keep = (time >= 0) & (time < WINDOW_SECONDS)
    events = PulseEvents(
        time_s=time[keep],
        true_phase_deg=np.concatenate([pd_phase, it_phase])[keep],
        magnitude=np.concatenate([pd_amp, it_amp])[keep],
        is_pd=np.concatenate([np.ones(pd_phase.size, bool), np.zeros(it_time.size, bool)])[keep],
    )

    # Series: baseline + slow per-second wander + Gaussian floor + single-sample peaks (peak-hold: max, not sum).
    signal = _gaussian_noise(rng, WINDOW_SAMPLES) * np.float32(sigma)
    signal = signal.reshape(WINDOW_ROWS, -1)
    signal += np.float32(sensor["baseline"]) + rng.normal(0, 0.06 * sigma, (WINDOW_ROWS, 1)).astype(np.float32)
    signal = signal.reshape(-1)
    index = (events.time_s * SAMPLE_RATE_HZ).astype(np.int64)
    peaks = np.zeros(WINDOW_SAMPLES + 1, np.float32)
    np.maximum.at(peaks, index, events.magnitude.astype(np.float32))
    np.maximum.at(peaks, index + 1, (events.magnitude * sensor["tail_fraction"]).astype(np.float32))
    signal += peaks[:WINDOW_SAMPLES]
    if sensor["glitches"]:
        where = rng.integers(0, WINDOW_SAMPLES, sensor["glitches"])
        signal[where] = rng.uniform(0, 10, where.size).astype(np.float32)
    np.rint(signal, out=signal)
    np.clip(signal, 0, ADC_MAX, out=signal)
    series = signal.astype(np.int16)

    # Image: the same events, at the magnitude the series shows, above the detection threshold.
    shown = series.reshape(-1)[index].astype(np.float64) - sensor["baseline"]
    visible = shown > DETECT_THRESHOLD_SIGMA * sigma
    observed_phase = np.mod(360.0 * power_freq_hz * events.time_s[visible], 360.0)  # renderer's reference
    image = render_styled(observed_phase, shown[visible], WINDOW_SECONDS * power_freq_hz, sigma, prpd_style,
                          style_rng if style_rng is not None else np.random.default_rng(0))
    params = {
        "generator_version": GENERATOR_VERSION,
        "label": label,
        "class_name": CLASS_NAMES[label],
        "power_freq_hz": power_freq_hz,
        "intensity": float(intensity),
        "sensor": sensor,
        "defect": defect,
        "interference": interference,
        "n_pd_events": int(events.is_pd.sum()),
        "n_interference_events": int((~events.is_pd).sum()),
        "n_visible_events": int(visible.sum()),
    }
    return SyntheticWindow(image=image, series=series.reshape(WINDOW_ROWS, -1), label=label, params=params), events


def _window_plan(preset: str | Preset, seed: int, index: int, label: int | None, power_freq_hz: float):
    p = check_preset(preset)
    seed, index = check_non_negative_int("seed", seed), check_non_negative_int("index", index)
    if label is None:
        label = balanced_label(preset, seed, index)
    elif label not in range(NUM_CLASSES):
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label!r}")
    power_freq_hz = _check_freq(power_freq_hz)
    rng = _rng(_PRESET_IDS[p.name], seed, 0, index)
    sensor = _draw_sensor(rng, p)
    defect = _draw_defect(rng, label, p)
    intensity = _uniform(rng, p.intensity) if label not in (NORMAL, NOISE) else 0.0
    multi = label in (SURFACE, CORONA, VOID) and rng.random() < p.multi_source_prob
    if label == NOISE or multi:
        interference = _draw_interference(rng, True, power_freq_hz)
    elif rng.random() < p.weak_interference_prob:
        interference = _draw_interference(rng, False, power_freq_hz)
    else:
        interference = []
    extra = {"preset": p.name, "seed": seed, "index": index, "multi_source": bool(multi)}
    return rng, dict(sensor=sensor, label=int(label), defect=defect, intensity=intensity,
                     interference=interference, power_freq_hz=power_freq_hz, t_start=0.0), extra


def pick_family(preset: str | Preset, seed: int, index: int, families: tuple[str, ...]) -> str:
    """The PRPD rendering family of window `index` when a data set mixes `families` (seeded, uniform)."""
    if len(families) == 1:
        return families[0]
    rng = _rng(_PRESET_IDS[check_preset(preset).name], seed, _FAMILY_WORD, index)
    return families[int(rng.integers(len(families)))]


def generate_window_events(
    preset: str | Preset, seed: int, index: int, *, label: int | None = None,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ, prpd_family: str | None = None,
) -> tuple[SyntheticWindow, PulseEvents]:
    """generate_window plus the pulse events behind it (for tests and figures)."""
    rng, plan, extra = _window_plan(preset, seed, index, label, power_freq_hz)
    if prpd_family is not None and prpd_family != "native":
        # The style has its own stream: the series, the label and the events stay those of the native window.
        check_families([prpd_family])
        style_rng = _rng(_PRESET_IDS[check_preset(preset).name], seed, _STYLE_WORD, index,
                         zlib.crc32(prpd_family.encode()))
        plan.update(prpd_style=draw_style(prpd_family, style_rng), style_rng=style_rng)
        extra["prpd_family"] = prpd_family
        extra["prpd_style"] = dataclasses.asdict(plan["prpd_style"]) if plan["prpd_style"] else None
    window, events = _synthesize(rng, **plan)
    window.params.update(extra)
    return window, events


def generate_window(
    preset: str | Preset, seed: int, index: int, *, label: int | None = None,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ, prpd_family: str | None = None,
) -> SyntheticWindow:
    """One 20 s window; a pure function of (preset, seed, index) (and label / power_freq_hz / PRPD family
    if given). `prpd_family` (mad.data.prpd_styles) changes only how the PRPD image is drawn."""
    return generate_window_events(preset, seed, index, label=label, power_freq_hz=power_freq_hz,
                                  prpd_family=prpd_family)[0]


def generate_stream_segment(
    preset: str,
    seed: int,
    sensor_index: int,
    window_index: int,
    label: int,
    intensity: float,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ,
) -> SyntheticWindow:
    """Window `window_index` (20 s each, back to back) of one sensor's continuous stream.

    The sensor's nuisance (gain, baseline, floor, phase offset, interference sources) and each
    defect's geometry are drawn once per sensor, so consecutive windows look like one sensor;
    interference pulse trains run on across window boundaries. Noise class = the sensor's strong
    interference source switched on.
    """
    p = check_preset(preset)
    seed, sensor_index = check_non_negative_int("seed", seed), check_non_negative_int("sensor_index", sensor_index)
    window_index = check_non_negative_int("window_index", window_index)
    if label not in range(NUM_CLASSES):
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label!r}")
    if not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    power_freq_hz = _check_freq(power_freq_hz)
    words = (_STREAM_DOMAIN, _PRESET_IDS[preset], seed, sensor_index)
    sensor_rng = _rng(*words, 0)
    sensor = _draw_sensor(sensor_rng, p)
    sensor["freq_dev_hz"] = 0.0  # a stream keeps phase across windows only with a steady supply
    strong = _draw_interference(sensor_rng, True, power_freq_hz)
    has_weak = sensor_rng.random() < p.weak_interference_prob
    weak = _draw_interference(sensor_rng, False, power_freq_hz) if has_weak else []
    defect = _draw_defect(_rng(*words, 1, label), label, p)
    window, _ = _synthesize(
        _rng(*words, 2, window_index),
        sensor=sensor,
        label=int(label),
        defect=defect,
        intensity=float(intensity),
        interference=strong if label == NOISE else weak,
        power_freq_hz=power_freq_hz,
        t_start=window_index * float(WINDOW_SECONDS),
    )
    window.params.update(preset=preset, seed=seed, sensor_index=sensor_index, window_index=window_index)
    return window

