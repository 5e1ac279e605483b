"""Losses: supervised contrastive loss (paper eq. 1) and the auxiliary-loss combiner."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020; paper eq. 1) on L2-normalised features.

    features (B, V, D): V views of B samples; labels (B,). Every one of the B*V embeddings is an
    anchor; its positives are all other embeddings with the same label, its denominator all other
    embeddings. Averaged over anchors that have at least one positive (an anchor without one is
    left out rather than giving NaN); 0 if none has. base_temperature = temperature, so the
    reference's (T / base_T) factor is 1. Computed in fp32 with the row max subtracted.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (batch, views, dim), got shape {tuple(features.shape)}")
    batch, views, _ = features.shape
    if labels.shape != (batch,):
        raise ValueError(f"labels must be ({batch},) to match features, got shape {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    z = features.float().transpose(0, 1).reshape(batch * views, -1)  # (N, D), view-major
    anchor_labels = labels.repeat(views)  # (N,)
    n = z.shape[0]
    logits = z @ z.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    positive = (anchor_labels[:, None] == anchor_labels[None, :]) & not_self

    log_denominator = torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    positives_per_anchor = positive.sum(dim=1)
    has_positive = positives_per_anchor > 0
    if not bool(has_positive.any()):
        return z.sum() * 0.0  # keeps the graph; nothing to contrast
    mean_log_prob_pos = (log_prob * positive).sum(dim=1)[has_positive] / positives_per_anchor[has_positive]
    return -mean_log_prob_pos.mean()


def combine_aux_losses(aux: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_k weights[k] * aux[k] over the keys present in `aux` (e.g. moe_* are absent for dense routing).

    A weight for a key the model can never produce is a config typo: it raises ValueError.
    """
    known = {"flow_nll", "moe_load_balance", "moe_local_entropy", "moe_global_entropy"}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(f"unknown auxiliary loss weight(s) {unknown}; known: {sorted(known)}")
    terms = [float(w) * aux[key] for key, w in weights.items() if key in aux and w != 0]
    if not terms:
        device = next(iter(aux.values())).device if aux else None
        return torch.zeros((), device=device)
    return torch.stack([t.float() for t in terms]).sum()
