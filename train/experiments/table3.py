"""Table 3 (and Figure 5): MAD_small vs MAD_base, size, compute, score and the stability of validation.

Both train with one recipe, as the paper's "followed the same training procedure". MAD_base (74 M
parameters, 2,816 tokens, 229 GMACs a window) is far beyond a 2-core CPU: the cpu budget lists its
size and cost (counted on the meta device, no weights) and says in its row that it was not trained.
The paper's "validation stability" is a word read off a learning curve; here it is a number: the
largest fall of validation macro-F1 from one epoch to the next in the final stage. A run whose loss
diverges is recorded as failed (fit stops on a non-finite loss) and its row says so.
"""

from __future__ import annotations

import itertools

from mad.flops import model_cost
from train.experiments import TITLES, paper, plots
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import Cell, make_cells, model_field
from train.experiments.table2 import recipe_text
from train.experiments.tables import done, groups, header, markdown_table, mean_std, not_run_reason, values

ROLES = ["mad_small", "mad_base"]


def largest_val_drop(record: Record) -> float | None:
    final = record["stages"][-1]
    f1 = [row["val_macro_f1"] for row in record["history"] if row["stage"] == final and "val_macro_f1" in row]
    if len(f1) < 2:
        return None
    return max(0.0, *(before - after for before, after in itertools.pairwise(f1)))


def stage_curve(record: Record, key: str) -> tuple[list[float], list[float]]:
    rows = [row for row in record["history"] if row["stage"] == record["stages"][-1] and key in row]
    return [row["epoch"] for row in rows], [row[key] for row in rows]


class Table3(Experiment):
    name = "table3"
    needs_test_windows = False  # only test metrics (fit's), cost and latency (random inputs)
    title = TITLES["table3"]

    def cells(self, ctx: Context) -> list[Cell]:
        return make_cells(ROLES, budget=ctx.budget, preset=ctx.preset, seeds=ctx.seeds, num_workers=ctx.num_workers)

    def write(self, records: list[Record], ctx: Context) -> list[str]:
        per_model = groups(records)
        head = ["model", "params (M)", "GMACs", "test macro-F1", "largest val-F1 drop between epochs",
                "paper params (M)", "paper GFLOPs", "paper F1", "paper stability"]
        rows = []
        for role in ROLES:
            rs = per_model.get(role, [])
            published = paper.TABLE3[role]
            cost = model_cost(model_field(role, ctx.budget))  # the size even where the budget does not train it
            label = rs[0]["label"] if rs else role
            reason = not_run_reason(rs)
            trained = done(rs)
            f1 = mean_std(values(rs, lambda r: r["test"]["macro_f1"])) if trained else str(reason)
            drop = mean_std(values(rs, largest_val_drop)) if trained else ""
            rows.append([label, f"{cost.params['total'] / 1e6:.2f}", f"{cost.gmacs:.2f}", f1, drop,
                         f"{published['params_m']:.2f}", f"{published['gflops']:.2f}", f"{published['f1']:.4f}",
                         published["stability"]])
        lines = [*header(ctx, self.title, recipe_text(records)), *markdown_table(head, rows), "",
                 "GMACs: multiply-adds of one window (mad-train info's convention); the paper does not state what "
                 "its GFLOPs count (docs/model.md).", "",
                 "![validation macro-F1 per epoch](curves.png)", "", "![training loss per epoch](loss.png)", ""]
        (ctx.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
        self._plots(per_model, ctx)
        return ["table.md", "curves.png", "loss.png"]

    def _plots(self, per_model: dict[str, list[Record]], ctx: Context) -> None:
        trained = {done(rs)[0]["label"]: done(rs) for rs in per_model.values() if done(rs)}
        for key, file, ylabel in (("val_macro_f1", "curves.png", "validation macro-F1"),
                                  ("train_loss", "loss.png", "training loss")):
            series = {label: [stage_curve(r, key) for r in rs] for label, rs in trained.items()}
            if not series:
                plots.nothing_trained(ctx.out / file, ylabel)
                continue
            plots.curves(series, ctx.out / file, "epoch (final stage)", ylabel,
                         f"{ylabel} per epoch, one line per seed ({ctx.preset}; the paper's Figure 5)",
                         unit_range=key != "train_loss")
