"""One `build_model` for every model family: MAD and the baselines of the paper's Table 4.

A config is a frozen dataclass of one family; its dict form (`dataclasses.asdict`, the sidecar's
model_config) carries a "family" key, except MAD's, which predates the baselines: a dict without one
is a MADConfig, so every checkpoint written before them still loads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mad.config import PRESETS as MAD_PRESETS
from mad.config import MADConfig, config_from_dict, lookup_preset
from mad.model.baselines import BASELINE_FAMILIES, BASELINE_PRESETS
from mad.model.mad import MAD

MAD_FAMILY = "mad"
FAMILIES: dict[str, tuple[type, type[nn.Module]]] = {MAD_FAMILY: (MADConfig, MAD), **BASELINE_FAMILIES}
PRESETS: dict[str, Any] = {**MAD_PRESETS, **BASELINE_PRESETS}
_CONFIG_CLASSES = tuple(config_class for config_class, _ in FAMILIES.values())


def get_model_config(name_or_config: str | dict[str, Any] | Any) -> Any:
    """A preset name, a config of any family, or its dict (from a sidecar or a YAML `model:` mapping)."""
    if isinstance(name_or_config, _CONFIG_CLASSES):
        return name_or_config
    if isinstance(name_or_config, str):
        return lookup_preset(name_or_config, PRESETS)
    if isinstance(name_or_config, dict):
        raw = dict(name_or_config)
        family = raw.get("family", MAD_FAMILY)
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
        if family == MAD_FAMILY:
            raw.pop("family", None)  # MADConfig has no such field
        return config_from_dict(FAMILIES[family][0], raw)
    raise TypeError(f"expected a preset name, a model config or a dict, got {type(name_or_config).__name__}")


def build_model(name_or_config: str | dict[str, Any] | Any, *, seed: int | None = None) -> nn.Module:
    """Build any family's model from a preset name, config or config dict; `seed` makes the weights
    reproducible without touching the global RNG."""
    config = get_model_config(name_or_config)
    model_class = next(model for config_class, model in FAMILIES.values() if isinstance(config, config_class))
    if seed is None:
        return model_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)
