"""What the baselines share: MAD's model interface (mad/model/interface.py), and MAD's tokenisers for the
token-based ones.

A baseline's fusion ends in one pooled vector (B, dim), its `forward_features`; the heads, the outputs and
the interface that `mad-train fit`, `eval`, `calibrate`, `export` (TorchScript) and the agent call are
MAD's. A baseline has no flows and no routing, so its auxiliary-loss dict is empty.

The token baselines (Perceiver IO, CMT, CFM) read their inputs exactly as MAD_small does (same
preprocessing, 32 x 32 patches, 384-sample signal tokens, sinusoidal positions and a learned modality
embedding), so Table 4 compares ways of fusing the two modalities, not input pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mad.config import TokenInputs, check_field_types, invalid
from mad.constants import IMAGE_SIZE, NUM_CLASSES, WINDOW_SAMPLES
from mad.model.familiarity import Calibration
from mad.model.heads import ClassifierHead, ProjectionHead
from mad.model.inputs import check_present, check_some_modality, select_inputs
from mad.model.interface import WindowClassifier
from mad.model.preprocess import ImagePreprocess, SignalPreprocess
from mad.model.tokenizers import PatchTokenizer, SignalTokenizer


def check_family(config: Any) -> None:
    """`family` is stored in the sidecar's model_config so a checkpoint names the class that rebuilds it."""
    if config.family != type(config).FAMILY:
        raise invalid(config, "family", f"must be {type(config).FAMILY!r} for {type(config).__name__}")


@dataclass(frozen=True)
class TokenInputConfig(TokenInputs):
    """Fields every token baseline has; the defaults are MAD_small's inputs and width."""

    FAMILY: ClassVar[str] = ""
    name: str = "baseline_custom"
    family: str = ""  # set by each subclass; written to the sidecar to pick the model class on load
    # --- inputs / tokenisers, as in MADConfig
    image_size: int = IMAGE_SIZE
    patch_size: int = 32  # 64 image tokens
    signal_token_len: int = 384  # 400 signal tokens of 3 power cycles at 60 Hz (see MAD_SMALL)
    use_image: bool = True
    use_signal: bool = True
    signal_spread_floor: float = 1e-3
    signal_compress: bool = True
    # --- width
    dim: int = 128  # token width = width of the pooled feature the heads read
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    proj_dim: int = 128  # SupCon projection size (for `--stages supcon,ce`)
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        check_family(self)
        check_field_types(self, positive_ints=("image_size", "patch_size", "signal_token_len", "dim", "heads",
                                               "proj_dim", "num_classes"),
                          positive_numbers=("mlp_ratio", "signal_spread_floor"), numbers=("dropout",),
                          bools=("use_image", "use_signal", "signal_compress"), names=("name",))
        self.check_token_inputs()

    @property
    def mlp_hidden(self) -> int:
        return round(self.mlp_ratio * self.dim)


@dataclass(frozen=True)
class ModalityTokens:
    """Tokens of the inputs a forward was given, and their per-sample presence.

    image/signal (B, T_m, D) or None (not given); *_present (B,) bool or None (every sample has it)."""

    image: torch.Tensor | None
    signal: torch.Tensor | None
    image_present: torch.Tensor | None
    signal_present: torch.Tensor | None

    def joined(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (B, T, D) tokens, image first, and the (B, T) key mask (None when nothing is masked)."""
        parts = [(x, p) for x, p in ((self.image, self.image_present), (self.signal, self.signal_present))
                 if x is not None]
        tokens = torch.cat([x for x, _ in parts], dim=1)
        if all(p is None for _, p in parts):
            return tokens, None
        masks = [torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if p is None
                 else p[:, None].expand(-1, x.shape[1]) for x, p in parts]
        return tokens, torch.cat(masks, dim=1)


class BaselineModel(WindowClassifier):
    """MAD's interface around a subclass's `forward_features` (B, dim): the same heads and outputs."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.projection_head = ProjectionHead(config.dim, config.proj_dim)
        self.classifier = ClassifierHead(config.dim, config.num_classes)
        # Fitted by mad-train calibrate and attached by mad.load_model, as for MAD.
        self.calibration: Calibration | None = None

    def forward_features(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                         image_present: torch.Tensor | None = None,
                         signal_present: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, dim): the pooled feature both heads read (a baseline's fusion ends in one vector)."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, for_supcon: bool = False) -> torch.Tensor:
        """(B, dim) -> logits (B, num_classes), or L2-normalised projections (B, proj_dim) for SupCon."""
        return self.projection_head(features) if for_supcon else self.classifier(features)

    def forward_scores(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                       image_present: torch.Tensor | None = None,
                       signal_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """"logits" (B, C) uncalibrated and "pooled" (B, dim), the classifier's input (calibration reads it)."""
        pooled = self.forward_features(images, signals, image_present, signal_present)
        return {"logits": self.classifier(pooled), "pooled": pooled}

    def forward(self, images: torch.Tensor | None, signals: torch.Tensor | None, for_supcon: bool = False,
                return_aux: bool = False, image_present: torch.Tensor | None = None,
                signal_present: torch.Tensor | None = None):
        """As MAD.forward: logits (B, 5) or projections if for_supcon; with return_aux, (out, {}): a
        baseline has no flow or routing loss."""
        out = self.forward_head(self.forward_features(images, signals, image_present, signal_present), for_supcon)
        return (out, {}) if return_aux else out


class TokenBaseline(BaselineModel):
    """A baseline on MAD's tokens: builds the tokenisers of the modalities the config uses; a subclass
    adds `encoder`, its fusion network from ModalityTokens to the pooled (B, dim)."""

    def __init__(self, config: TokenInputConfig) -> None:
        super().__init__(config)
        self.image_preprocess = self.image_tokenizer = None
        self.signal_preprocess = self.signal_tokenizer = None
        if config.use_image:
            self.image_preprocess = ImagePreprocess(config.image_size)
            self.image_tokenizer = PatchTokenizer(config.image_size, config.patch_size, config.dim)
        if config.use_signal:
            self.signal_preprocess = SignalPreprocess(config.signal_spread_floor, config.signal_compress)
            self.signal_tokenizer = SignalTokenizer(WINDOW_SAMPLES, config.signal_token_len, config.dim)

    def tokens(self, images: torch.Tensor | None, signals: torch.Tensor | None,
               image_present: torch.Tensor | None, signal_present: torch.Tensor | None) -> ModalityTokens:
        """Check and tokenise the inputs; a mask for an input that is not given is ignored, as in MAD."""
        images, signals = select_inputs(images, signals, self.config.use_image, self.config.use_signal,
                                        self.modalities)
        image = signal = None
        if images is not None:
            image = self.image_tokenizer(self.image_preprocess(images))  # (B, T_i, D)
            if image_present is not None:
                image_present = check_present(image_present, images.shape[0], "image_present")
        if signals is not None:
            signal = self.signal_tokenizer(self.signal_preprocess(signals))  # (B, T_s, D)
            if signal_present is not None:
                signal_present = check_present(signal_present, signals.shape[0], "signal_present")
        image_present = image_present if image is not None else None
        signal_present = signal_present if signal is not None else None
        check_some_modality([p for x, p in ((image, image_present), (signal, signal_present)) if x is not None])
        return ModalityTokens(image, signal, image_present, signal_present)

    def forward_features(self, images: torch.Tensor | None, signals: torch.Tensor | None,
                         image_present: torch.Tensor | None = None,
                         signal_present: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.tokens(images, signals, image_present, signal_present))  # (B, D)
