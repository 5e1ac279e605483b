"""Table 2 (and Figure 4): image only vs signal only vs both.

Reading: the paper builds "three models with the same basic structure but different input
modalities", each trained on its own (section 4.2.2), so the rows are three trained models:
MAD_img_only, MAD_sig_only and MAD_small, on one recipe. Scoring the multimodal MAD_small with one
input left out at test time (`mad-train eval --single-modality`) answers another question (how much a
model trained on both keeps when a sensor delivers one), so it is reported below the table, apart.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from mad.constants import CLASS_NAMES
from train.data_spec import DataSplits
from train.distributed import resolve_device
from train.experiments import TITLES, paper, plots
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import Cell, make_cells
from train.experiments.measure import single_modality_scores
from train.experiments.tables import done, groups, header, markdown_table, mean_std, not_run_reason, paper_value, values

ROLES = ["mad_img_only", "mad_sig_only", "mad_small"]
MODALITY = {"mad_img_only": "image only", "mad_sig_only": "signal only", "mad_small": "image + signal"}


def recipe_text(records: list[Record]) -> str:
    stages = next((r["stages"] for r in done(records)), None)
    used = {None: "nothing trained yet", ("ce",): "CE only"}.get(None if stages is None else tuple(stages),
                                                                 "SupCon then CE")
    return (f"{used}, configs/mad_small.yaml's recipe for every model (each baseline's config is that recipe; only "
            "`model:` differs); the paper: SupCon pretraining then CE fine-tuning for every model")


def last_supcon_loss(record: Record) -> float | None:
    rows = [r for r in record.get("history", []) if r["stage"] == "supcon" and "train_main" in r]
    return rows[-1]["train_main"] if rows else None


class Table2(Experiment):
    name = "table2"
    title = TITLES["table2"]

    def cells(self, ctx: Context) -> list[Cell]:
        return make_cells(ROLES, budget=ctx.budget, preset=ctx.preset, seeds=ctx.seeds, num_workers=ctx.num_workers)

    def measure(self, cell: Cell, model: nn.Module, splits: DataSplits | None, ctx: Context) -> Record:
        assert splits is not None  # needs_test_windows
        return {"single_modality": single_modality_scores(model, splits.test, resolve_device(ctx.device))}

    def write(self, records: list[Record], ctx: Context) -> list[str]:
        per_model = groups(records)
        two_stage = any("supcon" in r["stages"] for r in done(records))
        head = ["model", "modality", "test accuracy", "test macro-F1", "macro AUC (OvR)", "paper F1"]
        if two_stage:
            head += ["SupCon loss, last epoch", "paper SupCon loss"]
        rows = []
        for role in ROLES:
            rs = per_model.get(role, [])
            reason = not_run_reason(rs)
            label = rs[0]["label"] if rs else role
            if reason and not done(rs):
                rows.append([label, MODALITY[role], str(reason), "", "", paper_value(paper.TABLE2_F1[role])])
                continue
            row = [label, MODALITY[role], mean_std(values(rs, lambda r: r["test"]["accuracy"])),
                   mean_std(values(rs, lambda r: r["test"]["macro_f1"])),
                   mean_std(values(rs, lambda r: r["test"]["macro_auc"])), paper_value(paper.TABLE2_F1[role])]
            if two_stage:
                row += [mean_std(values(rs, last_supcon_loss), 2), paper_value(paper.TABLE2_SUPCON_LOSS[role], 2)]
            rows.append(row)
        lines = [*header(ctx, self.title, recipe_text(records)), *markdown_table(head, rows), ""]
        lines += self._single_modality_lines(per_model.get("mad_small", []))
        if two_stage:
            lines += ["The SupCon loss depends on batch size, views and temperature, so only its order across the "
                      "rows compares with the paper's.", ""]
        lines += ["![confusion matrices](confusion.png)", "", "![scores](scores.png)", ""]
        (ctx.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
        self._plots(per_model, ctx)
        return ["table.md", "confusion.png", "scores.png"]

    def _single_modality_lines(self, rs: list[Record]) -> list[str]:
        rows = []
        for modality in ("image", "signal"):
            scores = values(rs, lambda r, m=modality: r.get("single_modality", {}).get(m, {}).get("macro_f1"))
            if scores:
                rows.append([f"MAD_small given only the {modality}", mean_std(scores)])
        if not rows:
            return []
        return ["Not the paper's reading, shown for comparison: the multimodal MAD_small scored with one input "
                "left out at test time (trained on both; `mad-train eval --single-modality`).", "",
                *markdown_table(["inputs at test", "test macro-F1"], rows), ""]

    def _plots(self, per_model: dict[str, list[Record]], ctx: Context) -> None:
        trained = {role: done(per_model.get(role, [])) for role in ROLES}
        matrices = {f"{rs[0]['label']} ({MODALITY[role]})": np.sum([r["test"]["confusion"] for r in rs], axis=0)
                    for role, rs in trained.items() if rs}
        plots.confusion_panels(matrices, CLASS_NAMES, ctx.out / "confusion.png",
                               f"Test confusion, summed over seeds ({ctx.preset}; the paper's Figure 4)")
        scores = {rs[0]["label"]: values(rs, lambda r: r["test"]["macro_f1"]) for rs in trained.values() if rs}
        published = {rs[0]["label"]: paper.TABLE2_F1[role] for role, rs in trained.items() if rs}
        plots.score_bars(scores, ctx.out / "scores.png", "test macro-F1",
                         f"Table 2, {ctx.preset}: dots = seeds, black = paper", published)
