"""Heads on the encoder output: SupCon projection and the linear classifier (both on mean-pooled tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(tokens: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) -> (B, D): mean over present tokens."""
    if token_mask is None:
        return tokens.mean(dim=1)
    w = token_mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class ProjectionHead(nn.Module):
    """(B, D) -> (B, proj_dim) L2-normalised: the SupCon embedding (stage 1)."""

    def __init__(self, dim: int, proj_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, proj_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc2(F.gelu(self.fc1(pooled))), dim=-1)


class ClassifierHead(nn.Module):
    """(B, D) -> (B, num_classes) logits (stage 2)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)
