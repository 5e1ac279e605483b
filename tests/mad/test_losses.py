"""Supervised contrastive loss (paper eq. 1) and the auxiliary-loss combiner."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad.losses import combine_aux_losses, supcon_loss


def _features(batch: int, views: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch, views, dim, generator=gen), dim=-1)


def _eq1_by_loop(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Eq. (1) written out anchor by anchor, averaged over anchors with positives."""
    batch, views, _ = features.shape
    z = [features[b, v].double() for v in range(views) for b in range(batch)]
    y = [int(labels[b]) for v in range(views) for b in range(batch)]
    per_anchor = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in others)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / temperature) / denominator) for p in positives]
        per_anchor.append(-sum(terms) / len(positives))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize(("batch", "views", "temperature"), [(6, 2, 0.5), (5, 3, 0.1), (4, 1, 0.5)])
def test_matches_per_anchor_loop(batch, views, temperature):
    features = _features(batch, views)
    labels = torch.tensor([0, 1, 0, 2, 1, 2][:batch])
    loss = supcon_loss(features, labels, temperature)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_eq1_by_loop(features, labels, temperature), rel=1e-5)


def test_anchor_without_positive_is_excluded_not_nan():
    features = _features(4, 1).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 2])  # classes 1 and 2 have a single sample and a single view
    loss = supcon_loss(features, labels)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(_eq1_by_loop(features.detach(), labels, 0.5), rel=1e-5)
    loss.backward()
    assert torch.isfinite(features.grad).all()


def test_no_positive_at_all_gives_zero_with_graph():
    features = _features(3, 1).requires_grad_(True)
    loss = supcon_loss(features, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_invariant_to_batch_permutation():
    features = _features(8, 2, seed=3)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    assert supcon_loss(features, labels).item() == pytest.approx(supcon_loss(features[perm], labels[perm]).item(),
                                                                  rel=1e-6)


def test_stable_in_half_precision_input_and_low_temperature():
    features = _features(6, 2).half()
    loss = supcon_loss(features, torch.tensor([0, 1, 0, 1, 2, 2]), temperature=0.01)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_lower_when_classes_cluster():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), dim=-1).unsqueeze(1)
    mixed = clustered[torch.tensor([0, 2, 1, 3])]
    assert supcon_loss(clustered, labels) < supcon_loss(mixed, labels)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="features"):
        supcon_loss(torch.randn(4, 6), torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(torch.randn(4, 2, 6), torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(torch.randn(4, 2, 6), torch.zeros(4), temperature=0.0)


def test_combine_aux_losses_weights_present_keys_and_rejects_typos():
    aux = {"flow_nll": torch.tensor(2.0), "moe_load_balance": torch.tensor(1.5)}
    total = combine_aux_losses(aux, {"flow_nll": 0.1, "moe_load_balance": 0.01, "moe_local_entropy": 1.0})
    assert total.item() == pytest.approx(0.2 + 0.015)
    with pytest.raises(ValueError, match="flow_nl"):
        combine_aux_losses(aux, {"flow_nl": 1.0})
