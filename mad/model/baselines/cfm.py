"""CFM, "Cross-Fusion Memory": the paper's "memory-based delay fusion" baseline, as we read it.

The paper names CFM only by its key features (Table 4: "Cross-Fusion Memory"; section 4.2.5:
"memory-based delay fusion", read as late fusion). Our reading (docs/experiments.md, "Baselines: how
each is read"):

1. late fusion: each modality has its own Transformer encoder; no token sees the other modality before
   the memory;
2. memory: a learned bank of K slots, shared by both modalities. Each modality writes its own copy of
   the bank: the slots cross-attend to that modality's encoded tokens (one write block, shared, so slot
   k reads the same kind of evidence from both);
3. cross-fusion: per slot and channel, a learned gate computed from both copies mixes them
   (g * image + (1 - g) * signal); a sample without a modality takes the other copy as it is;
4. read-out: self-attention over the fused slots, then their mean is the pooled feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from mad.config import check_field_types
from mad.model.baselines.base import ModalityTokens, TokenBaseline, TokenInputConfig
from mad.model.baselines.blocks import CrossAttentionBlock, TransformerBlock
from mad.model.initialisation import nanogpt_init


@dataclass(frozen=True)
class CFMConfig(TokenInputConfig):
    FAMILY: ClassVar[str] = "cfm"
    family: str = FAMILY
    unimodal_depth: int = 2  # self-attention blocks per modality (the late-fusion encoders)
    memory_slots: int = 16  # K
    fusion_depth: int = 2  # self-attention blocks over the fused memory

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field_types(self, positive_ints=("unimodal_depth", "memory_slots", "fusion_depth"))


class GatedFusion(nn.Module):
    """(B, K, D) image memory, (B, K, D) signal memory -> (B, K, D): g * image + (1 - g) * signal."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, image: torch.Tensor, signal: torch.Tensor, image_present: torch.Tensor | None,
                signal_present: torch.Tensor | None) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([image, signal], dim=-1)))
        fused = g * image + (1 - g) * signal
        if image_present is not None:  # a sample without the image keeps the signal memory alone
            fused = torch.where(image_present[:, None, None], fused, signal)
        if signal_present is not None:
            fused = torch.where(signal_present[:, None, None], fused, image)
        return fused


class CrossFusionMemory(nn.Module):
    """ModalityTokens -> (B, D): unimodal encoders, memory writes, gated fusion, slot self-attention, mean."""

    def __init__(self, config: CFMConfig) -> None:
        super().__init__()
        dim, heads, hidden, dropout = config.dim, config.heads, config.mlp_hidden, config.dropout

        def encoder(depth: int) -> nn.ModuleList:
            return nn.ModuleList(TransformerBlock(dim, heads, hidden, dropout) for _ in range(depth))

        self.image_encoder = encoder(config.unimodal_depth)
        self.signal_encoder = encoder(config.unimodal_depth)
        self.memory = nn.Parameter(torch.randn(config.memory_slots, dim) * 0.02)  # (K, D)
        self.write = CrossAttentionBlock(dim, heads, hidden, dropout)
        self.fuse = GatedFusion(dim)
        self.read = encoder(config.fusion_depth)
        self.norm = nn.LayerNorm(dim)

    def _memory_of(self, tokens: torch.Tensor, blocks: nn.ModuleList) -> torch.Tensor:
        for block in blocks:
            tokens = block(tokens)
        return self.write(self.memory.expand(tokens.shape[0], -1, -1), tokens)  # (B, K, D)

    def forward(self, tokens: ModalityTokens) -> torch.Tensor:
        image = None if tokens.image is None else self._memory_of(tokens.image, self.image_encoder)
        signal = None if tokens.signal is None else self._memory_of(tokens.signal, self.signal_encoder)
        if image is not None and signal is not None:
            memory = self.fuse(image, signal, tokens.image_present, tokens.signal_present)
        else:
            memory = image if image is not None else signal
        for block in self.read:
            memory = block(memory)
        return self.norm(memory).mean(dim=1)


class CFM(TokenBaseline):
    def __init__(self, config: CFMConfig) -> None:
        super().__init__(config)
        self.encoder = CrossFusionMemory(config)
        self.apply(partial(nanogpt_init, depth=config.unimodal_depth + 1 + config.fusion_depth))


# Two unimodal blocks per modality (as CMT), 16 memory slots, two read-out blocks.
CFM_SMALL = CFMConfig(name="cfm")
