"""Augmentations keep the two modalities consistent and never drop both."""

import numpy as np
import pytest
import torch

from mad.data.prpd import render_prpd_from_series
from mad.data.synthetic import generate_window
from train.augment import augment_batch, phase_shift, sample_modality_mask
from train.config import AugmentConfig


@pytest.mark.parametrize("index", [3, 4, 7])  # a few classes of the easy preset
def test_phase_shift_of_image_matches_rendering_the_shifted_series(index):
    window = generate_window("easy", 0, index)
    series = torch.from_numpy(window.series)[None]
    image = torch.from_numpy(render_prpd_from_series(window.series))[None]
    for k in (3, -2):
        shifted_image, shifted_series = phase_shift(image, series, torch.tensor([k]), 60.0)
        expected = render_prpd_from_series(shifted_series[0].numpy())
        np.testing.assert_array_equal(shifted_image[0].numpy(), expected)
        assert not np.array_equal(image[0].numpy(), expected)  # the shift did move the pattern


def test_phase_shift_rolls_each_sample_by_its_own_amount():
    series = torch.arange(2 * 20 * 7680, dtype=torch.int32).reshape(2, 20, 7680)
    images = torch.zeros(2, 256, 256, 3, dtype=torch.uint8)
    _, rolled = phase_shift(images, series, torch.tensor([1, -2]), 60.0)
    flat = rolled.reshape(2, -1)
    assert flat[0, 1] == series[0].reshape(-1)[0] and flat[0, 0] == series[0].reshape(-1)[-1]
    assert flat[1, 0] == series[1].reshape(-1)[2]


def test_modality_mask_never_drops_both_and_follows_probabilities():
    config = AugmentConfig(drop_image_prob=0.4, drop_signal_prob=0.6)
    mask = sample_modality_mask(4000, config, torch.Generator().manual_seed(0))
    assert bool((mask.keep_image | mask.keep_signal).all())
    assert abs((~mask.keep_image).float().mean().item() - 0.4) < 0.04
    assert abs((~mask.keep_signal).float().mean().item() - 0.6) < 0.04


def test_augment_changes_the_series_within_configured_bounds_and_is_seeded():
    window = generate_window("easy", 0, 1)
    series = torch.from_numpy(window.series)[None].repeat(4, 1, 1)
    images = torch.from_numpy(window.image)[None].repeat(4, 1, 1, 1)
    config = AugmentConfig(max_phase_shift_samples=0, noise_std_counts=0.0, gain=(2.0, 2.0), baseline_counts=0.0)
    _, out = augment_batch(images, series, config, torch.Generator().manual_seed(1), 60.0)
    base = series.float()
    median = base.reshape(4, -1).median(dim=1).values[:, None, None]
    torch.testing.assert_close(out, (base - median) * 2 + median)
    a = augment_batch(images, series, AugmentConfig(), torch.Generator().manual_seed(5), 60.0)
    b = augment_batch(images, series, AugmentConfig(), torch.Generator().manual_seed(5), 60.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
