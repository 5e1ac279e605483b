"""Figure 6: CE only vs two-stage (SupCon then CE), MAD_small, at equal compute.

Compute is counted in forward+backward passes over windows. A SupCon epoch passes `views` augmented
views of every window (2 by default), so it costs `views` CE epochs of the same windows (measured on
2 cores: a SupCon step of batch 32 with 2 views took 1.7-1.8x a CE step, docs/training.md and
docs/experiments.md; counting it as 2 gives the CE-only arm slightly more, never less). So the
two-stage cell trains S SupCon + C CE epochs, and the CE-only cell C + views x S CE epochs, on the same
windows, batch size, lr and schedule shape. The SupCon stage's validation (a nearest-centroid probe)
is not counted. Early stopping may end either sooner: the table gives the compute each actually used.
The paper's Figure 6 is two confusion matrices; its text adds that CE only over-predicts some classes
(poor precision, most visibly Corona), so per-class precision is tabulated beside them.
"""

from __future__ import annotations

import numpy as np

from mad.constants import CLASS_NAMES
from train.experiments import TITLES, paper, plots
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import ROLES, Cell, build_config
from train.experiments.tables import done, groups, header, markdown_table, mean_std, values

ROLE = "mad_small"
VARIANTS = {"two_stage": "SupCon + CE", "ce_only": "CE only"}


def compute_used(record: Record) -> float:
    """Epochs run, in CE-epoch equivalents (a SupCon epoch counts `views`)."""
    views = record["config"]["supcon"]["views"]
    return float(sum(views if row["stage"] == "supcon" else 1 for row in record["history"]))


def compute_curve(record: Record) -> tuple[list[float], list[float]]:
    """Validation macro-F1 against cumulative compute (SupCon epochs: the nearest-centroid probe's F1)."""
    views = record["config"]["supcon"]["views"]
    xs, ys, total = [], [], 0.0
    for row in record["history"]:
        total += views if row["stage"] == "supcon" else 1
        xs.append(total)
        ys.append(row.get("val_macro_f1", float("nan")))
    return xs, ys


class Fig6(Experiment):
    name = "fig6"
    title = TITLES["fig6"]

    def cells(self, ctx: Context) -> list[Cell]:
        cells = []
        for seed in ctx.seeds:
            two_stage = build_config(ROLE, budget=ctx.budget, preset=ctx.preset, seed=seed,
                                     overlay={"stages": ["supcon", "ce"]}, name=f"{ROLE}_two_stage",
                                     num_workers=ctx.num_workers)
            ce_epochs = two_stage.ce.epochs + two_stage.supcon.views * two_stage.supcon.epochs
            ce_only = build_config(ROLE, budget=ctx.budget, preset=ctx.preset, seed=seed,
                                   overlay={"stages": ["ce"], "ce": {"epochs": ce_epochs}}, name=f"{ROLE}_ce_only",
                                   num_workers=ctx.num_workers)
            for variant, config in (("two_stage", two_stage), ("ce_only", ce_only)):
                cells.append(Cell(ROLE, variant, f"{ROLES[ROLE].label}, {VARIANTS[variant]}", seed, config))
        return cells

    def write(self, records: list[Record], ctx: Context) -> list[str]:
        per_cell = groups(records)
        head = ["recipe", "test accuracy", "test macro-F1", *(f"precision {c}" for c in CLASS_NAMES),
                "compute (CE-epoch equivalents)", "training time (min)"]
        rows = []
        for variant, text in VARIANTS.items():
            rs = per_cell.get(f"{ROLE}_{variant}", [])
            rows.append([text, mean_std(values(rs, lambda r: r["test"]["accuracy"])),
                         mean_std(values(rs, lambda r: r["test"]["macro_f1"])),
                         *(mean_std(values(rs, lambda r, k=k: r["test"]["precision"][k]), 3)
                           for k in range(len(CLASS_NAMES))),
                         mean_std(values(rs, compute_used), 1),
                         mean_std(values(rs, lambda r: r["train_seconds"] / 60), 1)])
        recipe = self._recipe(records)
        lines = [*header(ctx, self.title, recipe), *markdown_table(head, rows), "",
                 f"Paper: {paper.FIG6_CLAIM}.", "",
                 "![confusion matrices](confusion.png)", "", "![validation against compute](curves.png)", ""]
        (ctx.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
        self._plots(per_cell, ctx)
        return ["table.md", "confusion.png", "curves.png"]

    @staticmethod
    def _recipe(records: list[Record]) -> str:
        trained = done(records)
        two = next((r["config"] for r in trained if r["variant"] == "two_stage"), None)
        one = next((r["config"] for r in trained if r["variant"] == "ce_only"), None)
        if two is None or one is None:
            return "configs/mad_small.yaml with stages supcon,ce vs ce (not all trained yet)"
        s = two["supcon"]
        return (f"configs/mad_small.yaml; two-stage: {s['epochs']} SupCon epoch(s) ({s['views']} views, temperature "
                f"{s['temperature']}, lr {s['lr']:g}) then {two['ce']['epochs']} CE epochs; CE only: "
                f"{one['ce']['epochs']} CE epochs (= {two['ce']['epochs']} + {s['views']} x {s['epochs']})")

    @staticmethod
    def _plots(per_cell: dict[str, list[Record]], ctx: Context) -> None:
        matrices, series = {}, {}
        for variant, text in VARIANTS.items():
            trained = done(per_cell.get(f"{ROLE}_{variant}", []))
            if trained:
                matrices[f"({'ab'[list(VARIANTS).index(variant)]}) {text}"] = np.sum(
                    [r["test"]["confusion"] for r in trained], axis=0)
                series[text] = [compute_curve(r) for r in trained]
        plots.confusion_panels(matrices, CLASS_NAMES, ctx.out / "confusion.png",
                               f"Test confusion, summed over seeds ({ctx.preset}; the paper's Figure 6)")
        if series:
            plots.curves(series, ctx.out / "curves.png", "compute (CE-epoch equivalents)", "validation macro-F1",
                         "Validation macro-F1 against compute (SupCon points: nearest-centroid probe)")
        else:
            plots.nothing_trained(ctx.out / "curves.png", "Figure 6")
