"""Experiment name -> the experiment (each module's class)."""

from __future__ import annotations

from train.experiments.base import Experiment
from train.experiments.fig3 import Fig3
from train.experiments.fig6 import Fig6
from train.experiments.table2 import Table2
from train.experiments.table3 import Table3
from train.experiments.table4 import Table4

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (Table2(), Table3(), Table4(), Fig3(), Fig6())}
