"""Transformer blocks the baselines are built from: pre-LN self-attention and cross-attention.

They reuse MAD's own pieces (`SelfAttention`, the expert MLP) so that a difference in Table 4 comes
from how the modalities are fused, not from a different attention or MLP implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mad.model.encoder import SelfAttention
from mad.model.moe import ExpertMLP as MLP  # the same two-layer GELU MLP as one LIMoE expert


class CrossAttention(nn.Module):
    """Queries from x (B, Tq, D), keys and values from context (B, Tk, D) -> (B, Tq, D).

    key_mask (B, Tk) bool, True = may be attended to; every query row must keep at least one key (a row
    with none gives NaN in SDPA). Called with positional arguments so mad.flops can count its matmuls.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj.is_residual_proj = True

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, queries, dim = x.shape
        keys, head_dim = context.shape[1], dim // self.heads
        q = self.q(x).view(batch, queries, self.heads, head_dim).transpose(1, 2)  # (B, H, Tq, D/H)
        k, v = self.kv(context).view(batch, keys, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Tk)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, queries, dim))


class TransformerBlock(nn.Module):
    """Pre-LN self-attention block with a dense MLP: MAD's encoder block without the mixture of experts."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class CrossAttentionBlock(nn.Module):
    """x (B, Tq, D) attends to context (B, Tk, D), then an MLP; both sub-layers pre-LN with residuals.

    `attend` (B,) bool: a sample with False keeps x without the attention update, for a context whose
    modality that sample lacks; context None does the same for the whole batch. Either way the MLP still
    runs, so masking a modality per sample gives what leaving it out of the batch gives.
    """

    def __init__(self, dim: int, heads: int, mlp_hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, key_mask: torch.Tensor | None = None,
                attend: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None:
            update = self.drop(self.attn(self.norm_q(x), self.norm_kv(context), key_mask))
            if attend is not None:
                update = torch.where(attend[:, None, None], update, torch.zeros_like(update))
            x = x + update
        return x + self.drop(self.mlp(self.norm2(x)))
