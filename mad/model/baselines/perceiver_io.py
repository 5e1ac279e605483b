"""Perceiver IO (Jaegle et al. 2021) on MAD's tokens: the paper's "latent-space cross-attention" baseline.

A learned latent array cross-attends once to the tokens of both modalities (concatenated; the
tokenisers' modality embeddings tell them apart), a stack of self-attention blocks processes the
latents, and one learned output query cross-attends to the latents to give the pooled feature. The
cost of the input is linear in its length (latents x tokens), so the model never attends token to
token: the "modality-independent latent space" of the paper's Table 4. A missing modality is a key
mask in the encoding cross-attention.
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
class PerceiverIOConfig(TokenInputConfig):
    FAMILY: ClassVar[str] = "perceiver_io"
    family: str = FAMILY
    num_latents: int = 64  # N: the latent array is (N, dim)
    latent_depth: int = 6  # self-attention blocks on the latents after the one encoding cross-attention

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field_types(self, positive_ints=("num_latents", "latent_depth"))


class PerceiverEncoder(nn.Module):
    """ModalityTokens -> (B, D): encode all tokens into the latents, process them, decode one query."""

    def __init__(self, config: PerceiverIOConfig) -> None:
        super().__init__()
        dim, hidden = config.dim, config.mlp_hidden
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim) * 0.02)  # (N, D)
        self.encode = CrossAttentionBlock(dim, config.heads, hidden, config.dropout)
        self.process = nn.ModuleList(TransformerBlock(dim, config.heads, hidden, config.dropout)
                                     for _ in range(config.latent_depth))
        self.query = nn.Parameter(torch.randn(1, dim) * 0.02)  # the output query array: one query, 5 classes
        self.decode = CrossAttentionBlock(dim, config.heads, hidden, config.dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: ModalityTokens) -> torch.Tensor:
        inputs, key_mask = tokens.joined()  # (B, T, D) image tokens first, (B, T) or None
        batch = inputs.shape[0]
        z = self.encode(self.latents.expand(batch, -1, -1), inputs, key_mask)  # (B, N, D)
        for block in self.process:
            z = block(z)
        out = self.decode(self.query.expand(batch, -1, -1), z)  # (B, 1, D)
        return self.norm(out[:, 0])


class PerceiverIO(TokenBaseline):
    def __init__(self, config: PerceiverIOConfig) -> None:
        super().__init__(config)
        self.encoder = PerceiverEncoder(config)
        # residual depth for the init scale: encode + process + decode blocks
        self.apply(partial(nanogpt_init, depth=config.latent_depth + 2))


# 64 latents x 6 blocks at MAD_small's width: about MAD_small's parameters at a fraction of its MACs.
PERCEIVER_IO = PerceiverIOConfig(name="perceiver_io")
