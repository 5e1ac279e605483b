"""Shared LIMoE encoder: pre-LN transformer blocks with a mixture-of-experts FFN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mad.model.moe import MoEFeedForward


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj.is_residual_proj = True

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(  # (B, H, T, D/H)
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(batch, tokens, dim))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int, num_experts: int, routing: str, top_k: int,
                 dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.moe = MoEFeedForward(dim, mlp_hidden, num_experts, routing, top_k, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, modality: torch.Tensor, token_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = x + self.drop(self.attn(self.norm1(x), attn_mask))
        h, aux = self.moe(self.norm2(x), modality, token_mask)
        x = x + self.drop(h)
        return x, aux


class LIMoEEncoder(nn.Module):
    """(B, T, D) tokens of both modalities -> (B, T, D), plus routing losses averaged over blocks."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_hidden: int, num_experts: int, routing: str,
                 top_k: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, heads, mlp_hidden, num_experts, routing, top_k, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, modality: torch.Tensor,
                token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # SDPA boolean mask: True = may attend. Only built when some tokens are absent (masked path is slower).
        attn_mask = None if token_mask is None else token_mask[:, None, None, :]
        totals: dict[str, torch.Tensor] = {}
        for block in self.blocks:
            x, aux = block(x, modality, token_mask, attn_mask)
            for key, value in aux.items():
                totals[key] = totals.get(key, 0) + value / len(self.blocks)
        return self.norm(x), totals
