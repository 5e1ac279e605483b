"""Synthetic PD windows in the AI Hub format, after ../shared/docs/pd-physics.md (see docs/data.md).

A window is built from pulse EVENTS (time, true supply phase, magnitude): the series places them
as single-sample peaks (the fixture's pulses are one sample wide) on baseline + Gaussian noise,
and the PRPD image is the phase-resolved accumulation of the same events as the series shows them.
Nuisance variables (phase offset, gain, baseline, noise floor, supply frequency drift, weak
interference, glitches, intensity) are drawn from the same ranges for every class.
Every draw comes from np.random.Generator(PCG64) seeded by SeedSequence over integers only.

Interference and channel nuisances are named NOISE FAMILIES (`NOISE_FAMILIES`, docs/data.md): by default
a window draws the legacy mixture of `train`, `random` and `converter` (byte-identical to generator
version 2); `noise_families=(...)` makes each window pick one family from the given names instead.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
_NOISE_PICK_WORD, _NOISE_WORD = 6, 8  # stream words of a window's noise-family pick and of that family's draws


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
    is_pd: np.ndarray  # bool: discharge (True) or interference (False; also the threshold crossings of a
    # carrier's or hum's crests and of a pulse's ringing, which the instrument counts as pulses)


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
    """The legacy (default) mixture of interference sources: 1-2 distinct sources of `train`, `random`
    and `converter` (weights 0.45/0.35/0.20). Strong: amplitude 8-40 sigma x gain (Noise class, or
    multi-source). Weak: 2.5-4.5 sigma, no gain, at most ~20 pulses/s: mostly under the detection threshold.
    Its draws must not change: every default window (and the shipped model's test sets) depends on them."""
    n_sources = int(rng.integers(1, 3)) if strong else 1
    kinds = rng.choice(list(DEFAULT_NOISE_FAMILIES), size=n_sources, replace=False, p=[0.45, 0.35, 0.2])
    return [_draw_source(rng, str(kind), strong, power_freq_hz) for kind in kinds]


# ---------------------------------------------------------------- noise and nuisance families


@dataclass(frozen=True)
class NoiseFamily:
    """One named source of interference or channel nuisance (docs/data.md, "Noise and nuisance families").

    role "source": makes pulses (or a waveform) of its own; the dominant source of a Noise window, or a
    weak extra on any class. role "channel": changes how the sensor channel shows everything (floor,
    pulse shape, gain); it keeps the window's class and takes its sources from the default mixture.
    """

    name: str
    role: Literal["source", "channel"]
    physical_source: str  # one line: where it comes from in a plant
    series: str  # what it looks like in the 7,680 samples/s series
    prpd: str  # what it looks like in the PRPD
    default: bool = False  # drawn by the default (legacy) mixture


NOISE_FAMILIES: dict[str, NoiseFamily] = {f.name: f for f in (
    NoiseFamily("train", "source",
                "a periodic impulse source not synchronous with the supply (switched-mode supply, another "
                "50/60 Hz system, a digital clock or a rotating machine's commutator)",
                "constant-height single-sample pulses at a fixed rate (20-300 Hz strong, 5-20 Hz weak)",
                "lines that drift in phase across the window: a smear over all phases at one amplitude", True),
    NoiseFamily("random", "source",
                "random impulsive noise: switching transients, sparking on other plant, lightning-induced or "
                "traffic (ignition) impulses",
                "Poisson single-sample pulses (20-600/s strong), log-normal heights",
                "a band over all phases with a broad amplitude spread", True),
    NoiseFamily("converter", "source",
                "power-electronic commutation in a 6- or 12-pulse bridge (drives, rectifiers, HVDC)",
                "pulses at 6 or 12 fixed points of every supply cycle",
                "6 or 12 vertical lines equally spaced in phase, nearly constant amplitude", True),
    NoiseFamily("burst", "source",
                "contact bounce and arcing of relays, contactors or loose LV connections: intermittent bursts",
                "clusters of 3-30 pulses within 2-30 ms, a few clusters per second, at random times",
                "scattered clumps at random phases, broad amplitudes"),
    NoiseFamily("thyristor", "source",
                "single-phase phase-angle control (thyristor/triac heater controllers, soft starters, dimmers) "
                "firing at a set angle in both half-cycles",
                "clusters of 1-3 pulses at the firing angle, twice per cycle, the halves of unequal height",
                "two vertical lines 180 deg apart (like a void's two lobes, but narrow and of constant height)"),
    NoiseFamily("carrier", "source",
                "a narrow-band radio carrier (broadcast, power-line carrier) in the sensor's band, aliased "
                "by the acquisition to a tone of a few hundred Hz to 3.7 kHz",
                "a slowly fading sinusoid riding on the floor, a few sigma high",
                "threshold crossings at its crests: a flat band over all phases at one amplitude"),
    NoiseFamily("mains_hum", "source",
                "power-frequency pick-up: supply-frequency current on earth straps and the detector's limited "
                "rejection of it, with its harmonics",
                "the floor rises and falls with the supply (50/60 Hz plus a 2nd or 3rd harmonic)",
                "low-amplitude crossings bunched at the hum's crest phases, locked to the supply"),
    NoiseFamily("neighbour_corona", "source",
                "corona on a neighbouring phase, coupled into this sensor (a healthy asset: labelled Noise)",
                "Trichel-like pulses of near-constant height, many per cycle",
                "a corona band shifted by +-120 deg (the other phase's negative peak: about 30 or 150 deg)"),
    NoiseFamily("quantised_floor", "channel",
                "a quiet sensor on a coarse digitiser: a floor of 0.4-2 counts sigma on a baseline of tens "
                "of counts, stepped by 1, 2 or 4 counts",
                "a few discrete levels around the baseline; every amplitude scales with the small floor",
                "the same patterns, amplitudes on a coarse grid (striped)"),
    NoiseFamily("ringing", "channel",
                "a resonance of the sensor, its cable or the acquisition's filter: every pulse rings",
                "each pulse followed by a damped oscillation over ~8 samples (under- and overshoot)",
                "extra, smaller crossings a few samples (a few degrees) after the large pulses"),
    NoiseFamily("gain_drift", "channel",
                "gain that changes with temperature, AGC or an HFCT core biased by the load current",
                "the floor and every pulse scaled by a factor that drifts by up to 2x (period 30-300 s)",
                "clusters stretched in amplitude"),
)}
DEFAULT_NOISE_FAMILIES = tuple(name for name, f in NOISE_FAMILIES.items() if f.default)  # the legacy mixture
SOURCE_FAMILIES = tuple(name for name, f in NOISE_FAMILIES.items() if f.role == "source")
CHANNEL_FAMILIES = tuple(name for name, f in NOISE_FAMILIES.items() if f.role == "channel")
_WAVEFORM_KINDS = ("carrier", "mains_hum")  # sources that add a waveform to the series, not pulse events


def check_noise_families(names: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple; a name that is no noise family is refused with the known ones."""
    if isinstance(names, str):
        raise ValueError(f"noise families must be a list of names, got the string {names!r}")
    unknown = [n for n in names if n not in NOISE_FAMILIES]
    if unknown:
        raise ValueError(f"unknown noise families {unknown}; known: {sorted(NOISE_FAMILIES)}")
    return tuple(names)


def resolve_noise_families(spec: Sequence[str]) -> tuple[str, ...]:
    """An include/exclude list -> family names, in order. Items are family names, "all" (every family),
    "default" (the legacy three), "-name" (remove every earlier occurrence of name) or "-default": e.g.
    ["all", "-carrier", "-mains_hum"] trains without those two, ["all", "-default"] is every family the
    default mixture lacks. A repeated name weights it."""
    if isinstance(spec, str):
        raise ValueError(f"noise families must be a list of names, got the string {spec!r}")
    out: list[str] = []
    for item in spec:
        if item == "all":
            out += list(NOISE_FAMILIES)
        elif item == "default":
            out += list(DEFAULT_NOISE_FAMILIES)
        elif item == "-default":
            out = [name for name in out if name not in DEFAULT_NOISE_FAMILIES]
        elif isinstance(item, str) and item.startswith("-"):
            check_noise_families([item[1:]])
            out = [name for name in out if name != item[1:]]
        else:
            out += list(check_noise_families([item]))
    if spec and not out:
        raise ValueError(f"noise families {list(spec)} select no family")
    return tuple(out)


def _legacy_snr(rng: np.random.Generator, strong: bool) -> float:
    return float(rng.uniform(8, 40)) if strong else float(rng.uniform(2.5, 4.5))


def _draw_source(rng: np.random.Generator, kind: str, strong: bool, power_freq_hz: float) -> dict[str, Any]:
    """Parameters of one source of family `kind` (the draws of the three legacy kinds are frozen)."""
    if kind in ("train", "random", "converter", "burst", "thyristor"):
        snr = _legacy_snr(rng, strong)
    elif kind == "neighbour_corona":  # coupled from another phase: the weaker end of a direct corona's heights
        snr = float(rng.uniform(8, 25)) if strong else float(rng.uniform(2.5, 4.5))
    elif kind == "carrier":  # "a few sigma": the crests of a strong one cross the 5-sigma threshold
        snr = float(rng.uniform(5, 10)) if strong else float(rng.uniform(0.3, 1.0))
    elif kind == "mains_hum":  # weak: well under the threshold even at the crest of hum plus harmonic
        snr = float(rng.uniform(2.5, 4)) if strong else float(rng.uniform(0.1, 0.5))
    else:
        raise ValueError(f"{kind!r} is not a source noise family; sources: {list(SOURCE_FAMILIES)}")
    src: dict[str, Any] = {"kind": kind, "snr": snr, "scaled_by_gain": strong}
    if kind == "train":
        rate = float(rng.uniform(20, 300) if strong else rng.uniform(5, 20))
        ratio = rate / power_freq_hz
        if abs(ratio - round(ratio)) < 0.02:  # keep it non-synchronous: a locked train is a converter line
            rate += 0.05 * power_freq_hz
        src.update(rate_hz=rate, t0_s=float(rng.uniform(0, 1 / rate)), jitter_samples=float(rng.uniform(0.1, 0.5)))
    elif kind == "random":
        src.update(rate_hz=float(rng.uniform(20, 600) if strong else rng.uniform(2, 20)),
                   spread=float(rng.uniform(0.2, 0.6)))
    elif kind == "converter":
        src.update(lines_per_cycle=int(rng.choice([6, 12])), phase_deg=float(rng.uniform(0, 360)),
                   fire_prob=float(rng.uniform(0.2, 1.0) if strong else rng.uniform(0.01, 0.02)))
    elif kind == "burst":
        src.update(burst_rate_hz=float(rng.uniform(0.5, 4) if strong else rng.uniform(0.1, 0.5)),
                   pulses_per_burst=float(rng.uniform(5, 30) if strong else rng.uniform(3, 10)),
                   burst_ms=float(rng.uniform(2, 30)), spread=float(rng.uniform(0.2, 0.5)))
    elif kind == "thyristor":
        src.update(firing_deg=float(rng.uniform(20, 160)),  # after the zero crossing of the load's own voltage
                   reference_deg=float(rng.choice([0.0, 120.0, 240.0])),  # the load may hang on another phase
                   pulses_per_firing=int(rng.integers(1, 4)), negative_ratio=float(rng.uniform(0.5, 1.0)),
                   fire_prob=float(rng.uniform(0.8, 1.0) if strong else rng.uniform(0.01, 0.05)))
    elif kind == "neighbour_corona":
        src.update(centre_deg=float(rng.uniform(255, 285) + rng.choice([-120.0, 120.0])),
                   half_width_deg=float(rng.uniform(20, 40)),
                   rate_per_cycle=float(rng.uniform(3, 20) if strong else rng.uniform(0.2, 1.0)),
                   amp_spread=float(rng.uniform(0.04, 0.12)))
    elif kind == "carrier":
        src.update(freq_hz=float(rng.uniform(150, 3700)), phase_rad=float(rng.uniform(0, 2 * np.pi)),
                   fade_depth=float(rng.uniform(0, 0.5)), fade_hz=float(rng.uniform(0.05, 0.5)),
                   fade_rad=float(rng.uniform(0, 2 * np.pi)))
    else:  # mains_hum
        src.update(phase_deg=float(rng.uniform(0, 360)), harmonic=int(rng.choice([2, 3])),
                   harmonic_ratio=float(rng.uniform(0.2, 0.8)), harmonic_phase_deg=float(rng.uniform(0, 360)))
    return src


def _draw_channel(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    """Parameters of one channel family (applied to the whole window)."""
    if kind == "quantised_floor":
        return {"kind": kind, "noise_sigma": float(rng.uniform(0.4, 2.0)), "step": int(rng.choice([1, 2, 4]))}
    if kind == "ringing":
        return {"kind": kind, "first_lobe": float(rng.uniform(0.4, 0.9)), "decay": float(rng.uniform(0.35, 0.7)),
                "period_samples": float(rng.uniform(2.0, 4.0))}
    if kind == "gain_drift":
        return {"kind": kind, "depth": float(rng.uniform(0.25, 0.7)), "period_s": float(rng.uniform(30, 300)),
                "phase_rad": float(rng.uniform(0, 2 * np.pi))}
    raise ValueError(f"{kind!r} is not a channel noise family; channels: {list(CHANNEL_FAMILIES)}")


def _family_sources(rng: np.random.Generator, family: str, families: tuple[str, ...], strong: bool,
                    power_freq_hz: float) -> list[dict[str, Any]]:
    """A window's sources when its family is the source family `family`: it first; a strong draw may add a
    second source from the set's source families (a Noise window with two sources, as the legacy mixture)."""
    sources = [_draw_source(rng, family, strong, power_freq_hz)]
    pool = [f for f in families if NOISE_FAMILIES[f].role == "source"]
    if strong and rng.random() < 0.5:
        sources.append(_draw_source(rng, pool[int(rng.integers(len(pool)))], strong, power_freq_hz))
    return sources


def pick_noise_family(preset: str | Preset, seed: int, index: int, families: tuple[str, ...]) -> str:
    """The noise family of window `index` when a data set mixes `families` (seeded, uniform; repeat to weight)."""
    if len(families) == 1:
        return families[0]
    rng = _rng(_PRESET_IDS[check_preset(preset).name], seed, _NOISE_PICK_WORD, index)
    return families[int(rng.integers(len(families)))]


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
        if src["kind"] in _WAVEFORM_KINDS:  # no pulses of their own: _waveform adds them to the series
            continue
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
        elif src["kind"] == "converter":
            lines = src["lines_per_cycle"]
            cycle = np.repeat(np.arange(n_cycles), lines)
            ph = np.tile(src["phase_deg"] + 360.0 * np.arange(lines) / lines, n_cycles)
            fire = rng.random(cycle.size) < src["fire_prob"]
            cycle, ph = cycle[fire], ph[fire] + rng.normal(0, 1.0, fire.sum())
            t = (cycle + np.mod((ph - phase0) / 360.0, 1.0)) / f_act
            a = level * (1 + 0.08 * rng.standard_normal(t.size))
        else:
            t, a = _new_family_events(rng, src, level, n_cycles, f_act, phase0)
        times.append(t)
        amps.append(a)
        phases.append(np.mod(phase0 + 360.0 * f_act * t, 360.0))
    return np.concatenate(times), np.concatenate(phases), np.maximum(np.concatenate(amps), 0.0)


def _new_family_events(rng: np.random.Generator, src: dict[str, Any], level: float, n_cycles: int, f_act: float,
                       phase0: float) -> tuple[np.ndarray, np.ndarray]:
    """(window-relative time s, magnitude) of the pulse families added after generator version 2."""
    kind = src["kind"]
    if kind == "burst":
        n_bursts = rng.poisson(src["burst_rate_hz"] * WINDOW_SECONDS)
        starts = rng.uniform(-src["burst_ms"] / 1000, WINDOW_SECONDS, n_bursts)  # a burst may spill in
        sizes = 1 + rng.poisson(src["pulses_per_burst"] - 1, n_bursts)
        t = np.repeat(starts, sizes) + rng.uniform(0, src["burst_ms"] / 1000, sizes.sum())
        burst_level = np.repeat(np.exp(0.3 * rng.standard_normal(n_bursts)), sizes)  # one contact, one size
        return t, level * burst_level * np.exp(src["spread"] * rng.standard_normal(t.size))
    if kind == "thyristor":
        # Two firings per cycle, at the firing angle after each zero crossing of the load's voltage; each
        # commutation gives 1-3 pulses a sample apart, decaying; the two half-cycles differ in height.
        cycle = np.repeat(np.arange(-1, n_cycles), 2)
        half = np.tile([0, 1], n_cycles + 1)
        fire = rng.random(cycle.size) < src["fire_prob"]
        cycle, half = cycle[fire], half[fire]
        ph = src["reference_deg"] + src["firing_deg"] + 180.0 * half + rng.normal(0, 0.7, cycle.size)
        t_fire = (cycle + np.mod((ph - phase0) / 360.0, 1.0)) / f_act
        k = src["pulses_per_firing"]
        t = np.repeat(t_fire, k) + np.tile(np.arange(k), t_fire.size) / SAMPLE_RATE_HZ
        height = np.where(half == 1, src["negative_ratio"], 1.0)
        a = np.repeat(height, k) * np.tile(0.6 ** np.arange(k), t_fire.size)
        return t, level * a * (1 + 0.06 * rng.standard_normal(t.size))
    if kind == "neighbour_corona":
        n = rng.poisson(src["rate_per_cycle"] * n_cycles)
        ph = src["centre_deg"] + src["half_width_deg"] * (2 * rng.beta(1.3, 1.3, n) - 1)
        t = (rng.integers(-1, n_cycles, n) + np.mod((ph - phase0) / 360.0, 1.0)) / f_act
        return t, level * (1 + src["amp_spread"] * rng.standard_normal(n))
    raise ValueError(f"no pulse events for noise family {kind!r}")


# A sine table: 65,536 steps per cycle put the error under 1e-4 of the amplitude (far below one ADC count)
# and a table lookup is several times faster than np.sin over a window.
_SINE_TABLE = np.sin(2 * np.pi * np.arange(1 << 16) / (1 << 16)).astype(np.float32)
_SAMPLE_INDEX = np.arange(WINDOW_SAMPLES)
_SAMPLE_INDEX.setflags(write=False)


def _sine_cycles(start_cycles: float, freq_hz: float, n: np.ndarray) -> np.ndarray:
    """float32 sin(2 pi (start + freq * n / rate)) over sample indices n (phase kept in whole cycles, float64)."""
    cycles = np.mod(start_cycles, 1.0) + (freq_hz / SAMPLE_RATE_HZ) * n
    return _SINE_TABLE.take((cycles * (1 << 16)).astype(np.int64) & 0xFFFF)


def _waveform(sources: list[dict[str, Any]], sigma: float, gain: float, f_act: float, phase0: float,
              t_start: float) -> np.ndarray | None:
    """(WINDOW_SAMPLES,) float32 sum of the waveform sources (carrier, mains hum), or None if there are none.
    Both run on in absolute time, so a stream's consecutive windows join up."""
    waves = [s for s in sources if s["kind"] in _WAVEFORM_KINDS]
    if not waves:
        return None
    n = _SAMPLE_INDEX
    out = np.zeros(WINDOW_SAMPLES, np.float32)
    for src in waves:
        level = src["snr"] * sigma * (gain if src["scaled_by_gain"] else 1.0)
        if src["kind"] == "carrier":
            tone = _sine_cycles(src["freq_hz"] * t_start + src["phase_rad"] / (2 * np.pi), src["freq_hz"], n)
            # The fade is slow (<= 0.5 Hz): one value per 75 samples (~10 ms) changes by under 2 % a step.
            block = np.arange(0, WINDOW_SAMPLES, 75) / SAMPLE_RATE_HZ
            fade = 1.0 + src["fade_depth"] * np.sin(2 * np.pi * src["fade_hz"] * (t_start + block) + src["fade_rad"])
            out += np.repeat((level * fade).astype(np.float32), 75) * tone
        else:  # mains hum: locked to the supply as the sensor sees it (phase0 = sensor phase at the window start)
            start = phase0 / 360.0
            out += np.float32(level) * (_sine_cycles(start + src["phase_deg"] / 360.0, f_act, n)
                                        + np.float32(src["harmonic_ratio"])
                                        * _sine_cycles(src["harmonic"] * start + src["harmonic_phase_deg"] / 360.0,
                                                       src["harmonic"] * f_act, n))
    return out


def _ringing_kernel(channel: dict[str, Any], taps: int = 8) -> np.ndarray:
    """Samples 1..taps after a unit pulse: a damped cosine (period 2 samples = alternating under/overshoot)."""
    k = np.arange(1, taps + 1)
    return (channel["first_lobe"] * channel["decay"] ** (k - 1)
            * np.cos(2 * np.pi * (k - 1) / channel["period_samples"] + np.pi)).astype(np.float32)


def _gain_curve(channel: dict[str, Any], t_start: float) -> np.ndarray:
    """(WINDOW_SAMPLES,) float32 gain factor exp(depth sin(2 pi t / period + phase)), in absolute time."""
    # Slow (period >= 30 s): one value per 75 samples (~10 ms) changes by under 0.2 % a step.
    t_abs = t_start + np.arange(0, WINDOW_SAMPLES, 75) / SAMPLE_RATE_HZ
    gain = np.exp(channel["depth"] * np.sin(2 * np.pi * t_abs / channel["period_s"] + channel["phase_rad"]))
    return np.repeat(gain.astype(np.float32), 75)


def _crossings(series: np.ndarray, threshold: float, exclude: np.ndarray) -> np.ndarray:
    """Indices of local maxima of `series` above `threshold` that are not pulse events already: what an
    instrument's threshold detector counts from a waveform or a pulse's ringing."""
    x = series.astype(np.float32)
    peak = np.zeros(x.size, bool)
    peak[1:-1] = (x[1:-1] > threshold) & (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:])
    peak[exclude] = False
    return np.flatnonzero(peak)


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
    channel: dict[str, Any] | None = None,
) -> tuple[SyntheticWindow, PulseEvents]:
    if channel is not None and channel["kind"] == "quantised_floor":
        # A quieter channel: every amplitude (set in floor sigmas) scales down with the floor.
        sensor = {**sensor, "noise_sigma": channel["noise_sigma"]}
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
    dc = np.float32(sensor["baseline"]) + rng.normal(0, 0.06 * sigma, (WINDOW_ROWS, 1)).astype(np.float32)
    signal += dc
    signal = signal.reshape(-1)
    index = (events.time_s * SAMPLE_RATE_HZ).astype(np.int64)
    peaks = np.zeros(WINDOW_SAMPLES + 1, np.float32)
    np.maximum.at(peaks, index, events.magnitude.astype(np.float32))
    np.maximum.at(peaks, index + 1, (events.magnitude * sensor["tail_fraction"]).astype(np.float32))
    signal += peaks[:WINDOW_SAMPLES]
    # Noise families after generator version 2; a default window skips all of this (its bytes must not change).
    wave = _waveform(interference, sigma, gain, f_act, phase0, t_start)
    if wave is not None:
        signal += wave
    kind = channel["kind"] if channel is not None else None
    if kind == "ringing":  # every sample-level pulse (and its tail) rings; the ringing can undershoot the baseline
        signal += np.convolve(peaks[:WINDOW_SAMPLES], np.r_[np.float32(0), _ringing_kernel(channel)])[:WINDOW_SAMPLES]
    elif kind == "gain_drift":  # the amplifier scales floor and pulses alike; the ADC offset stays
        dc_samples = np.repeat(dc.reshape(-1), WINDOW_SAMPLES // WINDOW_ROWS)
        signal = dc_samples + (signal - dc_samples) * _gain_curve(channel, t_start)
    if sensor["glitches"]:
        where = rng.integers(0, WINDOW_SAMPLES, sensor["glitches"])
        signal[where] = rng.uniform(0, 10, where.size).astype(np.float32)
    if kind == "quantised_floor" and channel["step"] > 1:  # a coarser digitiser, rescaled to the 12-bit counts
        signal = np.rint(signal / np.float32(channel["step"])) * np.float32(channel["step"])
    np.rint(signal, out=signal)
    np.clip(signal, 0, ADC_MAX, out=signal)
    series = signal.astype(np.int16)

    # Image: the same events, at the magnitude the series shows, above the detection threshold.
    threshold = DETECT_THRESHOLD_SIGMA * sigma
    if kind == "quantised_floor":  # the detector's threshold sits above the quantisation noise, not below a step
        threshold = DETECT_THRESHOLD_SIGMA * float(np.hypot(sigma, channel["step"] / np.sqrt(12.0)))
    if wave is not None or kind == "ringing":
        # A waveform's crests and a pulse's ringing cross the threshold on their own: the instrument counts them.
        extra = _crossings(series.astype(np.float64) - sensor["baseline"], threshold, index[index < WINDOW_SAMPLES])
        t_extra = (extra + 0.5) / SAMPLE_RATE_HZ  # mid-sample, so that int(t * rate) is the sample again
        events = PulseEvents(
            time_s=np.concatenate([events.time_s, t_extra]),
            true_phase_deg=np.concatenate([events.true_phase_deg, np.mod(phase0 + 360.0 * f_act * t_extra, 360.0)]),
            magnitude=np.concatenate([events.magnitude, series[extra].astype(np.float64) - sensor["baseline"]]),
            is_pd=np.concatenate([events.is_pd, np.zeros(extra.size, bool)]),
        )
        index = (events.time_s * SAMPLE_RATE_HZ).astype(np.int64)
    shown = series.reshape(-1)[index].astype(np.float64) - sensor["baseline"]
    visible = shown > threshold
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
    if channel is not None:
        params["noise_channel"] = channel
    return SyntheticWindow(image=image, series=series.reshape(WINDOW_ROWS, -1), label=label, params=params), events


def _window_plan(preset: str | Preset, seed: int, index: int, label: int | None, power_freq_hz: float,
                 noise_families: tuple[str, ...] = ()):
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
    strong = label == NOISE or multi
    if strong:
        interference = _draw_interference(rng, True, power_freq_hz)
    elif rng.random() < p.weak_interference_prob:
        interference = _draw_interference(rng, False, power_freq_hz)
    else:
        interference = []
    extra: dict[str, Any] = {"preset": p.name, "seed": seed, "index": index, "multi_source": bool(multi)}
    plan = dict(sensor=sensor, label=int(label), defect=defect, intensity=intensity,
                interference=interference, power_freq_hz=power_freq_hz, t_start=0.0)
    if noise_families:
        # The legacy draws above still run (and are replaced here), so the sensor, the defect, whether the
        # window has interference and how strong stay those of the default window; the family's own draws
        # come from a stream of their own.
        family = pick_noise_family(p, seed, index, noise_families)
        family_rng = _rng(_PRESET_IDS[p.name], seed, _NOISE_WORD, index, zlib.crc32(family.encode()))
        _apply_family(plan, family, noise_families, family_rng, strong, power_freq_hz)
        extra["noise_family"] = family
    return rng, plan, extra


def _apply_family(plan: dict[str, Any], family: str, families: tuple[str, ...], rng: np.random.Generator,
                  strong: bool, power_freq_hz: float) -> None:
    """Make `family` the window's noise family: a source family replaces the window's interference
    sources (if it has any, at the same strength); a channel family keeps them and changes the channel."""
    if NOISE_FAMILIES[family].role == "channel":
        plan["channel"] = _draw_channel(rng, family)
    elif plan["interference"]:
        plan["interference"] = _family_sources(rng, family, families, strong, power_freq_hz)


def pick_family(preset: str | Preset, seed: int, index: int, families: tuple[str, ...]) -> str:
    """The PRPD rendering family of window `index` when a data set mixes `families` (seeded, uniform)."""
    if len(families) == 1:
        return families[0]
    rng = _rng(_PRESET_IDS[check_preset(preset).name], seed, _FAMILY_WORD, index)
    return families[int(rng.integers(len(families)))]


def _check_noise_option(noise_families: Sequence[str] | None) -> tuple[str, ...]:
    """() for the default (legacy) mixture, else the checked names."""
    if noise_families is None:
        return ()
    return check_noise_families(noise_families)


def generate_window_events(
    preset: str | Preset, seed: int, index: int, *, label: int | None = None,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ, prpd_family: str | None = None,
    noise_families: Sequence[str] | None = None,
) -> tuple[SyntheticWindow, PulseEvents]:
    """generate_window plus the pulse events behind it (for tests and figures)."""
    families = _check_noise_option(noise_families)
    rng, plan, extra = _window_plan(preset, seed, index, label, power_freq_hz, families)
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
    noise_families: Sequence[str] | None = None,
) -> SyntheticWindow:
    """One 20 s window; a pure function of (preset, seed, index) (and label / power_freq_hz / PRPD family /
    noise families if given). `prpd_family` (mad.data.prpd_styles) changes only how the PRPD image is drawn.

    `noise_families`: None or () draws the default (legacy) interference mixture. A tuple of NOISE_FAMILIES
    names makes the window pick one of them (seeded; repeat a name to weight it): a source family becomes
    the window's interference source (the dominant one in a Noise window, a weak one elsewhere), a channel
    family changes the sensor channel on top of the default sources. Passing the three default names
    explicitly is such a per-window pick too, not the legacy mixture.
    """
    return generate_window_events(preset, seed, index, label=label, power_freq_hz=power_freq_hz,
                                  prpd_family=prpd_family, noise_families=noise_families)[0]


def generate_stream_segment(
    preset: str,
    seed: int,
    sensor_index: int,
    window_index: int,
    label: int,
    intensity: float,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ,
    noise_families: Sequence[str] | None = None,
) -> SyntheticWindow:
    """Window `window_index` (20 s each, back to back) of one sensor's continuous stream.

    The sensor's nuisance (gain, baseline, floor, phase offset, interference sources) and each
    defect's geometry are drawn once per sensor, so consecutive windows look like one sensor;
    interference pulse trains, carriers, hum and gain drift run on across window boundaries. Noise
    class = the sensor's strong interference source switched on. `noise_families` (None: the default
    mixture): sensor s carries the family noise_families[s % len(noise_families)], so every family
    named gets sensors.
    """
    p = check_preset(preset)
    seed, sensor_index = check_non_negative_int("seed", seed), check_non_negative_int("sensor_index", sensor_index)
    window_index = check_non_negative_int("window_index", window_index)
    if label not in range(NUM_CLASSES):
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label!r}")
    if not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    power_freq_hz = _check_freq(power_freq_hz)
    families = _check_noise_option(noise_families)
    words = (_STREAM_DOMAIN, _PRESET_IDS[preset], seed, sensor_index)
    sensor_rng = _rng(*words, 0)
    sensor = _draw_sensor(sensor_rng, p)
    sensor["freq_dev_hz"] = 0.0  # a stream keeps phase across windows only with a steady supply
    strong = _draw_interference(sensor_rng, True, power_freq_hz)
    has_weak = sensor_rng.random() < p.weak_interference_prob
    weak = _draw_interference(sensor_rng, False, power_freq_hz) if has_weak else []
    channel = None
    family = families[sensor_index % len(families)] if families else None
    if family is not None:  # drawn once per sensor, from a stream of the family's own
        family_rng = _rng(*words, 3, zlib.crc32(family.encode()))
        if NOISE_FAMILIES[family].role == "channel":
            channel = _draw_channel(family_rng, family)
        else:
            strong = _family_sources(family_rng, family, families, True, power_freq_hz)
            weak = [_draw_source(family_rng, family, False, power_freq_hz)] if has_weak else []
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
        channel=channel,
    )
    window.params.update(preset=preset, seed=seed, sensor_index=sensor_index, window_index=window_index)
    if family is not None:
        window.params["noise_family"] = family
    return window
