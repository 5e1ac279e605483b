"""`mad-train prpd-families`: a checkpoint's scores per PRPD rendering family, training vs held-out.

The same test windows (one preset, one seed) are drawn by every family (mad.data.prpd_styles), so the
families differ only in how the PRPD is drawn; image-only scores then say whether the image branch
reads the physics or the drawing. Writes families.md, families.json and families.png into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="models/mad_small.safetensors",
                        help="<name>.safetensors with its <name>.json sidecar")
    parser.add_argument("--preset", default="standard", help="synthetic preset of the test windows")
    parser.add_argument("--test-seed", type=int, default=1000, help="seed of the test windows (never a training seed)")
    parser.add_argument("--n", type=int, default=500, help="test windows per family (the same windows for each)")
    parser.add_argument("--families", default="all",
                        help="comma-separated family names, or 'all' (every training and held-out family)")
    parser.add_argument("--modalities", default="image", choices=["image", "both", "image,both"],
                        help="inputs to score: the PRPD alone, both inputs, or both of these")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint dir>/eval_families)")


def run(args: argparse.Namespace) -> int:
    from mad.data.datasets import SyntheticDataset
    from mad.data.prpd_styles import FAMILIES, HELD_OUT_FAMILIES, check_families
    from mad.runtime import CheckpointError
    from train.family_report import command_line, open_checkpoint
    from train.metrics import classification_report
    from train.predict import predict_probs

    try:
        families = list(FAMILIES) if args.families == "all" else check_families(
            [f.strip() for f in args.families.split(",") if f.strip()])
        if args.n < 5:
            raise ValueError(f"--n must be >= 5, got {args.n}")
        model, device, _ = open_checkpoint(args.checkpoint, args.device, args.test_seed)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"mad-train prpd-families: {exc}")
        return 2
    class_names = model.mad_meta["class_names"]
    variants = args.modalities.split(",")
    rows = []
    for family in families:
        dataset = SyntheticDataset(args.preset, args.test_seed, args.n, prpd_families=(family,))
        row = {"family": family, "held_out": family in HELD_OUT_FAMILIES}
        for variant in variants:
            probs, labels = predict_probs(model, dataset, device, args.batch_size, modalities=variant,
                                          desc=f"{family} ({variant})")
            report = classification_report(labels, probs, class_names)
            row[f"{variant}_macro_f1"] = report.macro_f1
            row[f"{variant}_accuracy"] = report.accuracy
        rows.append(row)
        print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    summary = _summary(rows, variants)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval_families"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(args.checkpoint), "preset": args.preset, "test_seed": args.test_seed, "n": args.n,
            "command": command_line("prpd-families", args)}
    (out / "families.json").write_text(json.dumps({**meta, "families": rows, "summary": summary}, indent=2) + "\n")
    (out / "families.md").write_text(_markdown(rows, summary, variants, meta))
    _plot(rows, variants, out / "families.png")
    for variant in variants:
        s = summary[variant]
        print(f"{variant}: native {s['native']:.4f}  training families (mean) {s['in_family']:.4f}  "
              f"held-out families (mean) {s['held_out']:.4f}  gap {s['gap']:+.4f}")
    print(f"wrote {out}/families.md, families.json, families.png")
    return 0


def _summary(rows: list[dict], variants: list[str]) -> dict[str, dict[str, float]]:
    """Per input variant: native, the mean over training families, over held-out ones, and their gap."""
    from train.family_report import mean

    summary = {}
    for variant in variants:
        key = f"{variant}_macro_f1"
        native = next((r[key] for r in rows if r["family"] == "native"), float("nan"))
        in_family = mean([r[key] for r in rows if not r["held_out"]])
        held_out = mean([r[key] for r in rows if r["held_out"]])
        summary[variant] = {"native": native, "in_family": in_family, "held_out": held_out,
                            "gap": held_out - in_family}
    return summary


def _markdown(rows: list[dict], summary: dict, variants: list[str], meta: dict) -> str:
    head = "| family | held out | " + " | ".join(f"{v} macro-F1 | {v} accuracy" for v in variants) + " |"
    lines = [f"# Scores per PRPD rendering family: {meta['checkpoint']}", "",
             f"{meta['n']} `{meta['preset']}` windows of seed {meta['test_seed']}, the same windows drawn by "
             "every family.", "", f"`{meta['command']}`", "", head, "|" + "---|" * (2 + 2 * len(variants))]
    for r in rows:
        cells = " | ".join(f"{r[f'{v}_macro_f1']:.4f} | {r[f'{v}_accuracy']:.4f}" for v in variants)
        lines.append(f"| {r['family']} | {'yes' if r['held_out'] else ''} | {cells} |")
    lines += ["", "| input | native | training families (mean) | held-out families (mean) | held-out - training |",
              "|---|---|---|---|---|"]
    for v in variants:
        s = summary[v]
        lines.append(f"| {v} | {s['native']:.4f} | {s['in_family']:.4f} | {s['held_out']:.4f} | {s['gap']:+.4f} |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], variants: list[str], path: Path) -> None:
    from train.family_report import grouped_bars

    grouped_bars([r["family"] for r in rows], {v: [r[f"{v}_macro_f1"] for r in rows] for v in variants},
                 [r["held_out"] for r in rows], path, ylabel="macro-F1",
                 title="macro-F1 per PRPD rendering family (shaded: held out from training)")
