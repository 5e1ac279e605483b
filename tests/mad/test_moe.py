"""Mixture-of-experts FFN: dense gating, top-k routing and the routing losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad.model.moe import MoEFeedForward, routing_losses

DIM, HIDDEN = 8, 16


def _moe(routing: str, top_k: int = 1, experts: int = 2, seed: int = 0) -> MoEFeedForward:
    torch.manual_seed(seed)
    moe = MoEFeedForward(DIM, HIDDEN, experts, routing, top_k, dropout=0.0)
    with torch.no_grad():  # a router far from uniform so routing decisions matter
        moe.router.weight.normal_(0, 1.0)
    return moe.eval()


def _modality(tokens: int) -> torch.Tensor:
    return torch.tensor([0] * (tokens // 2) + [1] * (tokens - tokens // 2))


def test_dense_equals_gate_weighted_sum_of_experts():
    moe = _moe("dense")
    x = torch.randn(3, 7, DIM)
    out, aux = moe(x, _modality(7))
    gate = torch.softmax(x @ moe.router.weight.T + moe.router.bias, dim=-1)
    by_hand = torch.zeros_like(x)
    for e, expert in enumerate(moe.experts):
        hidden = F.gelu(x @ expert.fc1.weight.T + expert.fc1.bias)
        by_hand += gate[..., e : e + 1] * (hidden @ expert.fc2.weight.T + expert.fc2.bias)
    assert torch.allclose(out, by_hand, atol=1e-6)
    assert aux == {}


@pytest.mark.parametrize(("experts", "top_k"), [(2, 1), (4, 1), (4, 2)])
def test_topk_routes_each_token_to_its_best_experts(experts, top_k):
    moe = _moe("topk", top_k=top_k, experts=experts)
    x = torch.randn(2, 9, DIM)
    out, _ = moe(x, _modality(9))
    probs = torch.softmax(moe.router(x), dim=-1)
    for b in range(2):
        for t in range(9):
            best = probs[b, t].argsort(descending=True)[:top_k]
            expected = sum(probs[b, t, e] * moe.experts[e](x[b, t]) for e in best.tolist())
            assert torch.allclose(out[b, t], expected, atol=1e-6)


def test_topk_reports_routing_losses_and_gradients_reach_router():
    moe = _moe("topk", top_k=1, experts=2)
    moe.train()
    x = torch.randn(2, 6, DIM)
    out, aux = moe(x, _modality(6))
    assert set(aux) == {"moe_load_balance", "moe_local_entropy", "moe_global_entropy"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in aux.values())
    (out.sum() + sum(aux.values())).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_load_balance_is_one_when_uniform_and_larger_when_skewed():
    tokens, experts = 8, 2
    modality = _modality(tokens)
    uniform = torch.full((1, tokens, experts), 0.5)
    alternating = torch.arange(tokens).remainder(experts).unsqueeze(0)
    balanced = routing_losses(uniform, alternating, modality, None)["moe_load_balance"]
    assert balanced.item() == pytest.approx(1.0)
    skewed_probs = torch.tensor([0.9, 0.1]).expand(1, tokens, experts)
    skewed = routing_losses(skewed_probs, torch.zeros(1, tokens, dtype=torch.long), modality, None)
    assert skewed["moe_load_balance"].item() == pytest.approx(2 * 0.9)
    assert skewed["moe_load_balance"] > balanced


def test_entropy_losses_are_per_modality():
    tokens, experts = 8, 2
    modality = _modality(tokens)
    # every image token sure of expert 0, every signal token sure of expert 1
    one_hot = F.one_hot((modality == 1).long(), experts).float().unsqueeze(0) * 0.998 + 0.001
    aux = routing_losses(one_hot, one_hot.argmax(-1), modality, None)
    assert aux["moe_local_entropy"].item() < 0.02  # confident tokens
    assert aux["moe_global_entropy"].item() > -0.02  # each modality uses one expert: -H(marginal) ~ 0
    uniform = torch.full((1, tokens, experts), 0.5)
    aux_uniform = routing_losses(uniform, torch.zeros(1, tokens, dtype=torch.long), modality, None)
    assert aux_uniform["moe_local_entropy"].item() == pytest.approx(math.log(2))
    assert aux_uniform["moe_global_entropy"].item() == pytest.approx(-math.log(2))


def test_absent_tokens_do_not_count_in_routing_losses():
    tokens, experts = 6, 2
    modality = _modality(tokens)
    probs = torch.softmax(torch.randn(2, tokens, experts), dim=-1)
    top1 = probs.argmax(-1)
    mask = torch.tensor([[True] * tokens, [False] * tokens])
    masked = routing_losses(probs, top1, modality, mask)
    first_only = routing_losses(probs[:1], top1[:1], modality, None)
    for key in masked:
        assert masked[key].item() == pytest.approx(first_only[key].item(), abs=1e-6)
