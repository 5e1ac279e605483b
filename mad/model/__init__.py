"""The MAD network: tokenisers, RealNVP flows, LIMoE encoder, heads (one concept per module)."""

from mad.model.mad import MAD, build_model

__all__ = ["MAD", "build_model"]
