"""Cross-modal transformer (CMT): the paper's "ViT + Transformer + Cross-Attention" baseline.

Read after MulT (Tsai et al. 2019): each modality first has its own encoder (a ViT on the PRPD patches,
a Transformer on the series tokens), then `cross_depth` layers in which the image tokens attend to the
signal tokens and the signal tokens to the image tokens (two cross-attention streams, both reading
the other stream's previous layer). Each stream is mean-pooled and normalised; the pooled feature is
the mean of the streams a sample has. A sample without a modality keeps its other stream without the
cross-attention update (and an MLP still runs), which equals running it with that input None.
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
class CMTConfig(TokenInputConfig):
    FAMILY: ClassVar[str] = "cmt"
    family: str = FAMILY
    unimodal_depth: int = 2  # self-attention blocks per modality before any cross-attention
    cross_depth: int = 2  # cross-modal layers (each: image <- signal and signal <- image)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field_types(self, positive_ints=("unimodal_depth", "cross_depth"))


def mean_of_present(pooled: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
    """Per sample, the mean of the (B, D) vectors whose (B,) presence mask is True (None: all present)."""
    total = count = None
    for vector, present in pooled:
        weight = (torch.ones(vector.shape[0], device=vector.device, dtype=vector.dtype) if present is None
                  else present.to(vector.dtype))[:, None]
        total = vector * weight if total is None else total + vector * weight
        count = weight if count is None else count + weight
    return total / count.clamp_min(1.0)


class CrossModalEncoder(nn.Module):
    """ModalityTokens -> (B, D): unimodal encoders, then image <-> signal cross-attention, then pooling."""

    def __init__(self, config: CMTConfig) -> None:
        super().__init__()
        dim, heads, hidden, dropout = config.dim, config.heads, config.mlp_hidden, config.dropout

        def stack(block: type[nn.Module], depth: int) -> nn.ModuleList:
            return nn.ModuleList(block(dim, heads, hidden, dropout) for _ in range(depth))

        self.image_encoder = stack(TransformerBlock, config.unimodal_depth)  # the ViT
        self.signal_encoder = stack(TransformerBlock, config.unimodal_depth)
        self.image_from_signal = stack(CrossAttentionBlock, config.cross_depth)
        self.signal_from_image = stack(CrossAttentionBlock, config.cross_depth)
        self.image_norm = nn.LayerNorm(dim)
        self.signal_norm = nn.LayerNorm(dim)

    def forward(self, tokens: ModalityTokens) -> torch.Tensor:
        image, signal = tokens.image, tokens.signal
        for block in self.image_encoder if image is not None else ():
            image = block(image)
        for block in self.signal_encoder if signal is not None else ():
            signal = block(signal)
        for to_image, to_signal in zip(self.image_from_signal, self.signal_from_image, strict=True):
            new_image = None if image is None else to_image(image, signal, attend=tokens.signal_present)
            new_signal = None if signal is None else to_signal(signal, image, attend=tokens.image_present)
            image, signal = new_image, new_signal
        pooled = []
        if image is not None:
            pooled.append((self.image_norm(image).mean(dim=1), tokens.image_present))
        if signal is not None:
            pooled.append((self.signal_norm(signal).mean(dim=1), tokens.signal_present))
        return mean_of_present(pooled)


class CMT(TokenBaseline):
    def __init__(self, config: CMTConfig) -> None:
        super().__init__(config)
        self.encoder = CrossModalEncoder(config)
        self.apply(partial(nanogpt_init, depth=config.unimodal_depth + config.cross_depth))


# Two unimodal blocks per modality and two cross-modal layers at MAD_small's width and tokens.
CMT_SMALL = CMTConfig(name="cmt")
