"""The experiments' figures: confusion matrices side by side (the paper's Figures 4 and 6), scores with
their spread over seeds, validation curves (Figure 5), cost against score (Table 4) and the latent space
per modality before and after the flows (Figure 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter
from sklearn.decomposition import PCA

from mad.plotting import plt, save_figure

Series = tuple[Sequence[float], Sequence[float]]


def nothing_trained(path: Path, title: str) -> Path:
    """The figure of an experiment whose budget trained none of its cells: says so rather than fail."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, "no cell trained at this budget (see table.md)", ha="center", va="center")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def confusion_panels(matrices: dict[str, np.ndarray], class_names: Sequence[str], path: Path, title: str) -> Path:
    """One row-normalised confusion matrix per model (counts summed over seeds), as the paper's figures."""
    if not matrices:
        return nothing_trained(path, title)
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, (label, cm) in zip(axes[0], matrices.items(), strict=True):
        rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(class_names)), class_names, rotation=30, fontsize=8)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label, fontsize=10)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def score_bars(scores: dict[str, Sequence[float]], path: Path, ylabel: str, title: str,
               paper: dict[str, float | None] | None = None) -> Path:
    """Mean per model with the seeds as dots and, where published, the paper's value as a black tick."""
    labels = list(scores)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(labels)), 4))
    labelled = False
    for x, label in enumerate(labels):
        ys = np.asarray(scores[label], dtype=float)
        if ys.size:
            ax.bar(x, ys.mean(), color="tab:blue", alpha=0.6)
            ax.scatter(np.full(ys.size, x), ys, color="tab:blue", s=14, zorder=3)
        published = (paper or {}).get(label)
        if published is not None:
            ax.hlines(published, x - 0.4, x + 0.4, color="black", linewidth=2, label=None if labelled else "paper")
            labelled = True
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    if labelled:
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def curves(series: dict[str, list[Series]], path: Path, xlabel: str, ylabel: str, title: str,
           unit_range: bool = True) -> Path:
    """One colour per model, one line per seed; `unit_range`: the y axis is a score in [0, 1]."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = plt.get_cmap("tab10")
    for k, (label, runs) in enumerate(series.items()):
        for i, (xs, ys) in enumerate(runs):
            ax.plot(xs, ys, marker="o", markersize=3, color=colours(k), alpha=0.8, label=label if i == 0 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if unit_range:
        ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def cost_scatter(points: dict[str, tuple[float, float, float]], path: Path, xlabel: str, title: str) -> Path:
    """(cost, macro-F1, parameters in M) per model; marker area grows with the parameters."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, (x, y, params_m) in points.items():
        ax.scatter(x, y, s=30 + 60 * params_m, alpha=0.6)
        ax.annotate(f"{label} ({params_m:.2f} M)", (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # the default labels every minor tick, which overlap
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test macro-F1 (mean over seeds)")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def latent_per_modality(latent: dict[str, np.ndarray], class_names: Sequence[str], modality_names: dict[int, str],
                        path: Path, title: str) -> Path:
    """Rows: modalities; columns: before / after the flows; colour: class. PCA per panel (2-D)."""
    modalities = [m for m in modality_names if (latent["modality"] == m).any()]
    fig, axes = plt.subplots(len(modalities), 2, figsize=(10, 4.2 * len(modalities)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for row, modality in enumerate(modalities):
        select = latent["modality"] == modality
        for col, (key, when) in enumerate((("pre_flow", "before"), ("post_flow", "after"))):
            ax = axes[row, col]
            points = PCA(n_components=2, random_state=0).fit_transform(latent[key][select])
            labels = latent["label"][select]
            for k, name in enumerate(class_names):
                mask = labels == k
                if mask.any():
                    ax.scatter(points[mask, 0], points[mask, 1], s=12, color=colours(k), alpha=0.75, label=name)
            ax.set_title(f"{modality_names[modality]} tokens {when} the flows", fontsize=10)
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
    axes[0, 1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
