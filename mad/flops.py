"""Cost accounting: parameters per component and multiply-accumulates (GMACs) of one forward pass.

Convention (fvcore-style, as ViT papers report "GFLOPs"): one multiply-add = 1 MAC; counted for
every Linear/Conv (hooks on the modules that actually run, so top-k routing counts only the
experts a token visits) plus the two attention matmuls (Q K^T and A V: 2 * T^2 * D per block;
2 * Tq * Tk * D for the baselines' cross-attention) computed analytically because
scaled_dot_product_attention is a fused op. Normalisation, activations, softmax, pooling, the median
in preprocessing and elementwise ops are not counted.
Batch 1, classification path (the projection head does not run). Dense models are built on the
meta device, so even MAD_base is counted in well under a second without allocating weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.model.baselines.blocks import CrossAttention
from mad.model.encoder import SelfAttention
from mad.model.registry import build_model, get_model_config

COMPONENTS = ("tokenisers", "flows", "encoder", "heads")
# Top-level child module -> reported component; every family names its parts this way ("encoder": whatever
# sits between the tokenisers and the heads, e.g. a baseline's fusion network).
_COMPONENT_OF = {
    "image_preprocess": "tokenisers", "signal_preprocess": "tokenisers",
    "image_tokenizer": "tokenisers", "signal_tokenizer": "tokenisers",
    "image_flow": "flows", "signal_flow": "flows",
    "encoder": "encoder",
    "projection_head": "heads", "classifier": "heads",
}
# Paper table 3 (#Params in M, "GFLOPs"); the paper does not state its FLOP convention.
PAPER_FIGURES: dict[str, tuple[float, float | None]] = {"mad_base": (75.77, 318.53), "mad_small": (2.38, 2.10)}


@dataclass(frozen=True)
class ModelCost:
    name: str
    params: dict[str, int]  # per component + "total"
    macs: dict[str, int]  # per component + "total", batch 1, classification path
    tokens: int  # encoder sequence length

    @property
    def gmacs(self) -> float:
        return self.macs["total"] / 1e9


def parameter_counts(model: nn.Module) -> dict[str, int]:
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():
        counts[_COMPONENT_OF[name.split(".", 1)[0]]] += param.numel()
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    return counts


def _module_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, SelfAttention):  # Q K^T and A V, each B * H * T * T * (D / H)
        batch, tokens, dim = inputs[0].shape
        return 2 * batch * tokens * tokens * dim
    if isinstance(module, CrossAttention):  # Q K^T and A V, each B * H * Tq * Tk * (D / H)
        (batch, queries, dim), keys = inputs[0].shape, inputs[1].shape[1]
        return 2 * batch * queries * keys * dim
    return 0


def count_macs(model: nn.Module, batch: int = 1) -> dict[str, int]:
    """MACs of one classification forward pass on both inputs the model uses (per component + total)."""
    macs = dict.fromkeys(COMPONENTS, 0)
    handles = []
    for child_name, child in model.named_children():
        component = _COMPONENT_OF[child_name]
        for module in child.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, SelfAttention, CrossAttention)):
                def hook(mod, inputs, output, component=component):
                    macs[component] += _module_macs(mod, inputs, output)
                handles.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    images = torch.zeros(batch, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8, device=device)
    signals = torch.zeros(batch, WINDOW_ROWS, ROW_SAMPLES, dtype=torch.int16, device=device)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(images if model.config.use_image else None, signals if model.config.use_signal else None)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    macs["total"] = sum(macs[c] for c in COMPONENTS)
    return macs


def model_cost(name_or_config: str | dict | Any) -> ModelCost:
    """Parameters and batch-1 MACs of a preset or config of any family, built on the meta device."""
    config = get_model_config(name_or_config)
    # Top-k routing has data-dependent shapes (nonzero), which the meta device cannot run; each token
    # still visits exactly top_k experts, so a real CPU pass on zero inputs gives the same count.
    with torch.device("meta" if getattr(config, "routing", "dense") == "dense" else "cpu"):
        model = build_model(config)
    return ModelCost(config.name, parameter_counts(model), count_macs(model),
                     config.image_tokens + config.signal_tokens)
