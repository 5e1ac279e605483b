"""InceptionTime (Ismail Fawaz et al. 2020) on the PD series alone: the strongest public result on the real
AI Hub series (0.990 macro-F1, KELLO83/partial-discharge-diagnosis), so the bar a series-only model sets.

Input reading (docs/experiments.md, "Baselines: how each is read"):
- normalisation: MAD's own per-window robust standardisation, (x - median) / max(1.4826 MAD, floor), then
  asinh, so gain and baseline cancel as they do for MAD and the comparison is about the network;
- layout: the window as 20 channels of 7,680 samples (its 1 s rows), not 1 channel of 153,600. Each row
  holds a whole number of supply cycles at 50 and 60 Hz, so every row starts at the same phase and the
  channels are phase-aligned: a convolution sees the same point of the cycle in all 20 seconds at once,
  the accumulation a PRPD plot makes;
- envelope pooling: the max and the min of each `pool` consecutive samples of a row (40 channels of
  7,680 / pool). A PD pulse is a few samples wide: an average would shrink it into the noise floor; the
  max and min keep its height and sign. With pool 8 a 60 Hz cycle is 16 steps (22.5 degrees each, finer
  than the phase windows PD classes differ by) and a training step costs about MAD_small's (0.46 GMACs;
  the full rate would be 3.7), which keeps it CPU-trainable.
Network as published: `depth` Inception modules (1x1 bottleneck, three convolutions of kernels 39/19/9 on
it, and a max-pool branch with a 1x1 convolution, concatenated, BatchNorm, ReLU), a residual shortcut
(1x1 convolution + BatchNorm) every 3 modules, global average pooling, linear classifier. The PRPD image
is ignored (a missing image is the normal case); PyTorch's default init, as the Keras original used its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mad.config import check_field_types, invalid
from mad.constants import NUM_CLASSES, ROW_SAMPLES, WINDOW_ROWS
from mad.model.baselines.base import BaselineModel, check_family
from mad.model.inputs import check_present, check_some_modality, select_inputs
from mad.model.preprocess import SignalPreprocess


@dataclass(frozen=True)
class InceptionTimeConfig:
    FAMILY: ClassVar[str] = "inception_time"
    use_image: ClassVar[bool] = False  # series only
    use_signal: ClassVar[bool] = True
    name: str = "inception_time_custom"
    family: str = FAMILY
    # --- preprocessing (MAD's) and input layout
    signal_spread_floor: float = 1e-3
    signal_compress: bool = True
    pool: int = 8  # envelope pooling: max and min over `pool` samples per row (1: the raw 20 x 7,680)
    # --- network (the paper's defaults)
    filters: int = 32  # nf: channels per branch; a module outputs 4 x nf
    bottleneck: int = 32  # bottleneck channels before the long convolutions
    kernel_sizes: tuple[int, ...] = (39, 19, 9)  # the published 40/20/10, odd so the padding is symmetric
    depth: int = 6  # Inception modules
    residual_every: int = 3  # a shortcut around every `residual_every` modules
    proj_dim: int = 128  # SupCon projection size (for `--stages supcon,ce`)
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        # JSON has no tuples: a sidecar gives a list, and the config must compare equal to the preset's.
        if isinstance(self.kernel_sizes, list):
            object.__setattr__(self, "kernel_sizes", tuple(self.kernel_sizes))
        check_family(self)
        check_field_types(self, positive_ints=("pool", "filters", "bottleneck", "depth", "residual_every",
                                               "proj_dim", "num_classes"),
                          positive_numbers=("signal_spread_floor",), bools=("signal_compress",), names=("name",))
        if ROW_SAMPLES % self.pool:
            raise invalid(self, "pool", f"must divide the row length {ROW_SAMPLES}")
        kernels = self.kernel_sizes
        if not (isinstance(kernels, tuple) and kernels and all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 for k in kernels)):
            raise invalid(self, "kernel_sizes", "must be a non-empty list of odd positive integers")

    @property
    def in_channels(self) -> int:
        return WINDOW_ROWS if self.pool == 1 else 2 * WINDOW_ROWS

    @property
    def dim(self) -> int:
        """Width of the pooled feature: one block of `filters` per convolution and one for the max-pool branch."""
        return (len(self.kernel_sizes) + 1) * self.filters

    @property
    def image_tokens(self) -> int:
        return 0

    @property
    def signal_tokens(self) -> int:
        """Time steps the convolutions run over (reported as the sequence length by mad-train info)."""
        return ROW_SAMPLES // self.pool

    def replace(self, **changes: Any) -> InceptionTimeConfig:
        return dataclasses.replace(self, **changes)


def envelope_pool(x: torch.Tensor, pool: int) -> torch.Tensor:
    """(B, C, L) -> (B, 2C, L / pool): max then min over each `pool` consecutive samples (pool 1: x)."""
    if pool == 1:
        return x
    windows = x.unflatten(-1, (-1, pool))  # (B, C, L / pool, pool)
    return torch.cat([windows.amax(dim=-1), windows.amin(dim=-1)], dim=1)


class InceptionModule(nn.Module):
    """(B, C_in, L) -> (B, (len(kernels) + 1) * filters, L)."""

    def __init__(self, in_channels: int, filters: int, bottleneck: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        # The published bottleneck is skipped on a 1-channel input, where it would only widen it.
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1, bias=False) if in_channels > 1 else nn.Identity()
        width = bottleneck if in_channels > 1 else in_channels
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernel_sizes)
        self.max_pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.pool_conv = nn.Conv1d(in_channels, filters, 1, bias=False)
        self.norm = nn.BatchNorm1d((len(kernel_sizes) + 1) * filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        narrow = self.bottleneck(x)
        branches = [conv(narrow) for conv in self.convs] + [self.pool_conv(self.max_pool(x))]
        return F.relu(self.norm(torch.cat(branches, dim=1)))


class Shortcut(nn.Module):
    """The residual path around `residual_every` modules: 1x1 convolution to the new width, BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class InceptionNetwork(nn.Module):
    """(B, 20, 7680) normalised rows -> (B, dim): envelope pooling, Inception modules with shortcuts, GAP."""

    def __init__(self, config: InceptionTimeConfig) -> None:
        super().__init__()
        self.pool, self.residual_every = config.pool, config.residual_every
        channels = residual_channels = config.in_channels
        self.blocks, self.shortcuts = nn.ModuleList(), nn.ModuleList()
        for index in range(config.depth):
            self.blocks.append(InceptionModule(channels, config.filters, config.bottleneck, config.kernel_sizes))
            channels = config.dim
            if (index + 1) % config.residual_every == 0:
                self.shortcuts.append(Shortcut(residual_channels, channels))
                residual_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual = envelope_pool(x, self.pool)  # (B, C, L)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if (index + 1) % self.residual_every == 0:
                x = residual = F.relu(x + self.shortcuts[index // self.residual_every](residual))
        return x.mean(dim=-1)  # global average pooling over time: (B, dim)


class InceptionTime(BaselineModel):
    def __init__(self, config: InceptionTimeConfig) -> None:
        super().__init__(config)
        self.signal_preprocess = SignalPreprocess(config.signal_spread_floor, config.signal_compress)
        self.encoder = InceptionNetwork(config)

    def forward_features(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                         image_present: torch.Tensor | None = None,
                         signal_present: torch.Tensor | None = None) -> torch.Tensor:
        """The image and image_present are ignored; a sample whose signal is masked has nothing to read."""
        _, signals = select_inputs(images, signals, False, True, self.modalities)
        if signal_present is not None:
            check_some_modality([check_present(signal_present, signals.shape[0], "signal_present")])
        rows = self.signal_preprocess(signals).view(-1, WINDOW_ROWS, ROW_SAMPLES)  # (B, 20, 7680)
        return self.encoder(rows)


# The published network (nf 32, depth 6) on the 8x envelope of the 20 phase-aligned rows.
INCEPTION_TIME = InceptionTimeConfig(name="inception_time")
