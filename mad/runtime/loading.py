"""`mad.load_model(path)`: a checkpoint is `<name>.safetensors` plus its sidecar `<name>.json`.

The sidecar carries everything needed to rebuild and trust the weights: the model config,
class names, preprocessing, provenance and the sha256 of the weights file. Loading refuses a
missing or garbled sidecar and weights whose hash does not match: an agent on a live plant must
not run a model nobody can vouch for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

SIDECAR_FORMAT = "mad-checkpoint"
SIDECAR_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
REQUIRED_KEYS = ("format", "version", "name", "model_config", "class_names", "preprocessing", "weights_sha256")


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded; the message names the file and the problem."""


def weights_path(path: str | Path) -> Path:
    """Accept `<name>.safetensors`, `<name>.json` or `<name>` and return the weights path."""
    path = Path(path)
    if path.suffix == ".json":
        return path.with_suffix(WEIGHTS_SUFFIX)
    if path.suffix == WEIGHTS_SUFFIX:
        return path
    return path.with_name(path.name + WEIGHTS_SUFFIX)


def sidecar_path(path: str | Path) -> Path:
    return weights_path(path).with_suffix(".json")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def parse_json_object(text: str | bytes, *, source: str | Path, what: str, required: Sequence[str],
                      error: type[Exception]) -> dict[str, Any]:
    """JSON text -> dict holding every `required` key; else `error` naming the source, what it is and the key."""
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{source}: {what} is not valid JSON ({exc})") from None
    return check_json_object(value, source=source, what=what, required=required, error=error)


def check_json_object(value: Any, *, source: str | Path, what: str, required: Sequence[str],
                      error: type[Exception]) -> dict[str, Any]:
    """An already parsed JSON value -> the dict, if it is one holding every `required` key."""
    if not isinstance(value, dict):
        raise error(f"{source}: {what} must be a JSON object, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise error(f"{source}: {what} lacks {', '.join(missing)}")
    return value


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Parse and check the sidecar of a checkpoint (does not hash the weights)."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar}: sidecar missing (every .safetensors checkpoint needs its .json)")
    meta = parse_json_object(sidecar.read_bytes(), source=sidecar, what="sidecar", required=REQUIRED_KEYS,
                             error=CheckpointError)
    if meta["format"] != SIDECAR_FORMAT:
        raise CheckpointError(f"{sidecar}: format is {meta['format']!r}, expected {SIDECAR_FORMAT!r}")
    if meta["version"] != SIDECAR_VERSION:
        raise CheckpointError(f"{sidecar}: sidecar version {meta['version']!r} not supported (this code reads "
                              f"{SIDECAR_VERSION})")
    if not isinstance(meta["model_config"], dict):
        raise CheckpointError(f"{sidecar}: model_config must be an object")
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{sidecar}: class_names must be a list of strings, got {names!r}")
    return meta


def verify_weights(path: str | Path, meta: dict[str, Any]) -> Path:
    weights = weights_path(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing")
    actual = sha256_file(weights)
    if actual != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 {actual} does not match the sidecar's {meta['weights_sha256']} "
                              f"(file changed or sidecar belongs to another checkpoint)")
    return weights


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the model from the sidecar's config, load the verified weights strictly, eval mode.

    A sidecar with a "calibration" block also gets its verified companion file attached as
    `model.calibration` (temperature and familiarity statistics, used by `model.infer`); without one the
    model has no calibration and no familiarity gate. `model.mad_meta` holds name, version (the sidecar's
    model_version, plus `+cal.<sha256[:8]>` of the calibration file when there is one: the same weights
    with another calibration give other probabilities), class_names, preprocessing, calibration (the
    block or None) and the whole sidecar.
    """
    from safetensors.torch import load_file

    from mad.model import build_model, get_model_config
    from mad.runtime.calibration import CALIBRATION_KEY, load_calibration

    meta = read_sidecar(path)
    weights = verify_weights(path, meta)
    try:
        config = get_model_config(meta["model_config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{sidecar_path(path)}: model_config rejected ({exc})") from None
    model = build_model(config)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for a truncated/garbled file
        raise CheckpointError(f"{weights}: cannot read safetensors ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not fit the sidecar's model_config ({exc})") from None
    model.calibration = load_calibration(path, meta, config.num_classes, config.dim)
    model.to(device).eval()
    version = meta.get("model_version", meta["weights_sha256"][:12])
    block = meta.get(CALIBRATION_KEY)
    if block is not None:
        version = f"{version}+cal.{block['sha256'][:8]}"
    model.mad_meta = {
        "name": meta["name"],
        "version": version,
        "class_names": list(meta["class_names"]),
        "preprocessing": meta["preprocessing"],
        "calibration": block,
        "sidecar": meta,
    }
    return model
