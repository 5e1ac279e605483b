"""Evaluation report: figures (confusion matrix, ROC, reliability, latent space) and a markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from mad.plotting import plt, save_figure
from train.metrics import ClassificationReport, calibration_bins, roc_curve

MODALITY_MARKERS = {0: ("o", "image"), 1: ("^", "signal")}


def plot_confusion(report: ClassificationReport, path: Path) -> None:
    cm = np.asarray(report.confusion)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    shown = ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if i == j else "black", fontsize=9)
    ax.set_xticks(range(len(report.class_names)), report.class_names, rotation=30)
    ax.set_yticks(range(len(report.class_names)), report.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (n={report.n}; colour = row fraction)")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    save_figure(fig, path)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, report: ClassificationReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, name in enumerate(report.class_names):
        if report.auc[k] is None:
            continue
        fpr, tpr = roc_curve(y_true == k, probs[:, k])
        ax.plot(fpr, tpr, label=f"{name} (AUC {report.auc[k]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC one-vs-rest (macro AUC {report.macro_auc:.3f})")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_reliability(y_true: np.ndarray, probs: np.ndarray, report: ClassificationReport, path: Path,
                     n_bins: int = 15, uncalibrated: tuple[np.ndarray, float] | None = None) -> None:
    """Reliability diagram of `probs` (the calibrated ones for a calibrated checkpoint); `uncalibrated`
    (raw probabilities, their ECE) adds the before-calibration accuracy per bin as an outline."""
    confidence = probs.max(axis=1)
    counts, mean_conf, accuracy = calibration_bins(confidence, probs.argmax(axis=1) == y_true, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    used = counts > 0
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.bar(edges[:-1][used], accuracy[used], width=1 / n_bins, align="edge", edgecolor="black", alpha=0.7,
           label="accuracy" if uncalibrated is None else "accuracy (calibrated)")
    ax.plot(mean_conf[used], mean_conf[used], "r.", label="mean confidence")
    title = f"Reliability ({n_bins} bins), ECE {report.ece:.4f}"
    if uncalibrated is not None:
        raw, raw_ece = uncalibrated
        raw_counts, _, raw_accuracy = calibration_bins(raw.max(axis=1), raw.argmax(axis=1) == y_true, n_bins)
        raw_used = raw_counts > 0
        ax.bar(edges[:-1][raw_used], raw_accuracy[raw_used], width=1 / n_bins, align="edge", fill=False,
               edgecolor="tab:blue", linestyle="--", label=f"accuracy before calibration (ECE {raw_ece:.4f})")
        title = f"Reliability ({n_bins} bins), calibrated ECE {report.ece:.4f}"
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def plot_latent(latent: dict[str, np.ndarray], class_names: list[str], path: Path) -> None:
    """The paper's Figure 3: mean-pooled tokens per modality, 2-D PCA, before and after the flows."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    colours = plt.get_cmap("tab10")
    for ax, key, title in zip(axes, ("pre_flow", "post_flow"), ("before the flows", "after the flows"), strict=True):
        points = PCA(n_components=2, random_state=0).fit_transform(latent[key])
        for modality, (marker, modality_name) in MODALITY_MARKERS.items():
            for k, name in enumerate(class_names):
                select = (latent["modality"] == modality) & (latent["label"] == k)
                if select.any():
                    ax.scatter(points[select, 0], points[select, 1], s=14, marker=marker, color=colours(k),
                               alpha=0.75, label=f"{name} ({modality_name})")
        ax.set_title(f"Tokens {title} (PCA of mean-pooled tokens)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    save_figure(fig, path, rect=(0, 0, 0.84, 1))


def _table(report: ClassificationReport) -> str:
    rows = ["| class | precision | recall | F1 | AUC | support |", "|---|---|---|---|---|---|"]
    for k, name in enumerate(report.class_names):
        auc = "n/a" if report.auc[k] is None else f"{report.auc[k]:.4f}"
        rows.append(f"| {name} | {report.precision[k]:.4f} | {report.recall[k]:.4f} | {report.f1[k]:.4f} | {auc} "
                    f"| {report.support[k]} |")
    return "\n".join(rows)


def _calibration_lines(meta: dict[str, Any], reports: dict[str, ClassificationReport],
                       uncalibrated: dict[str, ClassificationReport] | None,
                       gates: dict[str, dict[str, Any]] | None) -> list[str]:
    block = meta.get("calibration")
    if block is None:
        return ["No calibration in this checkpoint: raw probabilities and no familiarity gate "
                "(`mad-train calibrate`).", ""]
    fitted = block.get("fitted_on", {})
    lines = [f"Calibration (`mad-train calibrate`, fitted on `{fitted.get('data')}` seed {fitted.get('seed')}, "
             f"{fitted.get('windows')} windows): temperature T = {block['temperature']:.4f}; familiarity "
             f"`{block['familiarity']['score']}`, unfamiliar below {block['familiarity']['threshold']:.4f}. "
             "Every metric above uses the calibrated probabilities.", "",
             "| inputs | ECE before | ECE after | unfamiliar | macro-F1 on familiar windows | errors flagged |",
             "|---|---|---|---|---|---|"]
    for name, r in reports.items():
        before = "n/a" if uncalibrated is None else f"{uncalibrated[name].ece:.4f}"
        gate = (gates or {}).get(name)
        if gate is None:
            lines.append(f"| {name} | {before} | {r.ece:.4f} | n/a | n/a | n/a |")
            continue
        familiar = gate["familiar"]
        f1 = "n/a" if familiar is None else f"{familiar['macro_f1']:.4f}"
        flagged = f"{gate['unfamiliar']} ({100 * gate['unfamiliar_fraction']:.2f} %)"
        lines.append(f"| {name} | {before} | {r.ece:.4f} | {flagged} | {f1} | {gate['errors_flagged']} of "
                     f"{gate['errors']} |")
    return [*lines, ""]


def write_report(out_dir: Path, *, checkpoint: str, data_spec: str, meta: dict[str, Any],
                 reports: dict[str, ClassificationReport], y_true: np.ndarray, probs: np.ndarray,
                 latent: dict[str, np.ndarray] | None, uncalibrated: dict[str, ClassificationReport] | None = None,
                 probs_uncalibrated: np.ndarray | None = None,
                 gates: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write metrics.json, figures and report.md into out_dir; returns the markdown path.

    `reports`/`probs` are the calibrated ones for a calibrated checkpoint; `uncalibrated` and
    `probs_uncalibrated` the raw ones (ECE before calibration), `gates` the familiarity gate per input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    main = reports["both"]
    plot_confusion(main, out_dir / "confusion_matrix.png")
    plot_roc(y_true, probs, main, out_dir / "roc.png")
    before = None
    if probs_uncalibrated is not None and uncalibrated is not None:
        before = (probs_uncalibrated, uncalibrated["both"].ece)
    plot_reliability(y_true, probs, main, out_dir / "reliability.png", uncalibrated=before)
    figures = ["confusion_matrix.png", "roc.png", "reliability.png"]
    if latent is not None:
        plot_latent(latent, main.class_names, out_dir / "latent_space.png")
        figures.append("latent_space.png")
    payload = {"checkpoint": checkpoint, "data_spec": data_spec, "model": meta.get("name"),
               "model_version": meta.get("version"), "results": {k: r.to_dict() for k, r in reports.items()},
               "calibration": meta.get("calibration"),
               "uncalibrated": None if uncalibrated is None else {k: r.to_dict() for k, r in uncalibrated.items()},
               "familiarity_gate": gates}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    lines = [f"# Evaluation of {meta.get('name')} ({meta.get('version')})", "",
             f"- checkpoint: `{checkpoint}`", f"- data: `{data_spec}` ({main.n} windows)", "",
             "| inputs | accuracy | macro-F1 | macro AUC (OvR) | ECE (15 bins) |", "|---|---|---|---|---|"]
    for name, r in reports.items():
        lines.append(f"| {name} | {r.accuracy:.4f} | {r.macro_f1:.4f} | {r.macro_auc:.4f} | {r.ece:.4f} |")
    lines += ["", *_calibration_lines(meta, reports, uncalibrated, gates)]
    lines += ["Per class (both modalities):", "", _table(main), ""]
    lines += [f"![{figure}]({figure})" for figure in figures]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
