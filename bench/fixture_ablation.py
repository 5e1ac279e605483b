"""Why does a model call the real AI Hub noise window (../shared/fixtures/aihub-sample) a defect?

A diagnosis, not a fit: the window is taken apart one feature at a time (docs/data.md, "The real
fixture", lists them) and each variant goes through a model with its PRPD rendered from the series, as
the agent does for a sensor that sends no frames. Prints top class, its probability and familiarity per
variant and model:

    .venv/bin/python bench/fixture_ablation.py --models models/mad_small.safetensors runs/x/mad_small.safetensors

Variants (each changes only what it names; the floor is the window's median):
  as_is            the window
  no_train         the 50 Hz pulse train's samples (> 45 counts, and the spill sample after) set to the floor
  no_dropouts      the 39 five-count dropouts set to the floor
  no_hum           the 60 Hz-locked floor modulation removed (per-phase-bin mean over the cycle subtracted)
  floor_only       all three removed: the quantised floor alone
  train_at_60hz    the train's pulses moved to a fixed phase of every 60 Hz cycle (a phase-locked source)
  series_only      the window with no image (signal branch alone)
  image_only       the rendered PRPD with a flat series (image branch alone)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.inference import load_classifier  # noqa: E402
from mad.constants import CLASS_NAMES, SAMPLE_RATE_HZ  # noqa: E402
from mad.data.aihub import read_series_csv, scan_aihub  # noqa: E402
from mad.data.prpd import render_prpd_from_series  # noqa: E402

FIXTURE = REPO / ".." / "shared" / "fixtures" / "aihub-sample"
POWER_HZ = 60.0
PULSE_ABOVE = 45  # counts: the train's pulses (docs/data.md)
DROPOUT = 5


def variants(series: np.ndarray) -> dict[str, np.ndarray]:
    flat = series.reshape(-1).astype(np.float32)
    floor = float(np.median(flat))
    pulses = np.flatnonzero(flat > PULSE_ABOVE)
    spill = np.clip(pulses + 1, 0, flat.size - 1)
    dropouts = np.flatnonzero(flat == DROPOUT)
    out: dict[str, np.ndarray] = {"as_is": flat.copy()}
    no_train = flat.copy()
    no_train[pulses] = floor
    no_train[spill[flat[spill] > floor + 8]] = floor
    out["no_train"] = no_train
    no_drop = flat.copy()
    no_drop[dropouts] = floor
    out["no_dropouts"] = no_drop
    phase = (np.arange(flat.size) / SAMPLE_RATE_HZ * POWER_HZ) % 1.0
    bins = np.minimum((phase * 128).astype(int), 127)
    clean = no_train.copy()
    clean[dropouts] = floor
    hum = np.bincount(bins, weights=clean, minlength=128) / np.maximum(np.bincount(bins, minlength=128), 1)
    out["no_hum"] = flat - (hum[bins] - hum.mean())
    out["floor_only"] = np.round(clean - (hum[bins] - hum.mean()))
    locked = no_train.copy()
    cycle = SAMPLE_RATE_HZ / POWER_HZ
    at = np.round(np.arange(0, flat.size - cycle, cycle) + 0.25 * cycle).astype(int)  # 90 deg of every cycle
    locked[at] = floor + float(np.median(flat[pulses] - floor))
    out["train_at_60hz"] = locked
    return {name: v.reshape(20, -1) for name, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, default=[REPO / "models" / "mad_small.safetensors"])
    args = parser.parse_args()
    entry = scan_aihub(FIXTURE, require_image=False).entries[0]
    series = read_series_csv(entry.csv)
    cases = variants(series)
    rows = []
    for path in args.models:
        classifier = load_classifier(path)
        for name, signal in cases.items():
            image = render_prpd_from_series(signal, float(SAMPLE_RATE_HZ), POWER_HZ)
            rows.append((path, name, classifier.score(image[None], signal[None].astype(np.float32))))
        flat = np.full_like(cases["as_is"], float(np.median(cases["as_is"])))
        rows.append((path, "series_only", classifier.score(None, cases["as_is"][None].astype(np.float32))))
        image = render_prpd_from_series(cases["as_is"], float(SAMPLE_RATE_HZ), POWER_HZ)
        rows.append((path, "image_only", classifier.score(image[None], flat[None].astype(np.float32))))
    print(f"{'model':<44} {'variant':<14} {'top':<8} {'p':>5} {'familiarity':>11}  probabilities")
    for path, name, scores in rows:
        p = scores.probabilities[0]
        top = int(np.argmax(p))
        fam = "-" if scores.familiarity is None else f"{float(scores.familiarity[0]):.2f}"
        probs = " ".join(f"{c[:2]} {v:.2f}" for c, v in zip(CLASS_NAMES, p, strict=True))
        print(f"{str(path)[-44:]:<44} {name:<14} {CLASS_NAMES[top]:<8} {p[top]:5.2f} {fam:>11}  {probs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
