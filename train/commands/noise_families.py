"""`mad-train noise-families`: how a checkpoint calls Noise windows of each noise family, seen or unseen.

For every family (mad.data.synthetic.NOISE_FAMILIES) N Noise-class windows are generated whose
interference (source families) or channel (channel families) is that family, on the same test seed and
indices, so the families differ only in their noise. A defect vote (argmax Surface, Corona or Void) on
them would be a false alarm; the goal for families the checkpoint never saw is under 1 %. References:
N Noise windows of the default mixture, and N clean Normal windows (no weak interference) whose defect
votes are the false-alarm rate on a quiet sensor. Families are marked seen when the checkpoint's
training config drew them (data.synth_noise_families; empty = the default mixture).
Writes noise_families.md, noise_families.json and noise_families.png into --out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

DEFECT_CLASSES = ("Surface", "Corona", "Void")
GOAL_DEFECT_FRACTION = 0.01  # issue 14: under 1 % of an unseen family's windows may vote for a defect
REF_DEFAULT, REF_NORMAL = "(default mixture)", "(clean Normal)"

# A familiarity scorer: the windows of a data set -> one score each, higher = more familiar.
ScoreFn = Callable[[Dataset], np.ndarray]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="models/mad_small.safetensors",
                        help="<name>.safetensors with its <name>.json sidecar")
    parser.add_argument("--preset", default="standard", help="synthetic preset of the test windows")
    parser.add_argument("--test-seed", type=int, default=1000, help="seed of the test windows (never a training seed)")
    parser.add_argument("--n", type=int, default=200, help="Noise windows per family (the same indices for each)")
    parser.add_argument("--families", default="all",
                        help="comma-separated noise families, 'all', 'default', or '-name' to drop one "
                             "(e.g. all,-ringing)")
    parser.add_argument("--modalities", default="both", choices=["both", "image", "signal"],
                        help="inputs the model sees")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint dir>/eval_noise_families)")


class FamilyWindows(Dataset):
    """n windows of one class whose noise is `family` (None: the default mixture); item i uses index i."""

    def __init__(self, preset: Any, seed: int, n: int, label: int, family: str | None) -> None:
        self.preset, self.seed, self.n, self.label, self.family = preset, seed, n, label, family

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        from mad.data.datasets import make_item
        from mad.data.synthetic import generate_window

        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} windows")
        window = generate_window(self.preset, self.seed, index, label=self.label,
                                 noise_families=(self.family,) if self.family else None)
        return make_item(window.image, window.series, window.label, index)


def seen_families(training_config: dict[str, Any]) -> tuple[str, ...]:
    """Families a checkpoint's training drew: its data.synth_noise_families resolved, or the default
    mixture when that is empty or absent (every checkpoint trained before the field existed); () when
    it was not trained on generated data."""
    from mad.data.synthetic import DEFAULT_NOISE_FAMILIES, resolve_noise_families

    data = training_config.get("data") or {}
    if not str(data.get("spec", "synth:")).startswith("synth:"):
        return ()
    return tuple(dict.fromkeys(resolve_noise_families(data.get("synth_noise_families") or ()))
                 ) or DEFAULT_NOISE_FAMILIES


def vote_fractions(probs: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Fraction of windows per argmax class, the defect-vote fraction and the mean max-probability."""
    votes = np.bincount(probs.argmax(axis=1), minlength=len(class_names)) / max(len(probs), 1)
    out = {f"frac_{name.lower()}": float(v) for name, v in zip(class_names, votes, strict=True)}
    out["defect"] = float(sum(out[f"frac_{name.lower()}"] for name in DEFECT_CLASSES if name in class_names))
    out["mean_max_prob"] = float(probs.max(axis=1).mean()) if len(probs) else float("nan")
    return out


def evaluate_noise_families(model: Any, families: Sequence[str], seen: Sequence[str], *, preset: Any, seed: int,
                            n: int, device: Any, batch_size: int = 64, modalities: str = "both",
                            score_fn: ScoreFn | None = None, threshold: float | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Rows (one per family, then the two references) and a summary.

    HOOK (familiarity): `score_fn` gives each window a familiarity score (higher = more familiar), e.g. the
    model's `familiarity` output once it has one. With it every row gets its mean score and, with
    `threshold`, the fraction flagged unfamiliar (score < threshold), and the summary the familiarity
    AUROC of unseen-family windows against seen-family ones (positives: unseen; score: -familiarity)."""
    from mad.data.synthetic import NOISE, NOISE_FAMILIES, NORMAL, preset_variant
    from train.predict import predict_probs, predict_scores

    class_names = model.mad_meta["class_names"]
    preset_name = preset if isinstance(preset, str) else preset.name
    clean = preset_variant(preset_name, {"weak_interference_prob": 0.0})  # same windows, no weak source
    cases = [(f, FamilyWindows(preset, seed, n, NOISE, f)) for f in families]
    cases += [(REF_DEFAULT, FamilyWindows(preset, seed, n, NOISE, None)),
              (REF_NORMAL, FamilyWindows(clean, seed, n, NORMAL, None))]
    rows, scores = [], {}
    calibration = getattr(model, "calibration", None)
    if calibration is not None and threshold is None:
        threshold = float(calibration.threshold)
    for name, dataset in cases:
        if calibration is not None:  # one pass: calibrated probabilities and the familiarity score
            out = predict_scores(model, dataset, device, batch_size, modalities=modalities,
                                 desc=name if progress else None)
            probs, scores[name] = out["probs"], out["familiarity"]
        else:
            probs, _ = predict_probs(model, dataset, device, batch_size, modalities=modalities,
                                     desc=name if progress else None)
            if score_fn is not None:
                scores[name] = np.asarray(score_fn(dataset), dtype=np.float64)
        reference = name in (REF_DEFAULT, REF_NORMAL)
        row: dict[str, Any] = {"family": name, "role": "reference" if reference else NOISE_FAMILIES[name].role,
                               "seen": True if reference else name in seen, "n": len(probs),
                               **vote_fractions(probs, class_names)}
        if name in scores:
            row["mean_familiarity"] = float(scores[name].mean())
            if threshold is not None:
                familiar = scores[name] >= threshold
                row["unfamiliar"] = float((~familiar).mean())
                # What the agent does: an unfamiliar window never votes, so only familiar defect votes count.
                row["defect_gated"] = float(vote_fractions(probs[familiar], class_names)["defect"] * familiar.mean()
                                            if familiar.any() else 0.0)
        rows.append(row)
        if progress:
            print(_row_line(row), flush=True)
    return {"rows": rows, "summary": _summary(rows, scores)}


def _summary(rows: list[dict], scores: dict[str, np.ndarray]) -> dict[str, Any]:
    from train.family_report import mean
    from train.metrics import binary_auroc

    families = [r for r in rows if r["role"] != "reference"]
    unseen = [r for r in families if not r["seen"]]
    seen = [r for r in families if r["seen"]]
    by_name = {r["family"]: r for r in rows}
    summary: dict[str, Any] = {
        "unseen_families": [r["family"] for r in unseen],
        "unseen_defect_mean": mean([r["defect"] for r in unseen]),
        "unseen_defect_max": max((r["defect"] for r in unseen), default=float("nan")),
        "unseen_over_goal": [r["family"] for r in unseen if r["defect"] >= GOAL_DEFECT_FRACTION],
        "seen_defect_mean": mean([r["defect"] for r in seen]),
        "default_mixture_defect": by_name[REF_DEFAULT]["defect"],
        "false_alarm_rate": by_name[REF_NORMAL]["defect"],  # defect votes on clean Normal windows
        "goal_defect_fraction": GOAL_DEFECT_FRACTION,
    }
    if "defect_gated" in rows[0]:
        summary.update(
            unseen_defect_gated_mean=mean([r["defect_gated"] for r in unseen]),
            unseen_defect_gated_max=max((r["defect_gated"] for r in unseen), default=float("nan")),
            unseen_gated_over_goal=[r["family"] for r in unseen if r["defect_gated"] >= GOAL_DEFECT_FRACTION],
            seen_defect_gated_mean=mean([r["defect_gated"] for r in seen]),
            false_alarm_rate_gated=by_name[REF_NORMAL]["defect_gated"],
        )
    if scores:
        unseen_names = {r["family"] for r in unseen}
        seen_names = {r["family"] for r in seen} | {REF_DEFAULT}  # the default mixture is seen by definition
        pool = [(name, s) for name, s in scores.items() if name in unseen_names | seen_names]
        if pool and unseen_names and seen_names:
            labels = np.concatenate([np.full(s.size, name in unseen_names) for name, s in pool])
            summary["familiarity_auroc_unseen_vs_seen"] = binary_auroc(labels, -np.concatenate([s for _, s in pool]))
    return summary


def _row_line(row: dict) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    from train.family_report import markdown_table

    rows, summary = result["rows"], result["summary"]
    familiar = "unfamiliar" in rows[0]
    header = ["family", "role", "seen in training", "defect vote", "Surface", "Corona", "Void", "Noise", "Normal",
              "mean max-prob"] + (["flagged unfamiliar", "defect vote, gate on"] if familiar else [])
    body = []
    for r in rows:
        cells = [f"`{r['family']}`" if r["role"] != "reference" else r["family"], r["role"],
                 "yes" if r["seen"] else "**no**", _pct(r["defect"]), _pct(r["frac_surface"]), _pct(r["frac_corona"]),
                 _pct(r["frac_void"]), _pct(r["frac_noise"]), _pct(r["frac_normal"]), f"{r['mean_max_prob']:.3f}"]
        body.append(cells + ([_pct(r["unfamiliar"]), _pct(r["defect_gated"])] if familiar else []))
    lines = [f"# Noise windows per noise family: {meta['checkpoint']}", "",
             f"{meta['n']} `{meta['preset']}` Noise windows of seed {meta['test_seed']} per family (the same indices "
             f"for each); seen = drawn by the checkpoint's training ({', '.join(meta['seen']) or 'none'}).", "",
             f"`{meta['command']}`", "", *markdown_table(header, body), ""]
    lines.append(f"- unseen families: defect vote mean {_pct(summary['unseen_defect_mean'])}, max "
                 f"{_pct(summary['unseen_defect_max'])}; at or over the {_pct(GOAL_DEFECT_FRACTION)} goal: "
                 f"{', '.join(summary['unseen_over_goal']) or 'none'}")
    lines.append(f"- seen families: defect vote mean {_pct(summary['seen_defect_mean'])}; default mixture "
                 f"{_pct(summary['default_mixture_defect'])}")
    lines.append(f"- false-alarm rate (defect votes on clean Normal windows): {_pct(summary['false_alarm_rate'])}")
    if "unseen_defect_gated_mean" in summary:
        lines.append(f"- with the familiarity gate on (as the agent runs): unseen families' defect vote mean "
                     f"{_pct(summary['unseen_defect_gated_mean'])}, max {_pct(summary['unseen_defect_gated_max'])} "
                     f"(over the goal: {', '.join(summary['unseen_gated_over_goal']) or 'none'}); seen "
                     f"{_pct(summary['seen_defect_gated_mean'])}; clean Normal "
                     f"{_pct(summary['false_alarm_rate_gated'])}")
    if "familiarity_auroc_unseen_vs_seen" in summary:
        lines.append(f"- familiarity AUROC, unseen vs seen families: {summary['familiarity_auroc_unseen_vs_seen']:.3f}")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    from train.family_report import grouped_bars

    series = {"defect vote": [r["defect"] for r in rows], "Noise": [r["frac_noise"] for r in rows],
              "Normal": [r["frac_normal"] for r in rows]}
    if "unfamiliar" in rows[0]:
        series["flagged unfamiliar"] = [r["unfamiliar"] for r in rows]
    grouped_bars([r["family"] for r in rows], series, [not r["seen"] for r in rows], path,
                 ylabel="fraction of windows", hline=GOAL_DEFECT_FRACTION,
                 title="votes on Noise windows per noise family (shaded: unseen in training; dashed: 1 % goal)")


def familiarity_hook(model: Any) -> tuple[ScoreFn | None, float | None]:
    """An external familiarity scorer for a model without calibration (None, None: none). A calibrated model
    (mad-train calibrate) needs none: `evaluate_noise_families` reads its own familiarity and threshold."""
    return None, None


def run(args: argparse.Namespace) -> int:
    from mad.data.synthetic import NOISE_FAMILIES, resolve_noise_families
    from mad.runtime import CheckpointError
    from train.family_report import command_line, open_checkpoint

    try:
        names = [f.strip() for f in args.families.split(",") if f.strip()]
        families = list(dict.fromkeys(resolve_noise_families(names)))
        if not families:
            raise ValueError(f"--families {args.families!r} names no family; known: {sorted(NOISE_FAMILIES)}")
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        model, device, training = open_checkpoint(args.checkpoint, args.device, args.test_seed)
        seen = seen_families(training)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"mad-train noise-families: {exc}")
        return 2
    score_fn, threshold = familiarity_hook(model)
    result = evaluate_noise_families(model, families, seen, preset=args.preset, seed=args.test_seed, n=args.n,
                                     device=device, batch_size=args.batch_size, modalities=args.modalities,
                                     score_fn=score_fn, threshold=threshold)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval_noise_families"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(args.checkpoint), "preset": args.preset, "test_seed": args.test_seed, "n": args.n,
            "modalities": args.modalities, "seen": list(seen), "command": command_line("noise-families", args)}
    (out / "noise_families.json").write_text(json.dumps({**meta, **result}, indent=2) + "\n")
    (out / "noise_families.md").write_text(_markdown(result, meta))
    _plot(result["rows"], out / "noise_families.png")
    s = result["summary"]
    print(f"unseen families: defect vote mean {_pct(s['unseen_defect_mean'])}, max {_pct(s['unseen_defect_max'])}; "
          f"seen: {_pct(s['seen_defect_mean'])}; false-alarm rate on clean Normal {_pct(s['false_alarm_rate'])}")
    if "unseen_defect_gated_mean" in s:
        print(f"gate on: unseen families' defect vote mean {_pct(s['unseen_defect_gated_mean'])}, max "
              f"{_pct(s['unseen_defect_gated_max'])}; familiarity AUROC unseen vs seen "
              f"{s.get('familiarity_auroc_unseen_vs_seen', float('nan')):.3f}")
    print(f"wrote {out}/noise_families.md, noise_families.json, noise_families.png")
    return 0
