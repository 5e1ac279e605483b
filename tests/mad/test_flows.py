"""RealNVP flows: exact inverse, log-determinant, causality, identity at init, bounded scales."""

from __future__ import annotations

import math

import pytest
import torch

from mad.model.flows import ImageFlow, SignalFlow, flow_nll_per_dim

DIM, HIDDEN, TOKENS = 6, 12, 5


def _randomise(flow: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere, the zero-initialised last layers included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return flow


FLOWS = {
    "image": lambda: ImageFlow(DIM, couplings=3, hidden=HIDDEN, scale_bound=2.0),
    "signal": lambda: SignalFlow(DIM, couplings=5, hidden=HIDDEN, scale_bound=2.0, kernel=3),
}


@pytest.mark.parametrize("kind", FLOWS)
def test_inverse_reconstructs_input_with_random_weights(kind):
    flow = _randomise(FLOWS[kind]())
    # A seeded input: drawn from the global RNG the test depended on test order, and over 50 draws the
    # signal flow's fp32 round-off reached 7.5e-5 (scales up to e^2 per coupling compound over 5).
    x = torch.randn(4, TOKENS, DIM, generator=torch.Generator().manual_seed(0))
    z, _ = flow(x)
    assert (z - x).abs().max() > 0.1  # the flow is far from the identity
    assert (flow.inverse(z) - x).abs().max() < 1e-4


@pytest.mark.parametrize("kind", FLOWS)
def test_log_det_equals_slogdet_of_autograd_jacobian(kind):
    flow = _randomise(FLOWS[kind]()).double()
    # A seeded input: the signal flow's log-det is a signed sum that crosses zero for about 1 input in 300
    # (|log-det| 0.064 from the global RNG failed CI once), so the "not trivially zero" check below needs a
    # fixed point, and the Jacobian check holds for any input.
    x = torch.randn(1, TOKENS, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, TOKENS, DIM))[0].reshape(-1), x.reshape(-1))
    sign, expected = torch.linalg.slogdet(jacobian)
    _, log_det = flow(x)
    assert sign > 0
    assert log_det.item() == pytest.approx(expected.item(), abs=1e-8)
    assert abs(expected.item()) > 0.1  # not trivially zero
    assert (jacobian - torch.eye(jacobian.shape[0], dtype=jacobian.dtype)).abs().max() > 0.1  # not the identity


@pytest.mark.parametrize("t", [1, 3, TOKENS - 1])
def test_signal_flow_is_causal(t):
    flow = _randomise(FLOWS["signal"](), seed=1)
    x = torch.randn(2, TOKENS, DIM)
    changed = x.clone()
    changed[:, t] += 3.0
    z, _ = flow(x)
    z_changed, _ = flow(changed)
    assert torch.equal(z[:, :t], z_changed[:, :t])
    assert (z[:, t] - z_changed[:, t]).abs().max() > 1e-3


def test_image_flow_conditioner_is_per_token():
    flow = _randomise(FLOWS["image"]())
    x = torch.randn(1, TOKENS, DIM)
    changed = x.clone()
    changed[:, 2] += 3.0
    z, z_changed = flow(x)[0], flow(changed)[0]
    others = [i for i in range(TOKENS) if i != 2]
    assert torch.equal(z[:, others], z_changed[:, others])


@pytest.mark.parametrize("kind", FLOWS)
def test_fresh_flow_is_identity(kind):
    flow = FLOWS[kind]()
    x = torch.randn(3, TOKENS, DIM)
    z, log_det = flow(x)
    assert torch.equal(z, x)
    assert torch.equal(log_det, torch.zeros(3))


def test_scales_are_bounded_by_gamma():
    gamma = 0.3
    flow = _randomise(ImageFlow(DIM, couplings=3, hidden=HIDDEN, scale_bound=gamma), std=20.0)
    x = torch.randn(2, TOKENS, DIM) * 10
    for coupling in flow.couplings:
        s, _ = coupling._scale_shift(x[..., coupling.perm][..., : DIM // 2])
        assert s.abs().max() <= gamma + 1e-6
        assert s.abs().max() > 0.9 * gamma  # saturated tanh reaches the bound
    z, log_det = flow(x)
    assert torch.isfinite(z).all()
    assert (log_det.abs() <= 3 * gamma * TOKENS * (DIM // 2) + 1e-4).all()


def test_flow_nll_matches_standard_normal_for_identity_flow():
    z = torch.randn(2, TOKENS, DIM)
    nll = flow_nll_per_dim(z, torch.zeros(2))
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(z).mean(dim=(1, 2))
    assert torch.allclose(nll, expected, atol=1e-6)
    # log-det raises the likelihood: subtracts log_det / dims
    shifted = flow_nll_per_dim(z, torch.full((2,), float(TOKENS * DIM)))
    assert torch.allclose(shifted, expected - 1.0, atol=1e-6)
    assert math.isfinite(nll.sum().item())
