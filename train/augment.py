"""Class-preserving augmentations and modality masking, vectorised over a batch.

Every transform keeps the physics of the class: gain and baseline of the sensor, extra
noise, and a small phase shift applied to both modalities alike (the series is rolled by
k samples and the PRPD image's phase columns by the same angle, k * 360 * f / fs degrees).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mad.constants import IMAGE_SIZE, SAMPLE_RATE_HZ
from mad.data.prpd import SINE_GREY, SINE_MASK
from train.config import AugmentConfig


@dataclass
class ModalityMask:
    """Which samples of a batch keep each modality (bool (B,)); never both False."""

    keep_image: torch.Tensor
    keep_signal: torch.Tensor

    @classmethod
    def full(cls, batch: int, device: torch.device | str = "cpu") -> ModalityMask:
        ones = torch.ones(batch, dtype=torch.bool, device=device)
        return cls(ones, ones.clone())

    def cat(self, other: ModalityMask) -> ModalityMask:
        return ModalityMask(torch.cat([self.keep_image, other.keep_image]),
                            torch.cat([self.keep_signal, other.keep_signal]))


def phase_shift_pixels(shift_samples: torch.Tensor, power_freq_hz: float) -> torch.Tensor:
    """PRPD columns matching a roll of the series by `shift_samples` (x axis spans 0-360 deg)."""
    return torch.round(shift_samples.double() * power_freq_hz / SAMPLE_RATE_HZ * IMAGE_SIZE).long()


def roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll each row of x (B, N) right by its own shift (B,) with one gather."""
    n = x.shape[1]
    index = (torch.arange(n, device=x.device)[None, :] - shift[:, None]) % n
    return torch.gather(x, 1, index)


def phase_shift(images: torch.Tensor, series: torch.Tensor, shift_samples: torch.Tensor,
                power_freq_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll series (B, R, S) as one 153,600-sample stream and images (B, H, W, 3) along W alike."""
    b = series.shape[0]
    rolled_series = roll_rows(series.reshape(b, -1), shift_samples.to(series.device)).reshape(series.shape)
    pixels = phase_shift_pixels(shift_samples, power_freq_hz).to(images.device)
    _, h, w, c = images.shape
    # The renderer's grey supply sine is a fixed reference, not data: lift it off, roll, draw it back.
    sine = torch.from_numpy(SINE_MASK).to(images.device)[None, :, :]  # (1, H, W)
    on_sine = sine & (images == SINE_GREY).all(dim=-1)  # sine pixels with no pulse drawn over them
    images = images.masked_fill(on_sine[..., None], 0)
    columns = (torch.arange(w, device=images.device)[None, :] - pixels[:, None]) % w  # (B, W)
    rolled_images = torch.gather(images, 2, columns[:, None, :, None].expand(b, h, w, c))
    empty = (rolled_images == 0).all(dim=-1) & sine
    rolled_images = rolled_images.masked_fill(empty[..., None], SINE_GREY)
    return rolled_images, rolled_series


def augment_batch(images: torch.Tensor, series: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
                  power_freq_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One random class-preserving view: images uint8 (B, H, W, 3), series (B, 20, 7680) -> float32 series."""
    b = series.shape[0]
    device = series.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * (high - low) + low).to(device)

    k = config.max_phase_shift_samples
    shift = torch.randint(-k, k + 1, (b,), generator=generator) if k > 0 else torch.zeros(b, dtype=torch.long)
    images, series = phase_shift(images, series, shift, power_freq_hz)
    series = series.float()
    gain = uniform(config.gain[0], config.gain[1], b, 1, 1)
    # Gain acts on the signal around its own median (the sensor's baseline), as a real gain change would.
    median = series.reshape(b, -1).median(dim=1).values[:, None, None]
    series = (series - median) * gain + median
    series = series + uniform(-config.baseline_counts, config.baseline_counts, b, 1, 1)
    if config.noise_std_counts > 0:
        noise = torch.randn(series.shape, generator=generator).to(device)
        series = series + noise * config.noise_std_counts
    return images, series


def sample_modality_mask(batch: int, config: AugmentConfig, generator: torch.Generator) -> ModalityMask:
    """Drop the image with p_img, else the signal with p_sig; never both."""
    draw = torch.rand(batch, generator=generator)
    drop_image = draw < config.drop_image_prob
    drop_signal = (draw >= config.drop_image_prob) & (draw < config.drop_image_prob + config.drop_signal_prob)
    return ModalityMask(~drop_image, ~drop_signal)
