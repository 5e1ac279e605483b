"""MAD: PRPD image + PD series -> tokens -> RealNVP flows -> shared LIMoE encoder -> heads.

forward_features / forward_head are kept apart (timm) so the encoder output serves SupCon,
classification and the latent-space plots alike.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from mad.config import MADConfig
from mad.constants import WINDOW_SAMPLES
from mad.model.encoder import LIMoEEncoder
from mad.model.familiarity import Calibration
from mad.model.flows import ImageFlow, SignalFlow, flow_nll_per_dim
from mad.model.heads import ClassifierHead, ProjectionHead, masked_mean
from mad.model.initialisation import nanogpt_init
from mad.model.inputs import check_present, check_some_modality, select_inputs
from mad.model.interface import WindowClassifier
from mad.model.preprocess import ImagePreprocess, SignalPreprocess
from mad.model.tokenizers import PatchTokenizer, SignalTokenizer

IMAGE_MODALITY, SIGNAL_MODALITY = 0, 1


class MAD(WindowClassifier):
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
        self.apply(partial(nanogpt_init, depth=config.depth))
        # Fitted after training (mad-train calibrate) and attached by mad.load_model; None: raw logits and no
        # familiarity. Its tensors are non-persistent buffers, never part of the weights (mad/model/familiarity.py).
        self.calibration: Calibration | None = None

    def _embed(self, images: torch.Tensor | None, signals: torch.Tensor | None,
               image_present: torch.Tensor | None, signal_present: torch.Tensor | None) -> dict[str, Any]:
        """Tokenise and flow each present modality; returns tokens, modality ids, mask and flow NLL."""
        images, signals = select_inputs(images, signals, self.config.use_image, self.config.use_signal,
                                        self.modalities)

        pre, post, ids, masks, presents, nll_terms = [], [], [], [], [], []
        nll_sum, nll_dims = None, None  # per sample: NLL x dims and dims over the present modalities
        branches = (
            (images, image_present, self.image_preprocess, self.image_tokenizer, self.image_flow, IMAGE_MODALITY,
             "image_present"),
            (signals, signal_present, self.signal_preprocess, self.signal_tokenizer, self.signal_flow,
             SIGNAL_MODALITY, "signal_present"),
        )
        for x, present, preprocess, tokenizer, flow, modality, present_name in branches:
            if x is None:
                continue
            tokens = tokenizer(preprocess(x))  # (B, T_m, D)
            z, log_det = flow(tokens)
            nll = flow_nll_per_dim(z, log_det)  # (B,)
            if present is not None:
                present = check_present(present, x.shape[0], present_name)
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
            presents.append(present)

        token_mask = None
        if image_present is not None or signal_present is not None:
            check_some_modality(presents)
            token_mask = torch.cat(masks, dim=1)  # (B, T)
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

