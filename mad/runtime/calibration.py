"""A checkpoint's calibration: the sidecar's "calibration" block and its companion tensor file.

    <name>.safetensors               the trained weights (untouched by calibration)
    <name>.json                      sidecar; "calibration": temperature, familiarity score and threshold,
                                     what they were fitted on, and the companion's file name and sha256
    <name>.calibration.safetensors   class_means (C, D) and precision (D, D) of the familiarity score

The companion is checked like the weights (sha256 against the sidecar, safetensors only, shapes against
the model config): a calibration nobody can vouch for is refused, not silently dropped. A sidecar without
the block is a model without calibration: raw probabilities and no familiarity gate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from mad.model.familiarity import SCORE_MAHALANOBIS, Calibration
from mad.runtime.loading import CheckpointError, check_json_object, sha256_file, sidecar_path, weights_path

CALIBRATION_KEY = "calibration"
CALIBRATION_FORMAT = 1
COMPANION_SUFFIX = ".calibration.safetensors"
TENSOR_KEYS = ("class_means", "precision")
REQUIRED = ("format", "file", "sha256", "temperature", "familiarity")
SCORES = (SCORE_MAHALANOBIS,)


def companion_path(path: str | Path) -> Path:
    """mad_small.safetensors -> mad_small.calibration.safetensors (beside the weights)."""
    weights = weights_path(path)
    return weights.with_name(weights.stem + COMPANION_SUFFIX)


def check_block(block: Any, source: str | Path) -> dict[str, Any]:
    """The sidecar's calibration block, checked (types and ranges); raises CheckpointError naming the key."""
    block = check_json_object(block, source=source, what=CALIBRATION_KEY, required=REQUIRED, error=CheckpointError)
    if block["format"] != CALIBRATION_FORMAT:
        raise CheckpointError(f"{source}: calibration format {block['format']!r} not supported (this code reads "
                              f"{CALIBRATION_FORMAT})")
    temperature = block["temperature"]
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise CheckpointError(f"{source}: calibration.temperature must be a positive number, got {temperature!r}")
    familiarity = check_json_object(block["familiarity"], source=source, what="calibration.familiarity",
                                    required=("score", "threshold"), error=CheckpointError)
    if familiarity["score"] not in SCORES:
        raise CheckpointError(f"{source}: calibration.familiarity.score {familiarity['score']!r} unknown "
                              f"(this code computes {list(SCORES)})")
    threshold = familiarity["threshold"]
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise CheckpointError(f"{source}: calibration.familiarity.threshold must be a finite number, got "
                              f"{threshold!r}")
    if not isinstance(block["file"], str) or Path(block["file"]).name != block["file"]:
        raise CheckpointError(f"{source}: calibration.file must be a bare file name beside the sidecar, got "
                              f"{block['file']!r}")
    return block


def load_calibration(path: str | Path, meta: dict[str, Any], num_classes: int, dim: int) -> Calibration | None:
    """The checkpoint's Calibration (None when its sidecar has no calibration block), verified."""
    from safetensors.torch import load_file

    if meta.get(CALIBRATION_KEY) is None:
        return None
    sidecar = sidecar_path(path)
    block = check_block(meta[CALIBRATION_KEY], sidecar)
    companion = sidecar.with_name(block["file"])
    if not companion.is_file():
        raise CheckpointError(f"{companion}: calibration file missing (named by {sidecar}; re-run mad-train calibrate "
                              "or remove the sidecar's calibration block)")
    actual = sha256_file(companion)
    if actual != block["sha256"]:
        raise CheckpointError(f"{companion}: sha256 {actual} does not match the sidecar's {block['sha256']} "
                              "(file changed or belongs to another calibration)")
    try:
        tensors = load_file(str(companion), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for a truncated/garbled file
        raise CheckpointError(f"{companion}: cannot read safetensors ({exc})") from None
    if set(tensors) != set(TENSOR_KEYS):
        raise CheckpointError(f"{companion}: holds {sorted(tensors)}, expected {list(TENSOR_KEYS)}")
    means, precision = tensors["class_means"], tensors["precision"]
    if tuple(means.shape) != (num_classes, dim) or tuple(precision.shape) != (dim, dim):
        raise CheckpointError(f"{companion}: class_means {tuple(means.shape)} / precision {tuple(precision.shape)} "
                              f"do not fit the model ({num_classes} classes, dim {dim})")
    try:
        return Calibration(float(block["temperature"]), means, precision, float(block["familiarity"]["threshold"]))
    except ValueError as exc:
        raise CheckpointError(f"{companion}: {exc}") from None


def write_companion(path: str | Path, class_means: torch.Tensor, precision: torch.Tensor) -> tuple[Path, str]:
    """Write the companion tensor file beside the checkpoint; -> (path, sha256)."""
    import os

    from safetensors.torch import save_file

    companion = companion_path(path)
    tmp = companion.with_name(companion.name + ".tmp")
    save_file({"class_means": class_means.detach().float().contiguous().cpu(),
               "precision": precision.detach().float().contiguous().cpu()}, str(tmp),
              metadata={"format": "mad-calibration"})
    os.replace(tmp, companion)
    return companion, sha256_file(companion)


def gate_summary(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an exported graph's metadata carries of the block: scalars and provenance, no file names.

    `applied_in_graph`: the temperature is already in the graph's logits; no backend divides by it again."""
    if block is None:
        return None
    summary = {key: value for key, value in block.items() if key not in ("file",)}
    summary["applied_in_graph"] = True
    return summary
