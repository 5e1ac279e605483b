"""Tokenisers: PRPD patches and PD-signal segments -> (B, T, dim) tokens.

Both add fixed sinusoidal positions (paper: "static positional encoding") and a learned
per-modality embedding so the shared encoder can tell the two token kinds apart.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) fixed sin/cos table of "Attention is all you need"."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class PatchTokenizer(nn.Module):
    """(B, 3, H, W) -> (B, (H/p)^2, dim): non-overlapping p x p patches, linear embedding (ViT)."""

    def __init__(self, image_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        num_tokens = (image_size // patch_size) ** 2
        self.register_buffer("pos", sinusoidal_positions(num_tokens, dim), persistent=False)
        self.modality = nn.Parameter(torch.randn(dim) * 0.02)  # learned modality embedding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images).flatten(2).transpose(1, 2)  # (B, T, dim)
        return x + self.pos + self.modality


class SignalTokenizer(nn.Module):
    """(B, N) normalised samples -> (B, N / token_len, dim): consecutive segments, linear embedding."""

    def __init__(self, num_samples: int, token_len: int, dim: int) -> None:
        super().__init__()
        self.token_len = token_len
        self.proj = nn.Linear(token_len, dim)
        self.register_buffer("pos", sinusoidal_positions(num_samples // token_len, dim), persistent=False)
        self.modality = nn.Parameter(torch.randn(dim) * 0.02)  # learned modality embedding

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        segments = signal.reshape(signal.shape[0], -1, self.token_len)  # (B, T, token_len)
        return self.proj(segments) + self.pos + self.modality
