"""TorchScript export with the checkpoint's metadata embedded as `mad_meta.json`.

Tracing cannot take `None`, so the exported module is a scripted dispatcher over two traced graphs:
`module(images, signals)` runs the both-modality graph and `module(None, signals)` the signal-only
graph, the same call signature as the eager model. Images must be uint8 (B, 256, 256, 3) (the
agent's format); signals (B, 20, 7680) float32 raw counts. Output: logits (B, 5); for a calibrated
checkpoint (mad-train calibrate) the tuple (calibrated logits (B, 5), familiarity (B,)), i.e.
`model.infer`: the temperature is inside the graph and the metadata's `calibration.applied_in_graph`
says so, so no runtime divides by it again.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.runtime.calibration import gate_summary

TORCHSCRIPT_META_FILE = "mad_meta.json"  # the agent reads this name (agent/inference.py)


def _calibrated(model: nn.Module) -> bool:
    return getattr(model, "calibration", None) is not None


class _BothModalities(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, signals: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.model.infer(images, signals) if _calibrated(self.model) else self.model(images, signals)


class _SignalOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, signals: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.model.infer(None, signals) if _calibrated(self.model) else self.model(None, signals)


class ExportedMAD(nn.Module):
    def __init__(self, both: nn.Module, signal_only: nn.Module | None) -> None:
        super().__init__()
        self.both = both
        self.signal_only = signal_only if signal_only is not None else both
        self.signal_only_supported = signal_only is not None

    def forward(self, images: torch.Tensor | None, signals: torch.Tensor) -> torch.Tensor:
        if images is None:
            if not self.signal_only_supported:
                raise RuntimeError("this model needs the PRPD image (it has no signal-only path)")
            return self.signal_only(signals)
        if images.dtype != torch.uint8:
            raise RuntimeError("images must be uint8 (B, 256, 256, 3)")
        return self.both(images, signals)


class ExportedCalibratedMAD(nn.Module):
    """ExportedMAD of a calibrated model: the same dispatch, returning (calibrated logits, familiarity)."""

    def __init__(self, both: nn.Module, signal_only: nn.Module | None) -> None:
        super().__init__()
        self.both = both
        self.signal_only = signal_only if signal_only is not None else both
        self.signal_only_supported = signal_only is not None

    def forward(self, images: torch.Tensor | None, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images is None:
            if not self.signal_only_supported:
                raise RuntimeError("this model needs the PRPD image (it has no signal-only path)")
            return self.signal_only(signals)
        if images.dtype != torch.uint8:
            raise RuntimeError("images must be uint8 (B, 256, 256, 3)")
        return self.both(images, signals)


def export_metadata(model: nn.Module) -> dict[str, Any]:
    meta = model.mad_meta
    calibration = gate_summary(meta.get("calibration"))
    outputs = ("(calibrated logits (B, 5) = raw logits / calibration.temperature, familiarity (B,))"
               if calibration is not None else "logits (B, 5)")
    return {"name": meta["name"], "version": meta["version"], "class_names": meta["class_names"],
            "preprocessing": meta["preprocessing"], "model_config": meta["sidecar"]["model_config"],
            "weights_sha256": meta["sidecar"]["weights_sha256"], "inputs": {
                "images": "uint8 (B, 256, 256, 3) or None (signal-only graph)",
                "signals": "float32 (B, 20, 7680) raw ADC counts"}, "outputs": outputs,
            "calibration": calibration}


def to_torchscript(model: nn.Module) -> torch.jit.ScriptModule:
    """Trace the model (eval mode, CPU) into the dispatcher described in the module docstring."""
    model = model.eval().to("cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8, generator=generator)
    signals = torch.randn(2, WINDOW_ROWS, ROW_SAMPLES, generator=generator) * 5 + 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks are constant for valid input
        both = torch.jit.trace(_BothModalities(model), (images, signals), check_trace=False)
        signal_only = (torch.jit.trace(_SignalOnly(model), (signals,), check_trace=False)
                       if model.config.use_signal else None)
        dispatcher = ExportedCalibratedMAD if _calibrated(model) else ExportedMAD
        return torch.jit.script(dispatcher(both, signal_only))


def export_torchscript(model: nn.Module, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted = to_torchscript(model)
    extra = {TORCHSCRIPT_META_FILE: json.dumps(export_metadata(model), indent=2)}
    torch.jit.save(scripted, str(out), _extra_files=extra)
    return out
