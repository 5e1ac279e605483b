"""Figure 3: the latent space before and after the RealNVP flows, per modality.

The paper plots the features of both modalities before (a) and after (b) the flows and reads two
things off them: same-class points gather and classes separate, and the modalities' distributions are
aligned. Both are measured here on the test windows of each seed, from what `mad-train eval` draws
(`train.predict.latent_stages`: each modality's tokens mean-pooled, before and after its flow):
- class separation: the silhouette of the class labels per modality (-1..1, higher: tighter, more
  separate classes), before and after;
- modality gap: the distance between the image and the signal centroids over the mean spread of the
  points about their own modality's centroid (0: the modalities overlap), before and after.
The figures are drawn from the first seed, with eval's own figure (both modalities in one PCA) beside a
per-modality one (one PCA per panel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import silhouette_score
from torch import nn

from mad.constants import CLASS_NAMES
from mad.model.mad import IMAGE_MODALITY, SIGNAL_MODALITY
from train.data_spec import DataSplits
from train.distributed import resolve_device
from train.experiments import TITLES, paper, plots
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import Cell, make_cells
from train.experiments.table2 import recipe_text
from train.experiments.tables import done, groups, header, markdown_table, mean_std, not_run_reason, values
from train.predict import latent_stages
from train.report import plot_latent

ROLES = ["mad_small"]
MODALITIES = {IMAGE_MODALITY: "image", SIGNAL_MODALITY: "signal"}
STAGES = (("pre_flow", "before"), ("post_flow", "after"))


def class_silhouette(points: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of the class labels; undefined (None) with fewer than 2 classes or a point per class."""
    n_classes = len(np.unique(labels))
    if n_classes < 2 or len(labels) <= n_classes:
        return None
    return float(silhouette_score(points, labels))


def modality_gap(points: np.ndarray, modality: np.ndarray) -> float | None:
    if not all((modality == m).any() for m in MODALITIES):
        return None
    centroids = {m: points[modality == m].mean(axis=0) for m in MODALITIES}
    spread = np.mean([np.sqrt(((points[modality == m] - c) ** 2).sum(axis=1).mean()) for m, c in centroids.items()])
    return float(np.linalg.norm(centroids[IMAGE_MODALITY] - centroids[SIGNAL_MODALITY]) / max(spread, 1e-12))


def latent_metrics(latent: dict[str, np.ndarray]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, when in STAGES:
        for m, name in MODALITIES.items():
            select = latent["modality"] == m
            out[f"silhouette_{name}_{when}"] = (class_silhouette(latent[key][select], latent["label"][select])
                                                if select.any() else None)
        out[f"modality_gap_{when}"] = modality_gap(latent[key], latent["modality"])
    return out


def latent_file(out: Path, cell_key: str) -> Path:
    return out / "cells" / f"{cell_key}.latent.npz"


class Fig3(Experiment):
    name = "fig3"
    title = TITLES["fig3"]

    def cells(self, ctx: Context) -> list[Cell]:
        return make_cells(ROLES, budget=ctx.budget, preset=ctx.preset, seeds=ctx.seeds, num_workers=ctx.num_workers)

    def measure(self, cell: Cell, model: nn.Module, splits: DataSplits | None, ctx: Context) -> Record:
        assert splits is not None  # needs_test_windows
        latent = latent_stages(model, splits.test, resolve_device(ctx.device), ctx.budget.latent_windows)
        path = latent_file(ctx.out, cell.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **latent)  # the figure is redrawn from it when the cell is skipped on resume
        return {"latent": latent_metrics(latent), "latent_windows": int(len(latent["label"]) // len(MODALITIES))}

    def write(self, records: list[Record], ctx: Context) -> list[str]:
        rs = groups(records).get("mad_small", [])
        head = ["measure (test windows)", "before the flows", "after the flows", "paper"]
        rows = []
        for name in MODALITIES.values():
            rows.append([f"class silhouette, {name} tokens",
                         *(mean_std(values(rs, lambda r, k=f"silhouette_{name}_{w}": r["latent"][k]), 3)
                           for _, w in STAGES), "figure only"])
        rows.append(["modality gap (image vs signal centroids / spread)",
                     *(mean_std(values(rs, lambda r, k=f"modality_gap_{w}": r["latent"][k]), 3) for _, w in STAGES),
                     "figure only"])
        lines = [*header(ctx, self.title, recipe_text(records))]
        if not done(rs):
            lines += [f"MAD_small: {not_run_reason(rs)}", ""]
        lines += [*markdown_table(head, rows), "", f"Paper: {paper.FIG3_CLAIM}.", "",
                  "![per modality](latent_per_modality.png)", "", "![both modalities](latent_space.png)", ""]
        (ctx.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
        self._plots(done(rs), ctx)
        return ["table.md", "latent_per_modality.png", "latent_space.png"]

    @staticmethod
    def _plots(trained: list[Record], ctx: Context) -> None:
        if not trained:
            for file in ("latent_per_modality.png", "latent_space.png"):
                plots.nothing_trained(ctx.out / file, "Figure 3")
            return
        first = trained[0]
        with np.load(latent_file(ctx.out, first["key"])) as stored:
            latent = {key: stored[key] for key in stored.files}
        title = f"{first['label']} seed {first['seed']}, {ctx.preset} test windows (the paper's Figure 3)"
        plots.latent_per_modality(latent, CLASS_NAMES, MODALITIES, ctx.out / "latent_per_modality.png", title)
        plot_latent(latent, list(CLASS_NAMES), ctx.out / "latent_space.png")
