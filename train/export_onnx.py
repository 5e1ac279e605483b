"""ONNX export of a checkpoint: the graph ONNX Runtime runs on a CPU and TensorRT builds engines from.

The graph is the model after its signal normalisation (see `mad.runtime.graph_io` for why and for
the inputs). The model's metadata, with what the runtime needs to rebuild the torch half of the
signal path, is embedded as the ONNX metadata entry `mad_meta`, so the file stands alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mad.constants import IMAGE_SIZE, WINDOW_SAMPLES
from mad.model.heads import masked_mean
from mad.model.mad import IMAGE_MODALITY, MAD, SIGNAL_MODALITY
from mad.runtime.graph_io import (
    FAMILIARITY,
    GRAPH_META_KEY,
    IMAGE_PRESENT,
    IMAGES,
    LOGITS,
    SIGNAL_FEATURES,
    graph_input_names,
    graph_output_names,
)
from train.export import export_metadata

ONNX_OPSET = 18  # TensorRT 10's ONNX parser and ONNX Runtime >= 1.18 both take opset 18
MAX_EXPORT_BATCH = 4096  # the dynamic batch axis' upper bound (TensorRT engines set their own)


class ExportError(ValueError):
    """A model or build setting the export cannot take; the message names it."""


class GraphCore(nn.Module):
    """MAD from the graph inputs to logits, with the eager model's own submodules and weights.

    `image_present` 0.0 masks a sample's image tokens in attention and pooling, which is what
    `model(None, signals)` computes (tested equal), so one graph serves windows with and without a frame.
    With the model's calibration: (logits / T, familiarity), what `model.infer` returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, MAD):  # the graph below is MAD's own forward, written out
            raise ExportError(f"ONNX export takes MAD models; {type(model).__name__} is a baseline: export it as "
                              "torchscript")
        if model.config.routing != "dense":
            raise ExportError(f"model_config.routing={model.config.routing!r}: top-k routing gathers tokens into "
                              "data-dependent shapes that ONNX/TensorRT graphs cannot hold; export a dense model")
        self.model = model
        self.use_image, self.use_signal = model.config.use_image, model.config.use_signal

    def forward(self, images: torch.Tensor | None = None, signal_features: torch.Tensor | None = None,
                image_present: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        tokens, modality, masks = [], [], []
        if self.use_image:
            z = model.image_flow(model.image_tokenizer(model.image_preprocess(images)))[0]
            tokens.append(z)
            modality.append(torch.full((z.shape[1],), IMAGE_MODALITY, dtype=torch.long))
            if self.use_signal:
                masks.append((image_present > 0.5)[:, None].expand(-1, z.shape[1]))
        if self.use_signal:
            z = model.signal_flow(model.signal_tokenizer(signal_features))[0]
            tokens.append(z)
            modality.append(torch.full((z.shape[1],), SIGNAL_MODALITY, dtype=torch.long))
            if self.use_image:
                masks.append(torch.ones(z.shape[:2], dtype=torch.bool, device=z.device))
        token_mask = torch.cat(masks, dim=1) if masks else None
        encoded, _ = model.encoder(torch.cat(tokens, dim=1), torch.cat(modality), token_mask)
        pooled = masked_mean(encoded, token_mask)
        logits = model.classifier(pooled)
        if model.calibration is None:
            return logits
        return model.calibration(logits, pooled)


def graph_metadata(model: nn.Module) -> dict[str, Any]:
    config = model.config
    meta = export_metadata(model)
    meta["inputs"] = {
        IMAGES: "float32 (B, 3, 256, 256) in [0, 1]: uint8 HWC / 255, zeros without a frame",
        SIGNAL_FEATURES: "float32 (B, 153600): signals after signal_preprocess (median/MAD, asinh)",
        IMAGE_PRESENT: "float32 (B,): 1.0 image given, 0.0 signal-only",
    }
    meta["inputs"] = {name: meta["inputs"][name] for name in graph_input_names(config.use_image, config.use_signal)}
    meta["signal_preprocess"] = ({"spread_floor": config.signal_spread_floor, "compress": config.signal_compress}
                                 if config.use_signal else None)
    if meta["calibration"] is None:
        meta["outputs"] = {LOGITS: "float32 (B, 5)"}
    else:
        meta["outputs"] = {LOGITS: "float32 (B, 5): calibrated, raw logits / calibration.temperature",
                           FAMILIARITY: "float32 (B,): unfamiliar below calibration.familiarity.threshold"}
    meta["opset"] = ONNX_OPSET
    return meta


def example_inputs(model: nn.Module, batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = {
        IMAGES: torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        SIGNAL_FEATURES: torch.randn(batch, WINDOW_SAMPLES, generator=generator),
        IMAGE_PRESENT: torch.ones(batch),
    }
    names = graph_input_names(model.config.use_image, model.config.use_signal)
    return {name: inputs[name] for name in names}


def export_onnx(model: nn.Module, out: str | Path) -> Path:
    """Write the graph as one self-contained .onnx file (weights inside, metadata embedded)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'mad-pd[onnx]'") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    core = GraphCore(model.eval().to("cpu")).eval()
    inputs = example_inputs(model)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on torchvision ops and deprecations
        program = torch.onnx.export(
            core, (), kwargs=inputs, dynamo=True, opset_version=ONNX_OPSET, input_names=list(inputs),
            output_names=list(graph_output_names(model.calibration is not None)),
            dynamic_shapes={name: {0: batch} for name in inputs}, verbose=False,
        )
    program.model.metadata_props[GRAPH_META_KEY] = json.dumps(graph_metadata(model))
    program.save(str(out), external_data=False)
    return out
