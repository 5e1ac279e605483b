"""Plot the shipped model's training history: validation macro-F1 and training loss per epoch, against the
number of training windows seen, one colour per recipe step.

Run: .venv/bin/python bench/plot_training_history.py [--csv models/mad_small_training_metrics.csv]
                                                     [--out docs/img/mad_small_training.png]
The CSV is the steps' metrics.csv files concatenated with a `run` column (docs/training.md). Runs whose
names start with the same word (`step3 (...; H200)`, `step3 (...; CPU)`) are the same step run twice
and start at the same point.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt

from mad.plotting import save_figure


def read_history(path: Path) -> dict[str, list[dict[str, float]]]:
    """Rows per run (recipe step), in file order, with numeric fields as floats."""
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            runs[row["run"]].append({key: float(value) for key, value in row.items()
                                     if key not in ("run", "stage")})
    return runs


def windows_per_epoch(rows: list[dict[str, float]]) -> float:
    """Windows of one epoch: fit logs samples/s over the epoch's training seconds, so their product."""
    first = rows[0]
    return first["train_samples_per_s"] * first["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=Path("models/mad_small_training_metrics.csv"))
    parser.add_argument("--out", type=Path, default=Path("docs/img/mad_small_training.png"))
    args = parser.parse_args()
    runs = read_history(args.csv)
    fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    seen = 0.0
    step_start: dict[str, float] = {}  # runs of the same step (e.g. step 3 on a GPU and on the CPU) share a start
    for name, rows in runs.items():
        per_epoch = windows_per_epoch(rows)
        step = name.split()[0]
        if step not in step_start:
            step_start[step] = seen
            seen += per_epoch * len(rows)
        start = step_start[step]
        x = [(start + per_epoch * (i + 1)) / 1000 for i in range(len(rows))]
        ax_f1.plot(x, [r["val_macro_f1"] for r in rows], "o-", label=name)
        ax_loss.plot(x, [r["train_loss"] for r in rows], "o-", label=name)
        print(f"{name}: {len(rows)} epochs, ~{per_epoch:,.0f} windows each, best val macro-F1 "
              f"{max(r['val_macro_f1'] for r in rows):.4f}")
    ax_f1.axhline(0.99, color="grey", linestyle="--", linewidth=1, label="target 0.99")
    ax_f1.set(xlabel="training windows seen (thousands)", ylabel="validation macro-F1",
              title="validation macro-F1 per epoch", ylim=(0.88, 1.0))
    ax_loss.set(xlabel="training windows seen (thousands)", ylabel="training loss (CE + flow NLL)",
                title="training loss per epoch", yscale="log")
    ax_f1.legend(fontsize=7, loc="lower right")
    ax_f1.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    print(f"wrote {save_figure(fig, args.out)}")


if __name__ == "__main__":
    main()
