"""MAD: PRPD image + PD series -> tokens -> RealNVP flows -> shared LIMoE encoder -> heads.

forward_features / forward_head are kept apart (timm) so the encoder output serves SupCon,
classification and the latent-space plots alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mad.config import MADConfig, get_config
from mad.constants import WINDOW_SAMPLES
from mad.model.encoder import LIMoEEncoder
from mad.model.familiarity import Calibration
from mad.model.flows import ImageFlow, SignalFlow, flow_nll_per_dim
from mad.model.heads import ClassifierHead, ProjectionHead, masked_mean
from mad.model.preprocess import ImagePreprocess, SignalPreprocess
from mad.model.tokenizers import PatchTokenizer, SignalTokenizer

IMAGE_MODALITY, SIGNAL_MODALITY = 0, 1


class MAD(nn.Module):
    def __init__(self, config: MADConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        flow_hidden = max(2, round(config.flow_hidden_ratio * dim))
        self.image_preprocess = self.image_tokenizer = self.image_flow = None
        self.signal_preprocess = self.signal_tokenizer = self.signal_flow = None
        if config.use_image:
            self.image_preprocess = ImagePreprocess(config.image_size)
            self.image_tokenizer = PatchTokenizer(config.image_size, config.patch_size, dim)
            self.image_flow = ImageFlow(dim, config.image_flow_couplings, flow_hidden, config.flow_scale_bound)
        if config.use_signal:
            self.signal_preprocess = SignalPreprocess(config.signal_spread_floor, config.signal_compress)
            self.signal_tokenizer = SignalTokenizer(WINDOW_SAMPLES, config.signal_token_len, dim)
            self.signal_flow = SignalFlow(dim, config.signal_flow_couplings, flow_hidden, config.flow_scale_bound,
                                          config.signal_flow_kernel)
        self.encoder = LIMoEEncoder(dim, config.depth, config.heads, round(config.mlp_ratio * dim),
                                    config.num_experts, config.routing, config.top_k, config.dropout)
        self.projection_head = ProjectionHead(dim, config.proj_dim)
        self.classifier = ClassifierHead(dim, config.num_classes)
        self.apply(self._init_weights)
        # Fitted after training (mad-train calibrate) and attached by mad.load_model; None: raw logits and no
        # familiarity. Its tensors are non-persistent buffers, never part of the weights (mad/model/familiarity.py).
        self.calibration: Calibration | None = None

    def _init_weights(self, module: nn.Module) -> None:
        # nanoGPT: N(0, 0.02); residual projections scaled by 1/sqrt(2 * depth); flows' last layers stay 0.
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            if getattr(module, "is_flow_output", False):
                nn.init.zeros_(module.weight)
            else:
                std = 0.02 / math.sqrt(2 * self.config.depth) if getattr(module, "is_residual_proj", False) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(name for name, used in (("image", self.config.use_image), ("signal", self.config.use_signal))
                     if used)

    def _embed(self, images: torch.Tensor | None, signals: torch.Tensor | None,
               image_present: torch.Tensor | None, signal_present: torch.Tensor | None) -> dict[str, Any]:
        """Tokenise and flow each present modality; returns tokens, modality ids, mask and flow NLL."""
        images = images if self.config.use_image else None  # a modality the model lacks is ignored
        signals = signals if self.config.use_signal else None
        if images is None and signals is None:
            raise ValueError(f"no input for this model: it uses {self.modalities}, and those inputs are None")
        if images is not None and signals is not None and images.shape[0] != signals.shape[0]:
            raise ValueError(f"batch sizes differ: images {images.shape[0]} vs signals {signals.shape[0]}")

        pre, post, ids, masks, nll_terms = [], [], [], [], []
        nll_sum, nll_dims = None, None  # per sample: NLL x dims and dims over the present modalities
        branches = (
            (images, image_present, self.image_preprocess, self.image_tokenizer, self.image_flow, IMAGE_MODALITY),
            (signals, signal_present, self.signal_preprocess, self.signal_tokenizer, self.signal_flow,
             SIGNAL_MODALITY),
        )
        for x, present, preprocess, tokenizer, flow, modality in branches:
            if x is None:
                continue
            tokens = tokenizer(preprocess(x))  # (B, T_m, D)
            z, log_det = flow(tokens)
            nll = flow_nll_per_dim(z, log_det)  # (B,)
            if present is not None:
                present = self._check_present(present, x.shape[0], modality)
                weight = present.float()
                nll_terms.append((nll * weight).sum() / weight.sum().clamp_min(1.0))
                masks.append(present[:, None].expand(-1, tokens.shape[1]))
            else:
                weight = torch.ones_like(nll)
                nll_terms.append(nll.mean())
                masks.append(torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device))
            dims = weight * float(z.shape[1] * z.shape[2])
            nll_sum = nll * dims if nll_sum is None else nll_sum + nll * dims
            nll_dims = dims if nll_dims is None else nll_dims + dims
            pre.append(tokens)
            post.append(z)
            ids.append(torch.full((tokens.shape[1],), modality, dtype=torch.long, device=tokens.device))

        token_mask = None
        if image_present is not None or signal_present is not None:
            token_mask = torch.cat(masks, dim=1)  # (B, T)
            if not bool(token_mask.any(dim=1).all()):
                raise ValueError("image_present/signal_present leave a sample with no modality at all")
        return {
            "pre_flow": torch.cat(pre, dim=1),
            "post_flow": torch.cat(post, dim=1),
            "modality": torch.cat(ids),
            "token_mask": token_mask,
            "flow_nll": torch.stack(nll_terms).sum(),
            # (B,) NLL per dimension of each window's present tokens under the flows: a density score
            # of the window itself (the batch loss above averages it away).
            "flow_nll_per_sample": nll_sum / nll_dims.clamp_min(1.0),
        }

    @staticmethod
    def _check_present(present: torch.Tensor, batch: int, modality: int) -> torch.Tensor:
        name = "image_present" if modality == IMAGE_MODALITY else "signal_present"
        if present.shape != (batch,):
            raise ValueError(f"{name} must be a (B,)=({batch},) bool tensor, got shape {tuple(present.shape)}")
        return present.bool()

    def _features(self, images, signals, image_present=None, signal_present=None) -> dict[str, Any]:
        stages = self._embed(images, signals, image_present, signal_present)
        encoded, moe_aux = self.encoder(stages["post_flow"], stages["modality"], stages["token_mask"])
        stages["encoded"] = encoded
        stages["aux"] = {"flow_nll": stages.pop("flow_nll"), **moe_aux}
        return stages

    def forward_features(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                         return_stages: bool = False, image_present: torch.Tensor | None = None,
                         signal_present: torch.Tensor | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """-> encoder tokens (B, T, D) (image tokens first), or with return_stages a dict of
        "pre_flow", "post_flow", "encoded" (B, T, D), "modality" (T,) 0=image 1=signal, "token_mask"."""
        stages = self._features(images, signals, image_present, signal_present)
        if not return_stages:
            return stages["encoded"]
        return {key: stages[key] for key in ("pre_flow", "post_flow", "encoded", "modality", "token_mask")}

    def forward_head(self, tokens: torch.Tensor, for_supcon: bool = False,
                     token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> logits (B, num_classes), or L2-normalised projections (B, proj_dim) for SupCon."""
        pooled = masked_mean(tokens, token_mask)
        return self.projection_head(pooled) if for_supcon else self.classifier(pooled)

    def forward_scores(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                       image_present: torch.Tensor | None = None,
                       signal_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One forward for inference and calibration: "logits" (B, C) uncalibrated, "pooled" (B, D) the
        classifier's input (masked mean of the encoder tokens), "flow_nll" (B,) per-window flow NLL per dim."""
        stages = self._features(images, signals, image_present, signal_present)
        pooled = masked_mean(stages["encoded"], stages["token_mask"])
        return {"logits": self.classifier(pooled), "pooled": pooled, "flow_nll": stages["flow_nll_per_sample"]}

    def infer(self, images: torch.Tensor | None, signals: torch.Tensor | None,
              image_present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The deployed forward: (calibrated logits (B, C), familiarity (B,)), or (raw logits, None) for a model
        without calibration. Softmax of the first is the reported probability; every backend runs this."""
        scores = self.forward_scores(images, signals, image_present)
        if self.calibration is None:
            return scores["logits"], None
        return self.calibration(scores["logits"], scores["pooled"])

    def forward(self, images: torch.Tensor | None, signals: torch.Tensor | None, for_supcon: bool = False,
                return_aux: bool = False, image_present: torch.Tensor | None = None,
                signal_present: torch.Tensor | None = None):
        """images uint8 (B,256,256,3) or float (B,3,256,256) in [0,1]; signals (B,20,7680) raw counts.
        Either may be None (missing modality); image_present/signal_present (B,) bool mask one
        modality per sample. -> uncalibrated logits (B, 5) (the training path; `infer` is the deployed one,
        with the calibration), or projections (B, 128) if for_supcon; with
        return_aux, (out, aux) where aux holds 0-dim losses ("flow_nll", and "moe_*" for topk)."""
        stages = self._features(images, signals, image_present, signal_present)
        out = self.forward_head(stages["encoded"], for_supcon, stages["token_mask"])
        return (out, stages["aux"]) if return_aux else out


def build_model(name_or_config: str | MADConfig | dict, *, seed: int | None = None) -> MAD:
    """Build a MAD model from a preset name, config or config dict; `seed` makes the weights reproducible
    without touching the global RNG."""
    config = get_config(name_or_config)
    if seed is None:
        return MAD(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MAD(config)
