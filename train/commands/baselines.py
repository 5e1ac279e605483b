"""`mad-train baselines`: the difficulty ladder, simple classifiers per preset (docs/data.md).

- global: logistic regression on global statistics of a window (series mean, std, min, max,
  percentiles; mean image colour). Phase-blind: if it scored high, the data would carry a shortcut.
- phase: logistic regression on phase-resolved features of the detected pulses (36-bin phase
  histogram, pulse count, amplitude spread in noise sigmas): what a PD expert reads off a PRPD.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from mad.constants import DEFAULT_POWER_FREQ_HZ, SAMPLE_RATE_HZ
from mad.data.prpd import detect_pulses, noise_floor
from mad.data.synthetic import PRESETS, generate_window

PERCENTILES = (1, 5, 25, 50, 75, 95, 99, 99.9)
PHASE_BINS = 36


def global_features(series: np.ndarray, image: np.ndarray) -> np.ndarray:
    flat = series.reshape(-1).astype(np.float64)
    stats = [flat.mean(), flat.std(), flat.min(), flat.max(), *np.percentile(flat, PERCENTILES)]
    return np.concatenate([stats, image.reshape(-1, 3).mean(axis=0)])


def phase_features(series: np.ndarray, power_freq_hz: float = DEFAULT_POWER_FREQ_HZ) -> np.ndarray:
    _, sigma = noise_floor(series)
    index, amplitude = detect_pulses(series)
    phase = np.mod(index * (power_freq_hz / SAMPLE_RATE_HZ), 1.0)
    hist = np.bincount((phase * PHASE_BINS).astype(np.int64), minlength=PHASE_BINS)[:PHASE_BINS]
    hist = hist / max(index.size, 1)
    snr = amplitude / sigma
    spread = [np.log1p(snr.mean()), snr.std() / max(snr.mean(), 1e-9)] if index.size else [0.0, 0.0]
    return np.concatenate([hist, [np.log1p(index.size)], spread])


def feature_table(preset: str, seed: int, n: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g, p, y = [], [], []
    for i in tqdm(range(n), desc=f"features {preset}", disable=not progress, unit="win"):
        window = generate_window(preset, seed, i)
        g.append(global_features(window.series, window.image))
        p.append(phase_features(window.series))
        y.append(window.label)
    return np.array(g), np.array(p), np.array(y)


def fit_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(train_x, train_y)
    return float((model.predict(test_x) == test_y).mean())


def ladder(preset: str, n_train: int, n_test: int, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Accuracy of both baselines; train and test come from different seeds (disjoint by construction)."""
    g_tr, p_tr, y_tr = feature_table(preset, seed, n_train, progress)
    g_te, p_te, y_te = feature_table(preset, seed + 1, n_test, progress)
    return {"global": fit_score(g_tr, y_tr, g_te, y_te), "phase": fit_score(p_tr, y_tr, p_te, y_te)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="train seed; test uses seed + 1")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")


def run(args: argparse.Namespace) -> int:
    if args.n_train < 10 or args.n_test < 5 or args.seed < 0:
        raise SystemExit(f"need --n-train >= 10, --n-test >= 5, --seed >= 0 (got {args.n_train}, {args.n_test}, "
                         f"{args.seed})")
    results = {p: ladder(p, args.n_train, args.n_test, args.seed, progress=True) for p in args.presets}
    print(f"n_train={args.n_train}, n_test={args.n_test}, chance=0.20")
    print("| preset | global-stats LR | phase-resolved LR |")
    print("| --- | --- | --- |")
    for preset, acc in results.items():
        print(f"| {preset} | {acc['global']:.3f} | {acc['phase']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"n_train": args.n_train, "n_test": args.n_test, "results": results}, indent=2))
    return 0
