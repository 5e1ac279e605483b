"""Inputs of the exported graph that ONNX Runtime and TensorRT run: MAD after its signal normalisation.

The signal normalisation takes a median over the 153,600 samples of a window. ONNX has no median
operator and TensorRT's TopK stops far short of 153,600, so that step stays in torch (on the GPU
when there is one) and the exported graph starts at the signal tokens. Every graph input is
float32, which every TensorRT build accepts as a network input:

- `images` (B, 3, 256, 256) in [0, 1]: zeros where a window has no PRPD frame;
- `signal_features` (B, 153600): `SignalPreprocess` output;
- `image_present` (B,) 1.0 or 0.0: 0.0 masks the image tokens, which equals `model(None, signals)`.

Output: `logits` (B, 5). A model without one modality has no input for it. A calibrated checkpoint
(mad-train calibrate) adds the output `familiarity` (B,), and its `logits` are the calibrated ones
(raw / temperature, inside the graph: the metadata's `calibration.applied_in_graph`), so a runtime takes
softmax(logits) as it is and never applies the temperature itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mad.constants import IMAGE_SIZE
from mad.model.preprocess import ImagePreprocess, SignalPreprocess

IMAGES, SIGNAL_FEATURES, IMAGE_PRESENT, LOGITS = "images", "signal_features", "image_present", "logits"
FAMILIARITY = "familiarity"  # the second output of a calibrated graph
GRAPH_META_KEY = "mad_meta"  # ONNX metadata_props key / engine sidecar holding the model's metadata
ENGINE_FORMAT = "mad-tensorrt-engine"  # the `format` of a TensorRT engine's `<name>.engine.json` sidecar
IMAGE_PREPROCESS = ImagePreprocess(IMAGE_SIZE)  # stateless: one instance serves every backend and device


def graph_input_names(use_image: bool, use_signal: bool) -> tuple[str, ...]:
    if use_image and use_signal:
        return (IMAGES, SIGNAL_FEATURES, IMAGE_PRESENT)
    return (IMAGES,) if use_image else (SIGNAL_FEATURES,)


def graph_output_names(calibrated: bool) -> tuple[str, ...]:
    return (LOGITS, FAMILIARITY) if calibrated else (LOGITS,)


def signal_preprocess_from_meta(meta: dict[str, Any]) -> SignalPreprocess | None:
    """The torch half of the signal path, rebuilt from the exported metadata (None: image-only model)."""
    spec = meta.get("signal_preprocess")
    if spec is None:
        return None
    return SignalPreprocess(float(spec["spread_floor"]), bool(spec["compress"]))


def prepare_graph_inputs(images: np.ndarray | None, signals: np.ndarray, input_names: tuple[str, ...],
                         signal_preprocess: SignalPreprocess | None,
                         device: torch.device) -> dict[str, torch.Tensor]:
    """Agent arrays (uint8 images or None, raw-count signals) -> contiguous float32 graph inputs on `device`.

    Images go through the model's own ImagePreprocess (uint8 HWC -> float CHW / 255), so the graph sees what
    the eager model sees."""
    batch = signals.shape[0]
    feeds: dict[str, torch.Tensor] = {}
    if IMAGES in input_names:
        if images is None:
            if IMAGE_PRESENT not in input_names:
                raise ValueError("this model needs the PRPD image (it has no signal-only path)")
            feeds[IMAGES] = torch.zeros((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.float32, device=device)
        else:
            pixels = torch.from_numpy(np.ascontiguousarray(images)).to(device)
            feeds[IMAGES] = IMAGE_PREPROCESS(pixels).contiguous()
    if SIGNAL_FEATURES in input_names:
        if signal_preprocess is None:
            raise ValueError("graph takes signal_features but its metadata has no signal_preprocess")
        raw = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32)).to(device)
        feeds[SIGNAL_FEATURES] = signal_preprocess(raw).contiguous()
    if IMAGE_PRESENT in input_names:
        feeds[IMAGE_PRESENT] = torch.full((batch,), 0.0 if images is None else 1.0, dtype=torch.float32,
                                          device=device)
    return feeds

