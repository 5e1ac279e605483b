"""The MAD network (tokenisers, RealNVP flows, LIMoE encoder, heads) and the paper's baselines, one
concept per module; `build_model` builds any of them from a preset name or config."""

from mad.model.mad import MAD
from mad.model.registry import PRESETS, build_model, get_model_config

__all__ = ["MAD", "PRESETS", "build_model", "get_model_config"]
