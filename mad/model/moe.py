"""Mixture-of-experts feed-forward layer of the LIMoE encoder.

routing="dense" (the paper's setting): every token goes through every expert and a learned
per-token softmax gate combines them. routing="topk": each token goes to its top-k experts
(weighted by their router probability; no capacity limit, so no token is dropped), with the
Switch load-balancing loss and LIMoE's per-modality local/global entropy losses as auxiliaries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ExpertMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.fc2.is_residual_proj = True  # init scaled by 1/sqrt(2 * depth)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-9))).sum(dim=-1)


def routing_losses(probs: torch.Tensor, top1: torch.Tensor, modality: torch.Tensor,
                   token_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Auxiliary routing losses from router probabilities.

    probs (B, T, E) softmax over experts; top1 (B, T) chosen expert; modality (T,) ids;
    token_mask (B, T) True for present tokens (None: all present).
    - moe_load_balance: E * sum_e f_e * P_e (Switch Transformer); 1.0 when routing is uniform.
    - moe_local_entropy: mean over modalities of the mean per-token routing entropy (LIMoE
      Omega_local; minimising it makes each token's choice confident).
    - moe_global_entropy: mean over modalities of -H(mean routing distribution) (LIMoE
      Omega_global; minimising it makes each modality use many experts).
    """
    num_experts = probs.shape[-1]
    probs = probs.float()
    weight = torch.ones(probs.shape[:2], device=probs.device) if token_mask is None else token_mask.float()
    total = weight.sum().clamp_min(1.0)
    fraction = (F.one_hot(top1, num_experts).float() * weight.unsqueeze(-1)).sum(dim=(0, 1)) / total
    mean_prob = (probs * weight.unsqueeze(-1)).sum(dim=(0, 1)) / total
    load_balance = num_experts * (fraction * mean_prob).sum()

    local_terms, global_terms = [], []
    token_entropy = _entropy(probs)  # (B, T)
    for m in modality.unique(sorted=True).tolist():  # at most two modalities
        w = weight * (modality == m).float()  # (B, T)
        n = w.sum()
        if float(n) == 0:
            continue
        local_terms.append((token_entropy * w).sum() / n)
        marginal = (probs * w.unsqueeze(-1)).sum(dim=(0, 1)) / n  # (E,)
        global_terms.append(-_entropy(marginal))
    zero = probs.new_zeros(())
    return {
        "moe_load_balance": load_balance,
        "moe_local_entropy": torch.stack(local_terms).mean() if local_terms else zero,
        "moe_global_entropy": torch.stack(global_terms).mean() if global_terms else zero,
    }


class MoEFeedForward(nn.Module):
    """(B, T, D) -> (B, T, D) plus a dict of auxiliary losses (empty for dense routing)."""

    def __init__(self, dim: int, hidden: int, num_experts: int, routing: str, top_k: int, dropout: float) -> None:
        super().__init__()
        self.routing = routing
        self.top_k = top_k
        self.router = nn.Linear(dim, num_experts)
        self.experts = nn.ModuleList(ExpertMLP(dim, hidden, dropout) for _ in range(num_experts))

    def forward(self, x: torch.Tensor, modality: torch.Tensor,
                token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        probs = F.softmax(self.router(x), dim=-1)  # (B, T, E)
        if self.routing == "dense":
            out = sum(probs[..., e : e + 1] * expert(x) for e, expert in enumerate(self.experts))
            return out, {}
        return self._forward_topk(x, probs, modality, token_mask)

    def _forward_topk(self, x: torch.Tensor, probs: torch.Tensor, modality: torch.Tensor,
                      token_mask: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch, tokens, dim = x.shape
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (B, T, k)
        flat_x = x.reshape(-1, dim)
        flat_chosen = chosen.reshape(-1, self.top_k)
        flat_weights = weights.reshape(-1, self.top_k)
        out = torch.zeros_like(flat_x)
        for e, expert in enumerate(self.experts):
            hit = flat_chosen == e  # (N, k); an expert appears at most once per token
            rows = hit.any(dim=-1).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            gate = (flat_weights[rows] * hit[rows]).sum(dim=-1, keepdim=True)
            out = out.index_add(0, rows, gate * expert(flat_x[rows]))
        aux = routing_losses(probs, chosen[..., 0], modality, token_mask)
        return out.reshape(batch, tokens, dim), aux
