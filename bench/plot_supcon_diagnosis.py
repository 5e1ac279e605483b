"""Plot the SupCon diagnosis (configs/diag/): validation macro-F1 per optimiser step for CE only and for
SupCon-then-CE runs (nearest-centroid F1 on the projections during SupCon, the classifier's during CE),
and the SupCon projections' alignment and uniformity (docs/experiments.md, "The two-stage recipe").

Run after the fits (each writes runs/diag/<name>/metrics.csv):
    .venv/bin/python bench/plot_supcon_diagnosis.py --runs runs/diag --out docs/img/supcon_diagnosis.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib.pyplot as plt

from mad.plotting import save_figure


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/diag"))
    parser.add_argument("--out", type=Path, default=Path("docs/img/supcon_diagnosis.png"))
    args = parser.parse_args()
    runs = {p.parent.name: read(p) for p in sorted(args.runs.glob("*/metrics.csv"))}
    if not runs:
        parser.error(f"no */metrics.csv under {args.runs}")
    fig, (f1_ax, geo_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rows in runs.items():
        supcon = [r for r in rows if r["stage"] == "supcon"]
        offset = int(supcon[-1]["step"]) if supcon else 0
        line = None
        if supcon:
            (line,) = f1_ax.plot([int(r["step"]) for r in supcon], [float(r["val_macro_f1"]) for r in supcon],
                                 "--", label=f"{name}: SupCon (centroid)")
            geo_ax.plot([int(r["step"]) for r in supcon], [float(r["val_alignment"]) for r in supcon], "-",
                        color=line.get_color(), label=f"{name}: alignment")
            geo_ax.plot([int(r["step"]) for r in supcon], [float(r["val_uniformity"]) for r in supcon], ":",
                        color=line.get_color(), label=f"{name}: uniformity")
        ce = [r for r in rows if r["stage"] == "ce"]
        f1_ax.plot([offset + int(r["step"]) for r in ce], [float(r["val_macro_f1"]) for r in ce], "-",
                   color=None if line is None else line.get_color(), label=f"{name}: CE")
    f1_ax.set(xlabel="optimiser step (SupCon, then CE)", ylabel="validation macro-F1", ylim=(0, 1),
              title="mad_tiny on standard: CE only vs SupCon then CE")
    f1_ax.axhline(0.2, color="grey", lw=0.5)
    f1_ax.legend(fontsize=7)
    geo_ax.set(xlabel="SupCon step", title="projection geometry (lower alignment: tighter classes)")
    geo_ax.legend(fontsize=7)
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
