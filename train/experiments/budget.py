"""A compute budget (configs/experiments/<budget>.yaml): how big each cell of an experiment is.

A budget never holds whole training configs. Every cell starts from one of the repository's configs
(configs/mad_small.yaml, configs/cmt.yaml, ...), and the budget overlays a few fields on it: data sizes,
epochs, DataLoader workers; the smoke budget also shrinks every model to mad_tiny sizes. So the
experiments train what `mad-train fit --config configs/<model>.yaml` trains, only smaller or larger.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BUDGETS = ("smoke", "cpu", "gpu")
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"  # the checkout's configs/ (editable install)
BUDGETS_DIR = CONFIGS_DIR / "experiments"


class BudgetError(ValueError):
    """A budget file that cannot be used; the message names the file and the field."""


class LatencyPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batches: tuple[int, ...] = (1, 16)
    warmups: int = Field(1, ge=0)
    repeats: int = Field(5, ge=1)  # timed forward passes per batch size; the median is reported


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    seeds: int = Field(3, ge=1)  # default for --seeds
    # Deep-merged into every cell's training config (data sizes, epochs, workers, SupCon stage length).
    train: dict[str, Any] = Field(default_factory=dict)
    # role -> model config fields changed from the role's preset (the smoke budget's tiny stand-ins).
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # role -> why it is not trained at this budget (the tables say so in its row).
    skip: dict[str, str] = Field(default_factory=dict)
    latency: LatencyPlan = LatencyPlan()
    latent_windows: int = Field(300, ge=5)  # test windows in the Figure 3 latent space

    @property
    def shrinks_models(self) -> bool:
        return bool(self.models)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay`'s keys replaced, recursing into mappings present in both (copies; no aliasing)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_budget(name: str, directory: Path = BUDGETS_DIR) -> Budget:
    if name not in BUDGETS:
        raise BudgetError(f"unknown budget {name!r}; known: {', '.join(BUDGETS)}")
    path = directory / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BudgetError(f"{path}: cannot read the budget ({exc.strerror}); the experiments need a checkout "
                          "with configs/") from None
    except yaml.YAMLError as exc:
        raise BudgetError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise BudgetError(f"{path}: the top level must be a mapping")
    try:
        return Budget.model_validate({"name": name, **raw})
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BudgetError(f"{path}: invalid budget ({fields})") from None
