"""Calibration inside the model: temperature, Mahalanobis familiarity, and the weights left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mad.model import build_model
from mad.model.familiarity import (
    Calibration,
    fit_gaussian_statistics,
    fit_temperature,
    mahalanobis_familiarity,
)


def _inputs(batch: int = 3):
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, generator=generator)
    signals = (torch.randn(batch, 20, 7680, generator=generator) * 5 + 30).round()
    signals[:, :, ::97] += 300
    return images, signals


def _statistics(dim: int, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(200) % classes
    features = rng.normal(size=(200, dim)) + labels[:, None] * 0.5
    return fit_gaussian_statistics(features, labels, classes)


def test_torch_familiarity_equals_the_numpy_fit_formula():
    means, precision = _statistics(16)
    features = np.random.default_rng(1).normal(size=(7, 16))
    calibration = Calibration(1.5, torch.from_numpy(means), torch.from_numpy(precision), threshold=-1.0)
    logits, familiarity = calibration(torch.ones(7, 5) * 3, torch.from_numpy(features).float())
    assert torch.allclose(logits, torch.full((7, 5), 2.0))
    assert np.allclose(familiarity.numpy(), mahalanobis_familiarity(features, means, precision), atol=1e-4)


def test_far_features_score_lower_than_near_ones():
    means, precision = _statistics(16)
    near = mahalanobis_familiarity(means + 0.01, means, precision)
    far = mahalanobis_familiarity(means + 10.0, means, precision)
    assert (near > far).all() and np.allclose(near, 0, atol=1e-3)


def test_statistics_need_two_windows_of_every_class():
    with pytest.raises(ValueError, match="at least 2 windows"):
        fit_gaussian_statistics(np.zeros((4, 3)), np.array([0, 0, 1, 1]), 5)


def test_temperature_fit_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 4000)
    logits = rng.normal(size=(4000, 5))
    logits[np.arange(4000), labels] += 2.0
    calibrated = fit_temperature(logits, labels)
    assert fit_temperature(logits * 4, labels) == pytest.approx(4 * calibrated, rel=1e-3)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_calibration_refuses_a_bad_temperature(bad):
    means, precision = _statistics(4)
    with pytest.raises(ValueError, match="temperature"):
        Calibration(bad, torch.from_numpy(means), torch.from_numpy(precision), 0.0)


def test_model_infer_with_and_without_calibration_and_state_dict_unchanged():
    model = build_model("mad_tiny", seed=0).eval()
    keys = set(model.state_dict())
    images, signals = _inputs()
    with torch.no_grad():
        raw = model(images, signals)
        logits, familiarity = model.infer(images, signals)
        assert familiarity is None and torch.equal(logits, raw)
        pooled = model.forward_scores(images, signals)["pooled"]
        means, precision = _statistics(model.config.dim)
        model.calibration = Calibration(2.0, torch.from_numpy(means), torch.from_numpy(precision), threshold=-3.0)
        logits, familiarity = model.infer(images, signals)
    assert torch.allclose(logits, raw / 2.0, atol=1e-6) and familiarity.shape == (3,)
    assert np.allclose(familiarity.numpy(), mahalanobis_familiarity(pooled.numpy(), means, precision), atol=1e-4)
    assert set(model.state_dict()) == keys  # the statistics never enter the weights file
    model.load_state_dict(build_model("mad_tiny", seed=1).state_dict(), strict=True)


def test_per_window_flow_nll_is_the_present_weighted_mean():
    model = build_model("mad_tiny", seed=0).eval()
    images, signals = _inputs(2)
    with torch.no_grad():
        both = model.forward_scores(images, signals)["flow_nll"]
        signal_only = model.forward_scores(None, signals)["flow_nll"]
        masked = model.forward_scores(images, signals, image_present=torch.tensor([False, True]))["flow_nll"]
    assert both.shape == (2,) and torch.isfinite(both).all()
    assert torch.allclose(masked[0], signal_only[0]) and torch.allclose(masked[1], both[1])
