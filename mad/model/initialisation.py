"""nanoGPT's weight initialisation, shared by MAD and the transformer baselines so that a comparison
between them is not a comparison of init schemes."""

from __future__ import annotations

import math

from torch import nn


def nanogpt_init(module: nn.Module, depth: int) -> None:
    """For `model.apply`: Linear/Conv weights N(0, 0.02), biases 0; residual projections (flagged
    `is_residual_proj`) N(0, 0.02 / sqrt(2 * depth)) so the residual stream's variance does not grow with
    depth; flow outputs (flagged `is_flow_output`) 0 so each flow starts as the identity."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        if getattr(module, "is_flow_output", False):
            nn.init.zeros_(module.weight)
        else:
            std = 0.02 / math.sqrt(2 * depth) if getattr(module, "is_residual_proj", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
