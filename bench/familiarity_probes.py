"""Which familiarity score? In-family windows against shifted data and synthetic out-of-distribution probes.

    python bench/familiarity_probes.py extract --checkpoint models/mad_small.safetensors --out build/familiarity
    python bench/familiarity_probes.py analyse --features build/familiarity/features.npz

`extract` runs the model once per window and keeps the raw logits, the pooled encoder feature and the flows'
NLL per modality; `analyse` fits each candidate score on the `fit` windows (standard, seed 2000, the
seed `mad-train calibrate` uses) and scores it against in-family windows of another seed (3000):
AUROC (in-family vs the group) and the fraction of the group flagged at a threshold that flags 1 % of
the in-family windows. The probes are made here, never from the real AI Hub sample (docs/familiarity.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from mad.constants import NUM_CLASSES, SAMPLE_RATE_HZ, WINDOW_ROWS, WINDOW_SAMPLES
from mad.data.prpd import render_prpd_from_series
from mad.data.synthetic import CORONA, NOISE, NORMAL, generate_window
from mad.model.familiarity import fit_gaussian_statistics, mahalanobis_familiarity
from mad.model.flows import flow_nll_per_dim

FIT_SEED, EVAL_SEED = 2000, 3000
HELD_OUT = ("ho_binning", "ho_quantised", "ho_log_range", "ho_colour_map", "ho_matrix", "ho_mixed")
TRAIN_STYLED = ("colour_map", "bipolar", "mixed")  # training families of the styles model, unseen by step 3

Window = tuple[np.ndarray, np.ndarray, int]  # image uint8 (256,256,3), series (20,7680), label


def _rendered(series: np.ndarray) -> np.ndarray:
    """The agent's own PRPD for a window without a frame (agent.core.pairing.default_renderer)."""
    return render_prpd_from_series(series, float(SAMPLE_RATE_HZ), 60.0)


def _clip16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16).reshape(WINDOW_ROWS, -1)


def probe_quantised(i: int) -> Window:
    """A Noise window whose floor is integer-quantised to 16-count steps and offset by +1000 counts."""
    w = generate_window("standard", EVAL_SEED, i, label=NOISE)
    series = _clip16(np.floor(w.series.astype(np.float64) / 16) * 16 + 1000)
    return _rendered(series), series, NOISE


def probe_sinusoid(i: int) -> Window:
    """A pure carrier: 20-200 counts at 50-2,000 Hz on a 30-count baseline, 1 count of noise, no pulses."""
    rng = np.random.default_rng([7, i])
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    x = 30 + rng.uniform(20, 200) * np.sin(2 * np.pi * rng.uniform(50, 2000) * t) + rng.normal(0, 1, t.size)
    series = _clip16(x)
    return _rendered(series), series, NORMAL


def probe_gaussian(i: int) -> Window:
    """Gaussian noise without pulses at odd gains: sigma 0.3, 30 or 300 counts on a 30-count baseline."""
    rng = np.random.default_rng([8, i])
    sigma = (0.3, 30.0, 300.0)[i % 3]
    series = _clip16(30 + rng.normal(0, sigma, WINDOW_SAMPLES))
    return _rendered(series), series, NORMAL


def probe_mismatch(i: int) -> Window:
    """The two views disagree: a Corona window's PRPD with a Normal window's series."""
    image = generate_window("standard", EVAL_SEED, 10_000 + i, label=CORONA).image
    series = generate_window("standard", EVAL_SEED, 20_000 + i, label=NORMAL).series
    return image, series, NORMAL


def probe_clipped(i: int) -> Window:
    """ADC saturation: a Noise window clipped 8 counts above its median (every pulse flattened)."""
    w = generate_window("standard", EVAL_SEED, 30_000 + i, label=NOISE)
    series = np.minimum(w.series, np.median(w.series) + 8).astype(np.int16)
    return _rendered(series), series, NOISE


def probe_random_image(i: int) -> Window:
    """A Normal window's series with a uniformly random RGB image."""
    w = generate_window("standard", EVAL_SEED, 40_000 + i, label=NORMAL)
    image = np.random.default_rng([9, i]).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return image, w.series, NORMAL


def synth(preset: str, seed: int, family: str | None = None, rendered: bool = False) -> Callable[[int], Window]:
    def make(i: int) -> Window:
        w = generate_window(preset, seed, i, prpd_family=family)
        return (_rendered(w.series) if rendered else w.image), w.series, w.label
    return make


GROUPS: dict[str, tuple[Callable[[int], Window], int, str]] = {
    "fit": (synth("standard", FIT_SEED), 500, "in-family: fits the statistics"),
    "in_family": (synth("standard", EVAL_SEED), 400, "in-family: standard, another seed"),
    "standard_rendered": (synth("standard", EVAL_SEED + 1, rendered=True), 100,
                          "standard with the agent's own PRPD (no frame)"),
    "easy": (synth("easy", EVAL_SEED), 100, "shifted: easy preset"),
    "hard": (synth("hard", EVAL_SEED), 200, "shifted: hard preset"),
    **{f"family_{f}": (synth("standard", EVAL_SEED, f), 40, f"shifted: PRPD family {f} (held out)")
       for f in HELD_OUT},
    **{f"family_{f}": (synth("standard", EVAL_SEED, f), 40, f"shifted: PRPD family {f}") for f in TRAIN_STYLED},
    "probe_quantised": (probe_quantised, 30, probe_quantised.__doc__ or ""),
    "probe_sinusoid": (probe_sinusoid, 30, probe_sinusoid.__doc__ or ""),
    "probe_gaussian": (probe_gaussian, 30, probe_gaussian.__doc__ or ""),
    "probe_mismatch": (probe_mismatch, 30, probe_mismatch.__doc__ or ""),
    "probe_clipped": (probe_clipped, 30, probe_clipped.__doc__ or ""),
    "probe_random_image": (probe_random_image, 30, probe_random_image.__doc__ or ""),
}


def batches(make: Callable[[int], Window], n: int, size: int) -> Iterator[list[Window]]:
    for start in range(0, n, size):
        yield [make(i) for i in range(start, min(n, start + size))]


@torch.inference_mode()
def extract(checkpoint: str, out: Path, groups: list[str], batch: int) -> None:
    from mad import load_model

    model = load_model(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    for name in groups:
        make, n, _ = GROUPS[name]
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "pooled", "nll", "nll_image", "nll_signal",
                                                               "label")}
        for windows in batches(make, n, batch):
            images = torch.from_numpy(np.stack([w[0] for w in windows]))
            signals = torch.from_numpy(np.stack([w[1] for w in windows]).astype(np.float32))
            scores = model.forward_scores(images, signals)
            rows["logits"].append(scores["logits"].numpy())
            rows["pooled"].append(scores["pooled"].numpy())
            rows["nll"].append(scores["flow_nll"].numpy())
            z, log_det = model.image_flow(model.image_tokenizer(model.image_preprocess(images)))
            rows["nll_image"].append(flow_nll_per_dim(z, log_det).numpy())
            z, log_det = model.signal_flow(model.signal_tokenizer(model.signal_preprocess(signals)))
            rows["nll_signal"].append(flow_nll_per_dim(z, log_det).numpy())
            rows["label"].append(np.array([w[2] for w in windows]))
        np.savez(out / f"{name}.npz", **{k: np.concatenate(v) for k, v in rows.items()})
        print(f"{name}: {n} windows", flush=True)


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(score of an in-family window > score of a group window): 1 = the score separates them perfectly."""
    both = np.concatenate([negative, positive])
    ranks = np.argsort(np.argsort(both, kind="mergesort"), kind="mergesort") + 1.0
    u = ranks[: len(negative)].sum() - len(negative) * (len(negative) + 1) / 2
    return float(u / (len(negative) * len(positive)))


def analyse(folder: Path) -> None:
    data = {p.stem: dict(np.load(p)) for p in sorted(folder.glob("*.npz"))}
    fit = data["fit"]
    means, precision = fit_gaussian_statistics(fit["pooled"], fit["label"], NUM_CLASSES)
    # Per-class feature means over the fit set, one precision per class ("class-conditional" variant).
    scores: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        "mahalanobis": lambda d: mahalanobis_familiarity(d["pooled"], means, precision),
        "flow_nll": lambda d: -d["nll"],
        "flow_nll_image": lambda d: -d["nll_image"],
        "flow_nll_signal": lambda d: -d["nll_signal"],
        "energy": lambda d: np.log(np.exp(d["logits"] - d["logits"].max(1, keepdims=True)).sum(1))
        + d["logits"].max(1),
        "max_softmax": lambda d: (np.exp(d["logits"] - d["logits"].max(1, keepdims=True))
                                  / np.exp(d["logits"] - d["logits"].max(1, keepdims=True)).sum(1, keepdims=True)
                                  ).max(1),
    }
    # Combination: each score standardised on the fit windows, the lower (more alarming) of the two counts.
    z = {}
    for name in ("mahalanobis", "flow_nll"):
        ref = scores[name](fit)
        z[name] = (float(np.median(ref)), float(np.quantile(ref, 0.75) - np.quantile(ref, 0.25)))
    scores["min(maha, flow)"] = lambda d: np.minimum(*((scores[n](d) - z[n][0]) / z[n][1] for n in z))

    reference = data["in_family"]
    names = list(scores)
    print("| group | n | top-1 acc | " + " | ".join(f"{n} AUROC / flagged" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    thresholds = {n: float(np.quantile(scores[n](reference), 0.01)) for n in names}
    for group, d in data.items():
        if group == "fit":
            continue
        acc = float((d["logits"].argmax(1) == d["label"]).mean())
        cells = []
        for n in names:
            s = scores[n](d)
            flagged = float((s < thresholds[n]).mean())
            cells.append(f"{'-' if group == 'in_family' else f'{auroc(scores[n](reference), s):.3f}'} / "
                         f"{100 * flagged:.0f}%")
        print(f"| {group} | {len(d['label'])} | {acc:.3f} | " + " | ".join(cells) + " |")

    # What matters for alarms: shifted/probe windows the model calls a defect (p >= 0.7), and how many of
    # them each score flags at the 1 % threshold; and the errors on `hard` it flags.
    shifted = [g for g in data if g.startswith(("family_", "probe_"))]

    def softmax(logits: np.ndarray) -> np.ndarray:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def summary(name: str, score: Callable[[dict[str, np.ndarray]], np.ndarray]) -> str:
        threshold = float(np.quantile(score(reference), 0.01))
        caught = calls = 0
        for group in shifted:
            d = data[group]
            p = softmax(d["logits"])
            defect = (p.argmax(1) >= 2) & (p.max(1) >= 0.7)
            calls += int(defect.sum())
            caught += int((defect & (score(d) < threshold)).sum())
        hard = data["hard"]
        wrong = hard["logits"].argmax(1) != hard["label"]
        hard_caught = int((wrong & (score(hard) < threshold)).sum())
        rendered = float((score(data["standard_rendered"]) < threshold).mean())
        return (f"| {name} | {caught} of {calls} | {hard_caught} of {int(wrong.sum())} | "
                f"{100 * rendered:.0f} % |")

    print()
    print("| score | shifted/probe defect calls flagged | hard errors flagged | standard_rendered flagged |")
    print("|---|---|---|---|")
    for name in names:
        print(summary(name, scores[name]))
    for shrinkage in (0.0, 0.003, 0.03, 0.1, 0.3):
        m, p = fit_gaussian_statistics(fit["pooled"], fit["label"], NUM_CLASSES, shrinkage)
        print(summary(f"mahalanobis, shrinkage {shrinkage}",
                      lambda d, m=m, p=p: mahalanobis_familiarity(d["pooled"], m, p)))


def gate(checkpoint: str, groups: list[str], n: int, seed: int) -> None:
    """A calibrated checkpoint on data sets: ECE before/after and what its familiarity gate flags."""
    from mad import load_model
    from mad.data.datasets import SyntheticDataset
    from train.metrics import classification_report, familiarity_gate_report
    from train.predict import predict_scores

    model = load_model(checkpoint)
    block = model.mad_meta["calibration"]
    if block is None:
        raise SystemExit(f"{checkpoint}: no calibration (mad-train calibrate first)")
    threshold, names = float(block["familiarity"]["threshold"]), model.mad_meta["class_names"]
    print(f"T = {block['temperature']:.4f}, threshold {threshold:.4f}")
    print("| data | n | macro-F1 | ECE before | ECE after | unfamiliar | macro-F1 familiar | errors flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for group in groups:
        preset, _, family = group.partition("/")
        dataset = SyntheticDataset(preset, seed, n, prpd_families=(family,) if family else ())
        scores = predict_scores(model, dataset, torch.device("cpu"), 16)
        raw = torch.softmax(torch.from_numpy(scores["logits"]), dim=-1).numpy()
        before = classification_report(scores["labels"], raw, names)
        after = classification_report(scores["labels"], scores["probs"], names)
        g = familiarity_gate_report(scores["labels"], scores["probs"], scores["familiarity"] >= threshold, names)
        f1 = "n/a" if g["familiar"] is None else f"{g['familiar']['macro_f1']:.4f}"
        print(f"| {group} | {n} | {after.macro_f1:.4f} | {before.ece:.4f} | {after.ece:.4f} | "
              f"{100 * g['unfamiliar_fraction']:.1f} % | {f1} | {g['errors_flagged']} of {g['errors']} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--checkpoint", default="models/mad_small.safetensors")
    e.add_argument("--out", type=Path, default=Path("build/familiarity"))
    e.add_argument("--groups", default=",".join(GROUPS))
    e.add_argument("--batch", type=int, default=16)
    a = sub.add_parser("analyse")
    a.add_argument("--features", type=Path, default=Path("build/familiarity"))
    g = sub.add_parser("gate", help="a calibrated checkpoint per data set: ECE and the familiarity gate")
    g.add_argument("--checkpoint", default="build/calibrated/mad_small.safetensors")
    g.add_argument("--groups", default=",".join(f"standard/{f}" for f in HELD_OUT),
                   help="comma-separated <preset> or <preset>/<prpd family>")
    g.add_argument("--n", type=int, default=100)
    g.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "extract":
        extract(args.checkpoint, args.out, args.groups.split(","), args.batch)
    elif args.command == "gate":
        gate(args.checkpoint, args.groups.split(","), args.n, args.seed)
    else:
        analyse(args.features)


if __name__ == "__main__":
    main()
