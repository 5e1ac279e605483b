"""Markdown for table.md: records grouped per model, mean ± std over seeds, and the common header."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from train.experiments.base import Context, Record
from train.experiments.paper import SOURCE

MIN_SEEDS_FOR_SPREAD = 3


def groups(records: list[Record]) -> dict[str, list[Record]]:
    """Records per cell name (role + variant), in the order the cells ran."""
    out: dict[str, list[Record]] = {}
    for record in records:
        name = record["role"] if not record.get("variant") else f"{record['role']}_{record['variant']}"
        out.setdefault(name, []).append(record)
    return out


def done(records: list[Record]) -> list[Record]:
    return [r for r in records if r.get("status") == "done"]


def values(records: list[Record], get: Callable[[Record], float | None]) -> list[float]:
    """`get` of every trained record, leaving out undefined ones (None, NaN)."""
    out = []
    for record in done(records):
        value = get(record)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append(float(value))
    return out


def mean_std(xs: Sequence[float], digits: int = 4, scale: float = 1.0) -> str:
    """"0.9512 ± 0.0031" (sample std over seeds); one value has no spread; none is "n/a"."""
    if not xs:
        return "n/a"
    mean = statistics.fmean(xs) * scale
    if len(xs) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(xs) * scale:.{digits}f}"


def median_text(xs: Sequence[float], digits: int = 1) -> str:
    return f"{statistics.median(xs):.{digits}f}" if xs else "n/a"


def paper_value(value: float | None, digits: int = 4) -> str:
    return "not published" if value is None else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def not_run_reason(records: list[Record]) -> str | None:
    """Why a model has no trained cell: "not run: <budget's reason>" or "failed: <error>" (first seen)."""
    for record in records:
        if record.get("status") != "done":
            return f"{record['status']}: {record.get('reason')}"
    return None


def header(ctx: Context, title: str, recipe: str) -> list[str]:
    """Title, the command, what was trained (budget, data, seeds) and the provenance of paper numbers."""
    budget = ctx.budget
    n_seeds = len(ctx.seeds)
    lines = [f"# {title}", "",
             f"- command: `{ctx.command}`",
             f"- data: synthetic `{ctx.preset}` (train and test windows from different generator seeds); "
             f"budget `{budget.name}`: {budget.description}",
             f"- recipe: {recipe}",
             f"- seeds: {', '.join(map(str, ctx.seeds))}; cells show mean ± sample std over seeds",
             f"- {SOURCE}"]
    if budget.shrinks_models:
        lines.append(f"- **budget `{budget.name}` trains mad_tiny-sized stand-ins of every model** (the sizes in "
                     f"configs/experiments/{budget.name}.yaml); the numbers check the pipeline, not the models")
    if n_seeds < MIN_SEEDS_FOR_SPREAD:
        lines.append(f"- only {n_seeds} seed(s): no spread worth reading; use --seeds {MIN_SEEDS_FOR_SPREAD} or more "
                     "where differences are small")
    return [*lines, ""]
