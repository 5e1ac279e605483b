"""Input checks every model family shares: which inputs a model reads, and the per-sample presence masks.

One place, so MAD and the baselines refuse the same bad input with the same message.
"""

from __future__ import annotations

import torch


def select_inputs(images: torch.Tensor | None, signals: torch.Tensor | None, use_image: bool, use_signal: bool,
                  modalities: tuple[str, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Drop the input of a modality the model lacks (ignored, as the agent may send both); refuse no input
    at all and inputs whose batch sizes differ."""
    images = images if use_image else None
    signals = signals if use_signal else None
    if images is None and signals is None:
        raise ValueError(f"no input for this model: it uses {modalities}, and those inputs are None")
    if images is not None and signals is not None and images.shape[0] != signals.shape[0]:
        raise ValueError(f"batch sizes differ: images {images.shape[0]} vs signals {signals.shape[0]}")
    return images, signals


def check_present(present: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """A (B,) presence mask -> bool; `name` (image_present / signal_present) is named in the error."""
    if present.shape != (batch,):
        raise ValueError(f"{name} must be a (B,)=({batch},) bool tensor, got shape {tuple(present.shape)}")
    return present.bool()


def check_some_modality(present: list[torch.Tensor | None]) -> None:
    """`present` holds one (B,) mask per given input (None: every sample has it); each sample needs one."""
    if any(mask is None for mask in present):
        return
    if not bool(torch.stack(present).any(dim=0).all()):
        raise ValueError("image_present/signal_present leave a sample with no modality at all")
