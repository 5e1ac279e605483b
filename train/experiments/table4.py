"""Table 4: MAD vs Perceiver IO, CMT, CFM and InceptionTime: scores, size, compute and CPU latency.

Every model trains with its own repository config, which is configs/mad_small.yaml's recipe with
another `model:` (docs/experiments.md, "Baselines: how each is read"). Latency is a property of the
architecture, not of the seed, but each cell measures it (median of the budget's repeats), and the
table gives the median over seeds: more samples on a machine that other jobs share.
"""

from __future__ import annotations

import statistics

from torch import nn

from train.data_spec import DataSplits
from train.experiments import TITLES, paper, plots
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import Cell, make_cells
from train.experiments.measure import latency_record
from train.experiments.table2 import recipe_text
from train.experiments.tables import done, groups, header, markdown_table, mean_std, median_text, not_run_reason, values

ROLES = ["mad_small", "perceiver_io", "cmt", "cfm", "inception_time"]


def paper_text(role: str) -> str:
    published = paper.TABLE4[role]
    if published is None:
        return f"not in the paper (elsewhere: {paper.INCEPTION_TIME_ELSEWHERE})"
    return f"{100 * published['auc']:.2f} / {100 * published['f1']:.2f}"


def latency(record: Record, batch: int) -> float | None:
    return record.get("latency", {}).get("ms_per_window", {}).get(str(batch))


class Table4(Experiment):
    name = "table4"
    needs_test_windows = False  # only test metrics (fit's), cost and latency (random inputs)
    title = TITLES["table4"]

    def cells(self, ctx: Context) -> list[Cell]:
        return make_cells(ROLES, budget=ctx.budget, preset=ctx.preset, seeds=ctx.seeds, num_workers=ctx.num_workers)

    def measure(self, cell: Cell, model: nn.Module, splits: DataSplits | None, ctx: Context) -> Record:
        return {"latency": latency_record(model, ctx.budget.latency)}

    def write(self, records: list[Record], ctx: Context) -> list[str]:
        per_model = groups(records)
        batches = ctx.budget.latency.batches
        head = ["model", "test accuracy", "test macro-F1", "macro AUC (OvR)", "params (M)", "GMACs",
                *(f"ms / window, batch {b}" for b in batches), "paper AUC / F1 (%)"]
        rows = []
        for role in ROLES:
            rs = per_model.get(role, [])
            label = rs[0]["label"] if rs else role
            if not done(rs):
                rows.append([label, str(not_run_reason(rs)), *[""] * (len(head) - 3), paper_text(role)])
                continue
            first = done(rs)[0]
            rows.append([label, mean_std(values(rs, lambda r: r["test"]["accuracy"])),
                         mean_std(values(rs, lambda r: r["test"]["macro_f1"])),
                         mean_std(values(rs, lambda r: r["test"]["macro_auc"])),
                         f"{first['cost']['params'] / 1e6:.3f}", f"{first['cost']['gmacs']:.3f}",
                         *(median_text(values(rs, lambda r, b=b: latency(r, b))) for b in batches), paper_text(role)])
        lines = [*header(ctx, self.title, recipe_text(records)), *markdown_table(head, rows), "",
                 *self._machine_lines(records), "",
                 "The paper's MAD row (99.98 F1) is the F1 its Table 3 gives MAD_base; MAD_small stands in its row "
                 "here, since the baselines are built in MAD_small's size class. The paper gives no size, compute "
                 "or latency for the baselines.", "",
                 "![macro-F1 against latency](cost.png)", ""]
        (ctx.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
        self._plot(per_model, ctx)
        return ["table.md", "cost.png"]

    @staticmethod
    def _machine_lines(records: list[Record]) -> list[str]:
        measured = [r["latency"] for r in done(records) if "latency" in r]
        if not measured:
            return []
        cpus = sorted({m["machine"]["cpu"] for m in measured})
        loads = [m["machine"]["load_average_1min"] for m in measured if m["machine"]["load_average_1min"] is not None]
        peak = statistics.median(m["matmul_peak_gflops"] for m in measured)
        threads = sorted({m["machine"]["torch_threads"] for m in measured})
        return [f"Latency: eager fp32 forward under inference_mode on the CPU ({'; '.join(cpus)}; torch threads "
                f"{', '.join(map(str, threads))}), the model's own preprocessing included, raw int16 series and "
                f"uint8 images as the agent feeds them; median of {measured[0]['repeats']} timed passes after "
                f"{measured[0].get('warmups', 0)} warm-up(s) per cell, "
                f"then the median over seeds. A 1024x1024 fp32 matmul reached {peak:.0f} GFLOP/s (median over "
                f"cells); 1-min load average while measuring {min(loads, default=0):.1f}-{max(loads, default=0):.1f}, "
                "so on a shared machine these say more about the order than the size of the gaps."]

    @staticmethod
    def _plot(per_model: dict[str, list[Record]], ctx: Context) -> None:
        points = {}
        for rs in per_model.values():
            trained = done(rs)
            ms = values(rs, lambda r: latency(r, 1))
            if trained and ms:
                points[trained[0]["label"]] = (statistics.median(ms),
                                               statistics.fmean(values(rs, lambda r: r["test"]["macro_f1"])),
                                               trained[0]["cost"]["params"] / 1e6)
        if not points:
            plots.nothing_trained(ctx.out / "cost.png", "Table 4")
            return
        plots.cost_scatter(points, ctx.out / "cost.png", "ms per window on this CPU, batch 1 (log)",
                           f"Table 4 on {ctx.preset}: score against CPU latency (area: parameters)")
