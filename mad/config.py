"""Model configuration: one dataclass for the MAD family and its named presets.

A config fully describes a model, preprocessing included, so a checkpoint that stores
`dataclasses.asdict(config)` rebuilds the exact same network (see `get_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from mad.constants import IMAGE_SIZE, NUM_CLASSES, WINDOW_SAMPLES

ROUTINGS = ("dense", "topk")
ConfigT = TypeVar("ConfigT")


def invalid(config: Any, field: str, why: str) -> ValueError:
    """The one error shape of every model config: class, preset name, field, value and why."""
    return ValueError(f"{type(config).__name__} {config.name!r}: {field}={getattr(config, field)!r} {why}")


def check_field_types(config: Any, *, positive_ints: tuple[str, ...] = (), counts: tuple[str, ...] = (),
                      positive_numbers: tuple[str, ...] = (), numbers: tuple[str, ...] = (),
                      bools: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> None:
    """Type checks shared by the model config dataclasses: a dict from YAML or JSON reaches them unchecked
    (YAML reads "1e-3" as a string, and `True` is an int to Python), so each field is checked by kind."""
    for field in names:
        value = getattr(config, field)
        if not isinstance(value, str) or not value:
            raise invalid(config, field, "must be a non-empty string")
    for field in positive_ints:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(config, field, "must be a positive integer")
    for field in counts:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid(config, field, "must be an integer >= 0")
    for field in (*positive_numbers, *numbers):
        value = getattr(config, field)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise invalid(config, field, "must be a number")
        if field in positive_numbers and not value > 0:
            raise invalid(config, field, "must be > 0")
    for field in bools:
        if not isinstance(getattr(config, field), bool):
            raise invalid(config, field, "must be true or false")


class TokenInputs:
    """Token counts and checks of a config that reads its inputs as MAD does (image patches, signal
    segments): MADConfig and the token baselines' configs, whose dataclasses have image_size, patch_size,
    signal_token_len, use_image, use_signal, dim, heads and dropout."""

    def check_token_inputs(self: Any) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise invalid(self, "dropout", "must be in [0, 1)")
        if not (self.use_image or self.use_signal):
            raise invalid(self, "use_signal", "and use_image=False: at least one modality is needed")
        if self.image_size % self.patch_size:
            raise invalid(self, "patch_size", f"must divide image_size={self.image_size}")
        if WINDOW_SAMPLES % self.signal_token_len:
            raise invalid(self, "signal_token_len", f"must divide the window length {WINDOW_SAMPLES}")
        if self.dim % self.heads:
            raise invalid(self, "heads", f"must divide dim={self.dim}")

    @property
    def image_tokens(self: Any) -> int:
        return (self.image_size // self.patch_size) ** 2 if self.use_image else 0

    @property
    def signal_tokens(self: Any) -> int:
        return WINDOW_SAMPLES // self.signal_token_len if self.use_signal else 0

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MADConfig(TokenInputs):
    name: str = "mad_custom"
    # --- inputs / tokenisers
    image_size: int = IMAGE_SIZE  # PRPD image side (pixels)
    patch_size: int = 32  # image patch side -> (image_size / patch_size)^2 image tokens
    signal_token_len: int = 240  # samples per PD-signal token -> WINDOW_SAMPLES / len signal tokens
    use_image: bool = True  # build the PRPD branch
    use_signal: bool = True  # build the PD-series branch
    # --- signal preprocessing (per window: (x - median) / max(robust spread, floor), then asinh)
    signal_spread_floor: float = 1e-3  # lower bound on the robust spread, in ADC counts
    signal_compress: bool = True  # asinh after scaling: PD pulses are 100-1000x the noise floor
    # --- RealNVP flows
    image_flow_couplings: int = 3  # affine couplings on image tokens (paper: 3)
    signal_flow_couplings: int = 5  # causal affine couplings on signal tokens (paper: 5)
    flow_hidden_ratio: float = 1.5  # conditioner hidden width = ratio * dim
    flow_scale_bound: float = 2.0  # gamma in s = gamma * tanh(s_raw): |log-scale| <= gamma per channel
    signal_flow_kernel: int = 3  # causal conv kernel (tokens) of the signal conditioner's first layer
    # --- LIMoE encoder
    dim: int = 128  # token width
    depth: int = 4  # encoder blocks
    heads: int = 8  # attention heads (dim % heads == 0)
    num_experts: int = 2  # expert MLPs per block (paper text: 2)
    routing: str = "dense"  # "dense": every token to every expert, softmax gate; "topk": top_k experts
    top_k: int = 1  # experts per token for routing="topk" (1 or 2)
    mlp_ratio: float = 4.0  # expert hidden width = mlp_ratio * dim
    dropout: float = 0.0  # attention/residual dropout
    # --- heads
    proj_dim: int = 128  # SupCon projection size
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        check_field_types(
            self,
            positive_ints=("image_size", "patch_size", "signal_token_len", "dim", "depth", "heads", "num_experts",
                           "proj_dim", "num_classes", "signal_flow_kernel"),
            counts=("image_flow_couplings", "signal_flow_couplings"),
            positive_numbers=("flow_hidden_ratio", "flow_scale_bound", "mlp_ratio", "signal_spread_floor"),
            numbers=("dropout",),
            bools=("use_image", "use_signal", "signal_compress"), names=("name",),
        )
        self.check_token_inputs()
        if self.dim % 2:
            raise invalid(self, "dim", "must be even (flows split the channels in halves)")
        if self.routing not in ROUTINGS:
            raise invalid(self, "routing", f"must be one of {ROUTINGS}")
        if self.routing == "topk" and not (1 <= self.top_k <= min(2, self.num_experts)):
            raise invalid(self, "top_k", f"must be 1 or 2 and <= num_experts={self.num_experts}")


# Fast enough for unit tests everywhere: 16 image + 80 signal tokens, width 32.
MAD_TINY = MADConfig(
    name="mad_tiny", patch_size=64, signal_token_len=1920, dim=32, depth=2, heads=2,
    proj_dim=32, flow_hidden_ratio=1.0, signal_flow_kernel=2,
)
# Paper: 2.38 M params. Design-notes family: dim 128, 4 layers, 64 image tokens. Signal tokens of
# 384 samples = 3 power cycles at 60 Hz (128 samples per cycle), so every token starts at the same
# supply phase and a weight of the token embedding always sees the same phase: the PRPD pattern is
# then a fixed linear filter. With 240-sample tokens (1.875 cycles, the design notes' first guess)
# the phase of a weight changed from token to token and the signal-only model stayed at chance;
# with 384 it reached test macro-F1 0.73 after 120 steps, and 400 tokens are cheaper than 640.
MAD_SMALL = MADConfig(
    name="mad_small", patch_size=32, signal_token_len=384, dim=128, depth=4, heads=8, flow_hidden_ratio=1.25,
)
# Paper text: 16x16 patches (256 tokens), tokens of 60 samples (2,560), dim 768, 4 layers, 8 heads, 2 experts.
MAD_BASE = MADConfig(name="mad_base", patch_size=16, signal_token_len=60, dim=768, depth=4, heads=8)
MAD_IMG_ONLY = MAD_SMALL.replace(name="mad_img_only", use_signal=False)
MAD_SIG_ONLY = MAD_SMALL.replace(name="mad_sig_only", use_image=False)

PRESETS: dict[str, MADConfig] = {c.name: c for c in (MAD_TINY, MAD_SMALL, MAD_BASE, MAD_IMG_ONLY, MAD_SIG_ONLY)}


def get_config(name_or_config: str | MADConfig | dict[str, Any]) -> MADConfig:
    """A preset name, a config, or a dict (e.g. from `dataclasses.asdict`) -> MADConfig."""
    if isinstance(name_or_config, MADConfig):
        return name_or_config
    if isinstance(name_or_config, str):
        return lookup_preset(name_or_config, PRESETS)
    if isinstance(name_or_config, dict):
        return config_from_dict(MADConfig, name_or_config)
    raise TypeError(f"expected a preset name, MADConfig or dict, got {type(name_or_config).__name__}")


def config_from_dict(config_class: type[ConfigT], raw: dict[str, Any]) -> ConfigT:
    """A model config dataclass from a dict (a sidecar's model_config, a YAML `model:` mapping); an unknown
    key is named rather than ignored, so a typo cannot silently build another network."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} key(s) {unknown}; known: {sorted(known)}")
    return config_class(**raw)


def lookup_preset(name: str, presets: dict[str, ConfigT]) -> ConfigT:
    """A preset by name, case and surrounding space ignored; an unknown name lists the known ones."""
    key = name.strip().lower()
    if key not in presets:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(presets)}")
    return presets[key]
