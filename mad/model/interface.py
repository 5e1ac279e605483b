"""The interface every model family (MAD and the baselines) offers to training, evaluation, export and the
agent, and the parts of it that are the same for all of them.

What the rest of the repository calls (train/fit.py, train/predict.py, train/calibration.py,
train/export.py, agent/inference.py):
- `model(images, signals, for_supcon=False, return_aux=False, image_present=None, signal_present=None)`
  -> logits (B, C), or L2-normalised projections for SupCon; with return_aux, (out, dict of 0-dim
  auxiliary losses: "flow_nll" and "moe_*" where the model has them);
- `forward_scores(images, signals)` -> {"logits" (B, C), "pooled" (B, config.dim), ...};
- `infer(images, signals)` (below), `calibration` (attached by mad.load_model);
- the `classifier` and `projection_head` modules (fit freezes the one a stage does not train);
- `config`: a frozen dataclass with use_image, use_signal, dim (width of "pooled"), num_classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mad.model.familiarity import Calibration


class WindowClassifier(nn.Module):
    """Base of every model family: `modalities` and the deployed forward `infer`, on the family's own
    `forward_scores`."""

    config: Any
    calibration: Calibration | None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(name for name, used in (("image", self.config.use_image), ("signal", self.config.use_signal))
                     if used)

    def forward_scores(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                       image_present: torch.Tensor | None = None,
                       signal_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def infer(self, images: torch.Tensor | None, signals: torch.Tensor | None,
              image_present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The deployed forward: (calibrated logits (B, C), familiarity (B,)), or (raw logits, None) for a model
        without calibration. Softmax of the first is the reported probability; every backend runs this."""
        scores = self.forward_scores(images, signals, image_present)
        if self.calibration is None:
            return scores["logits"], None
        return self.calibration(scores["logits"], scores["pooled"])
