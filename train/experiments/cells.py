"""Cells: one training run of one model with one seed, its config built from the repository's configs.

A cell's identity is its full training config (less the DataLoader worker count, a property of the
machine): its key ends in a hash of it, so a cell whose budget or recipe changed is a new cell, and
two experiments that train the same config (MAD_small seed 42 in Tables 2, 3, 4 and Figure 3) can
share one run through a common --runs folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mad.model import get_model_config
from train.config import TrainConfig, config_to_dict, parse_config
from train.experiments.budget import CONFIGS_DIR, Budget, BudgetError, deep_merge

FIRST_SEED = 42  # the paper's seed (and the repository configs'); seed i of an experiment is 42 + i


@dataclass(frozen=True)
class Role:
    """A model as the paper's tables name it, the repository config that trains it and its preset."""

    label: str
    config_file: str
    preset: str


# Every MAD variant trains with configs/mad_small.yaml's recipe (only `model:` differs), so a table compares
# networks, not recipes; each baseline has its own config, which is that same recipe (docs/experiments.md).
ROLES: dict[str, Role] = {
    "mad_small": Role("MAD_small", "mad_small.yaml", "mad_small"),
    "mad_base": Role("MAD_base", "mad_small.yaml", "mad_base"),
    "mad_img_only": Role("MAD_img_only", "mad_small.yaml", "mad_img_only"),
    "mad_sig_only": Role("MAD_sig_only", "mad_small.yaml", "mad_sig_only"),
    "perceiver_io": Role("Perceiver IO", "perceiver_io.yaml", "perceiver_io"),
    "cmt": Role("CMT", "cmt.yaml", "cmt"),
    "cfm": Role("CFM", "cfm.yaml", "cfm"),
    "inception_time": Role("InceptionTime", "inception_time.yaml", "inception_time"),
}


@dataclass(frozen=True)
class Cell:
    """One (model, seed) of an experiment. `variant` tells two cells of one role apart (Figure 6's
    recipes); `config` is None where the budget does not train the role (`skip_reason` says why)."""

    role: str
    variant: str
    label: str
    seed: int
    config: TrainConfig | None
    skip_reason: str | None = None

    @property
    def name(self) -> str:
        return self.role if not self.variant else f"{self.role}_{self.variant}"

    @property
    def key(self) -> str:
        """File-name-safe identity: name, seed and a hash of the recipe (empty hash for a skipped cell)."""
        digest = "skipped" if self.config is None else config_hash(self.config)
        return f"{self.name}-seed{self.seed}-{digest}"


def config_hash(config: TrainConfig) -> str:
    raw = config_to_dict(config)
    raw["data"] = {k: v for k, v in raw["data"].items() if k != "num_workers"}  # as fit's resume check
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:10]


def seeds_for(n: int) -> list[int]:
    return [FIRST_SEED + i for i in range(n)]


def model_field(role: str, budget: Budget) -> str | dict[str, Any]:
    """The `model:` of the cell's config: the preset name, or with the budget's changes a full config dict
    (the smoke budget's tiny stand-ins), which the registry rebuilds by its `family` key."""
    preset = ROLES[role].preset
    changes = budget.models.get(role)
    if not changes:
        return preset
    try:
        config = dataclasses.replace(get_model_config(preset), name=f"{preset}_{budget.name}", **changes)
    except (TypeError, ValueError) as exc:
        raise BudgetError(f"budget {budget.name}: models.{role}: {exc}") from None
    return dataclasses.asdict(config)


def build_config(role: str, *, budget: Budget, preset: str, seed: int, overlay: dict[str, Any] | None = None,
                 name: str | None = None, num_workers: int | None = None) -> TrainConfig:
    """The role's repository config, then the budget's overlay, then the experiment's own `overlay`,
    then model, name, seed and data spec."""
    path = CONFIGS_DIR / ROLES[role].config_file
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BudgetError(f"{path}: cannot read the model's training config ({exc.strerror})") from None
    raw = deep_merge(raw, budget.train)
    raw = deep_merge(raw, overlay or {})
    raw.update(name=name or role, model=model_field(role, budget), seed=seed)
    raw["data"] = {**raw.get("data", {}), "spec": f"synth:{preset}"}
    if num_workers is not None:
        raw["data"]["num_workers"] = num_workers
    return parse_config(raw, f"{path} + budget {budget.name}")


def make_cells(roles: list[str], *, budget: Budget, preset: str, seeds: list[int],
               num_workers: int | None = None) -> list[Cell]:
    """Seed-major (all models of seed 42 first): the cells of one seed share their data splits."""
    cells = []
    for seed in seeds:
        for role in roles:
            if role in budget.skip:
                cells.append(Cell(role, "", ROLES[role].label, seed, None, budget.skip[role]))
                continue
            config = build_config(role, budget=budget, preset=preset, seed=seed, num_workers=num_workers)
            cells.append(Cell(role, "", ROLES[role].label, seed, config))
    return cells


def run_dir(runs: Path, cell: Cell) -> Path:
    return runs / cell.key
