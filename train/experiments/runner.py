"""Run an experiment's cells: skip the finished ones, train or resume the others with fit, record each.

Resumption works at two levels. A cell whose record (<out>/cells/<key>.json) exists is skipped whole.
A cell without one trains in <runs>/<key>/ with `fit`: a run that finished (its test_metrics.json
exists, e.g. trained by another experiment sharing --runs) is only measured; one with a saved state
continues with fit's own resume; one that stopped before its first epoch ended starts again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mad.flops import model_cost
from train.config import TrainConfig, config_to_dict
from train.data_spec import DataSplits, open_datasets
from train.experiments.base import Context, Experiment, Record
from train.experiments.cells import Cell, run_dir
from train.fit import fit

TEST_KEYS = ("n", "accuracy", "macro_f1", "macro_auc", "ece", "precision", "recall", "f1", "confusion",
             "class_names")
HISTORY_FLOATS = ("val_macro_f1", "val_accuracy", "train_loss", "train_main", "epoch_seconds", "train_samples_per_s")


@dataclass
class RunStats:
    recorded_before: int = 0  # cells whose record existed (skipped)
    run_now: int = 0  # cells trained, resumed or measured in this invocation (diverged ones included)
    not_run: int = 0  # cells the budget does not train


class SplitsCache:
    """The splits of the last (data config, seed): the cells of one seed share them, since opening
    materialises every window in memory (the slow part off a GPU). One entry: windows take gigabytes."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._splits: DataSplits | None = None

    def get(self, config: TrainConfig) -> DataSplits:
        data = {k: v for k, v in config_to_dict(config)["data"].items() if k != "num_workers"}
        key = json.dumps({"data": data, "seed": config.seed}, sort_keys=True)
        if key != self._key:
            self._splits = None  # free the old windows before generating the new ones
            self._splits = open_datasets(config.data.spec, config.data, config.seed)
            self._key = key
        assert self._splits is not None
        return self._splits


def record_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.key}.json"


def load_record(out: Path, cell: Cell) -> Record | None:
    path = record_path(out, cell)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(path: Path, payload: Any) -> None:
    """Write through a temporary file: an interrupted write never leaves a half record that counts as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_history(metrics_csv: Path) -> list[dict[str, Any]]:
    """fit's metrics.csv, one dict per (stage, epoch), numbers as numbers."""
    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{"stage": r["stage"], "epoch": int(r["epoch"]), "step": int(r["step"]),
             **{k: float(r[k]) for k in HISTORY_FLOATS if r.get(k)}} for r in rows]


def is_finished(out: Path) -> bool:
    """fit writes test_metrics.json last, after the final checkpoint."""
    return (out / "test_metrics.json").is_file()


def train_cell(cell: Cell, ctx: Context, splits: DataSplits) -> Path:
    """Train (or continue) the cell's run; returns its folder, holding a finished run."""
    assert cell.config is not None
    out = run_dir(ctx.runs, cell)
    if (out / "state" / "state.json").is_file():
        fit(cell.config, out, resume=out, device=ctx.device, splits=splits, show_progress=ctx.show_progress)
    else:
        if out.exists():  # stopped inside its first epoch: no state to continue, and fit refuses a used folder
            shutil.rmtree(out)
        fit(cell.config, out, device=ctx.device, splits=splits, show_progress=ctx.show_progress)
    return out


def measure_cell(experiment: Experiment, cell: Cell, ctx: Context, splits: DataSplits | None, out: Path) -> Record:
    from mad.runtime import load_model
    from train.distributed import resolve_device

    assert cell.config is not None
    test = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    history = read_history(out / "metrics.csv")
    model = load_model(out / f"{cell.config.name}.safetensors", device=resolve_device(ctx.device))
    cost = model_cost(model.config)
    record: Record = {
        "status": "done", "run_dir": str(out), "stages": list(cell.config.stages),
        "config": config_to_dict(cell.config),
        "test": {k: test[k] for k in TEST_KEYS},
        "history": history,
        "train_seconds": sum(row.get("epoch_seconds", 0.0) for row in history),
        "cost": {"params": cost.params["total"], "gmacs": cost.gmacs, "tokens": cost.tokens},
    }
    record.update(experiment.measure(cell, model, splits, ctx))
    return record


def run_cell(experiment: Experiment, cell: Cell, ctx: Context, cache: SplitsCache) -> Record:
    """Train (or resume, or reuse) and measure one cell; a diverged run is recorded as failed."""
    record: Record = {"experiment": experiment.name, "role": cell.role, "variant": cell.variant,
                      "label": cell.label, "seed": cell.seed, "key": cell.key}
    if cell.config is None:
        return {**record, "status": "not run", "reason": cell.skip_reason}
    out = run_dir(ctx.runs, cell)
    try:
        if not is_finished(out):  # one finished by another experiment sharing --runs is only measured
            train_cell(cell, ctx, cache.get(cell.config))
    except FloatingPointError as exc:  # fit stops on a non-finite loss: a result (the paper's "unstable")
        return {**record, "status": "failed", "reason": str(exc)}
    splits = cache.get(cell.config) if experiment.needs_test_windows else None
    return {**record, **measure_cell(experiment, cell, ctx, splits, out)}


def run_experiment(experiment: Experiment, ctx: Context) -> tuple[list[Record], RunStats]:
    """Every cell's record, in cell order (recorded ones read back), and what this invocation did."""
    cells = experiment.cells(ctx)
    stats = RunStats()
    cache = SplitsCache()
    records = []
    bar = tqdm(cells, desc=f"{experiment.name} cells", unit="cell", disable=not ctx.show_progress)
    for cell in bar:
        bar.set_postfix_str(f"{cell.name} seed {cell.seed}")
        record = load_record(ctx.out, cell)
        if record is not None:
            stats.recorded_before += 1
        else:
            record = run_cell(experiment, cell, ctx, cache)
            if record["status"] == "not run":
                stats.not_run += 1
            else:
                stats.run_now += 1
            write_json(record_path(ctx.out, cell), record)
        records.append(record)
    return records, stats
