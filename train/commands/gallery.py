"""`mad-train gallery`: PRPD images per class x preset and x rendering family, and series snippets (docs/img)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mad.constants import CLASS_NAMES, SAMPLE_RATE_HZ
from mad.data.prpd_styles import FAMILIES, HELD_OUT_FAMILIES
from mad.data.synthetic import PRESETS, generate_window
from mad.plotting import plt, save_figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--per-cell", type=int, default=2, help="examples per class x preset")


def _gallery(out: Path, seed: int, per_cell: int) -> Path:
    presets = list(PRESETS)
    fig, axes = plt.subplots(len(CLASS_NAMES), len(presets) * per_cell,
                             figsize=(2.0 * len(presets) * per_cell, 2.1 * len(CLASS_NAMES)), squeeze=False)
    for row, name in enumerate(CLASS_NAMES):
        for col_p, preset in enumerate(presets):
            for k in range(per_cell):
                ax = axes[row, col_p * per_cell + k]
                window = generate_window(preset, seed, k, label=row)
                ax.imshow(window.image, extent=(0, 360, 0, 1), aspect="auto")
                ax.set_xticks([0, 90, 180, 270, 360] if row == len(CLASS_NAMES) - 1 else [])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{preset} #{k}", fontsize=9)
                if col_p == 0 and k == 0:
                    ax.set_ylabel(name, fontsize=10)
    fig.suptitle("Synthetic PRPD (x: phase deg, y: magnitude, per-window scale)", fontsize=11)
    path = save_figure(fig, out / "prpd_gallery.png", dpi=80)
    return path


def _families(out: Path, seed: int) -> Path:
    """One window per class (rows) drawn by every PRPD rendering family (columns; ho_* held out)."""
    families = list(FAMILIES)
    fig, axes = plt.subplots(len(CLASS_NAMES), len(families), figsize=(1.45 * len(families), 1.6 * len(CLASS_NAMES)),
                             squeeze=False)
    for row, name in enumerate(CLASS_NAMES):
        for col, family in enumerate(families):
            ax = axes[row, col]
            ax.imshow(generate_window("easy", seed, 0, label=row, prpd_family=family).image, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(family, fontsize=8, color="firebrick" if family in HELD_OUT_FAMILIES else "black")
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle("The same easy windows drawn by each PRPD rendering family (red: held out from training)",
                 fontsize=10)
    return save_figure(fig, out / "prpd_families.png", dpi=80)


def _series(out: Path, seed: int) -> Path:
    fig, axes = plt.subplots(len(CLASS_NAMES), 2, figsize=(12, 2.0 * len(CLASS_NAMES)), squeeze=False)
    for row, name in enumerate(CLASS_NAMES):
        window = generate_window("standard", seed, 0, label=row)
        flat = window.series.reshape(-1)
        t = np.arange(flat.size) / SAMPLE_RATE_HZ
        axes[row, 0].plot(t, flat, lw=0.3)
        axes[row, 0].set_ylabel(f"{name}\nADC counts", fontsize=9)
        short = slice(0, SAMPLE_RATE_HZ // 10)  # 0.1 s = 6 cycles at 60 Hz
        axes[row, 1].plot(t[short] * 1000, flat[short], lw=0.6)
    axes[0, 0].set_title("whole 20 s window (standard preset)")
    axes[0, 1].set_title("first 100 ms")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (ms)")
    path = save_figure(fig, out / "series_snippets.png", dpi=80)
    return path


def run(args: argparse.Namespace) -> int:
    if args.per_cell < 1:
        raise SystemExit(f"--per-cell must be >= 1, got {args.per_cell}")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (_gallery(args.out, args.seed, args.per_cell), _families(args.out, args.seed),
                 _series(args.out, args.seed)):
        print(f"wrote {path}")
    return 0
