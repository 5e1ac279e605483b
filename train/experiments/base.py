"""What every experiment is: cells to train, per-cell measurements beyond the test metrics, and outputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from train.data_spec import DataSplits
from train.experiments.budget import Budget
from train.experiments.cells import Cell

Record = dict[str, Any]  # one (model, seed) cell's raw metrics, as results.json holds it


@dataclass(frozen=True)
class Context:
    """One invocation: what to run, where, and on which device."""

    experiment: str
    preset: str  # synthetic preset: standard | hard
    budget: Budget
    seeds: list[int]
    out: Path  # table.md, plots, results.json, cells/<key>.json
    runs: Path  # fit's run folders (resumable, shareable between experiments)
    device: str = "auto"
    num_workers: int | None = None
    show_progress: bool = True
    command: str = ""  # the command line, printed in table.md so a table says how to regenerate it


class Experiment(ABC):
    name: ClassVar[str]
    title: ClassVar[str]  # the paper's table or figure this reproduces
    needs_test_windows: ClassVar[bool] = True  # does `measure` read the test split (else it is None there)

    @abstractmethod
    def cells(self, ctx: Context) -> list[Cell]:
        """The cells to train, seed-major (the cells of one seed share their data)."""

    def measure(self, cell: Cell, model: nn.Module, splits: DataSplits | None, ctx: Context) -> Record:
        """Measurements of a trained cell beyond test metrics, history and cost (latency, latent space...)."""
        return {}

    @abstractmethod
    def write(self, records: list[Record], ctx: Context) -> list[str]:
        """Write table.md and the plots into ctx.out; returns the file names written."""
