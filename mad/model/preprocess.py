"""Input preprocessing inside the model: raw sensor data in, normalised tensors out.

Living in the model (not the data loader) means the exact preprocessing travels with the
checkpoint, and the agent can feed raw integer ADC windows.
"""

from __future__ import annotations

import torch
from torch import nn

from mad.constants import ROW_SAMPLES, WINDOW_ROWS, WINDOW_SAMPLES

MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise


class SignalPreprocess(nn.Module):
    """(B, 20, 7680) raw counts (any dtype) -> (B, 153600) float: robust per-window normalisation.

    x <- (x - median) / max(1.4826 * MAD, floor), then optionally asinh. Median and MAD are
    unaffected by sparse PD pulses, so a change of sensor gain or baseline cancels out, and
    the pulses keep their size relative to the noise floor. asinh keeps the sign and is
    ~linear near the noise floor but logarithmic for the 100-1000x pulses.
    """

    def __init__(self, spread_floor: float, compress: bool) -> None:
        super().__init__()
        self.spread_floor = float(spread_floor)
        self.compress = bool(compress)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        if signals.dim() != 3 or tuple(signals.shape[1:]) != (WINDOW_ROWS, ROW_SAMPLES):
            raise ValueError(f"signals must be (B, {WINDOW_ROWS}, {ROW_SAMPLES}), got {tuple(signals.shape)}")
        x = signals.reshape(signals.shape[0], WINDOW_SAMPLES).float()  # (B, N)
        median = x.median(dim=1, keepdim=True).values
        centred = x - median
        spread = MAD_TO_SIGMA * centred.abs().median(dim=1, keepdim=True).values
        x = centred / spread.clamp_min(self.spread_floor)
        return torch.asinh(x) if self.compress else x

    def extra_repr(self) -> str:
        return f"spread_floor={self.spread_floor}, compress={self.compress}"


class ImagePreprocess(nn.Module):
    """uint8 (B, H, W, 3) or float (B, 3, H, W) in [0, 1] -> float (B, 3, H, W) in [0, 1].

    The range is deliberately not centred: a PRPD image is mostly empty black background, and
    with black = 0 an empty patch embeds to the bias alone, so the tokens carry the discharge
    pattern instead of a large constant. Centred to [-1, 1], MAD_img_only stayed at chance for
    150 AdamW steps on `standard`; uncentred it reached 0.75 test accuracy in 100 (docs/model.md).
    """

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if images.dtype == torch.uint8:
            if images.dim() != 4 or tuple(images.shape[1:]) != (s, s, 3):
                raise ValueError(f"uint8 images must be (B, {s}, {s}, 3), got {tuple(images.shape)}")
            images = images.permute(0, 3, 1, 2).float() / 255.0
        elif images.is_floating_point():
            if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
                raise ValueError(f"float images must be (B, 3, {s}, {s}) in [0, 1], got {tuple(images.shape)}")
            images = images.float()
        else:
            raise ValueError(f"images must be uint8 (B, {s}, {s}, 3) or float (B, 3, {s}, {s}), got {images.dtype}")
        return images
