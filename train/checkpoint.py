"""Writing checkpoints: weights as safetensors + JSON sidecar; the resumable training state, never pickled.

Naming: `<dir>/<name>.safetensors` and `<dir>/<name>.json` (read by `mad.load_model`).
Training state for `--resume`: `<run>/state/model.safetensors` (weights),
`<run>/state/optimizer.safetensors` (per-parameter tensors + RNG byte states) and
`<run>/state/state.json` (epoch, stage, best metric, step, scalar optimizer settings, RNG scalars).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import mad
from mad.constants import CLASS_NAMES, DEFAULT_POWER_FREQ_HZ, IMAGE_SIZE, SAMPLE_RATE_HZ, WINDOW_ROWS
from mad.runtime.loading import SIDECAR_FORMAT, SIDECAR_VERSION, sha256_file, sidecar_path, weights_path


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "mad": mad.__version__}


def preprocessing_description(power_freq_hz: float = DEFAULT_POWER_FREQ_HZ) -> dict[str, Any]:
    """What the model expects as input; the normalisation itself lives inside the model."""
    return {
        "image": {"shape": [IMAGE_SIZE, IMAGE_SIZE, 3], "dtype": "uint8",
                  "note": "PRPD image as rendered by mad.data.prpd; scaled to [0, 1] inside the model"},
        "signal": {"shape": [WINDOW_ROWS, SAMPLE_RATE_HZ], "dtype": "raw integer ADC counts",
                   "sample_rate_hz": SAMPLE_RATE_HZ,
                   "note": "per-window robust normalisation (median, robust spread) inside the model"},
        "power_freq_hz": power_freq_hz,
    }


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # contiguous CPU copies: safetensors refuses shared or strided storage
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, name: str, extra: dict[str, Any] | None = None,
                    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ) -> Path:
    """Write weights then the sidecar that vouches for them; returns the weights path."""
    weights = weights_path(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file(model_state(model), str(weights), metadata={"format": SIDECAR_FORMAT, "name": name})
    digest = sha256_file(weights)
    created = dt.datetime.now(dt.timezone.utc)
    config = model.config
    model_config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    meta = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "name": name,
        "model_version": f"{created:%Y%m%d}-{digest[:8]}",
        "weights_file": weights.name,
        "weights_sha256": digest,
        "model_config": model_config,
        "class_names": list(CLASS_NAMES),
        "preprocessing": preprocessing_description(power_freq_hz),
        "git_commit": git_commit(),
        "versions": versions(),
        "created": created.isoformat(timespec="seconds"),
        **(extra or {}),
    }
    write_json_atomic(sidecar_path(weights), meta)
    return weights


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---- resumable training state -------------------------------------------------------------------

def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}}
    py_state = random.getstate()
    scalars = {"numpy": np_state, "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, scalars


def _set_rng_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    np_state = scalars["numpy"]
    np_key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**np_state, "state": {"key": np_key, "pos": np_state["state"]["pos"]}})
    version, state, gauss = scalars["python"]
    random.setstate((version, tuple(state), gauss))


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for param_id, entries in sd["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"opt.{param_id}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars["state"].setdefault(str(param_id), {})[key] = value
    return tensors, scalars


def _join_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in scalars["state"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_training_state(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        progress: dict[str, Any]) -> None:
    """Everything `--resume` needs, written so a crash mid-write leaves the previous state usable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng_tensors, rng_scalars = _rng_state()
    opt_tensors, opt_scalars = _split_optimizer(optimizer)
    for file_name, tensors in (("model.safetensors", model_state(model)),
                               ("optimizer.safetensors", {**opt_tensors, **rng_tensors})):
        tmp = directory / (file_name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, directory / file_name)
    payload = {"progress": progress, "optimizer": opt_scalars, "rng": rng_scalars,
               "model_sha256": sha256_file(directory / "model.safetensors"),
               "optimizer_sha256": sha256_file(directory / "optimizer.safetensors")}
    write_json_atomic(directory / "state.json", payload)


def load_training_state(directory: str | Path, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore model (and optimizer, RNG) from `save_training_state`; returns the progress dict."""
    directory = Path(directory)
    state_json = directory / "state.json"
    if not state_json.is_file():
        raise FileNotFoundError(f"{state_json}: no training state to resume from")
    try:
        payload = json.loads(state_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{state_json}: not valid JSON ({exc})") from None
    for file_name, key in (("model.safetensors", "model_sha256"), ("optimizer.safetensors", "optimizer_sha256")):
        if sha256_file(directory / file_name) != payload[key]:
            raise ValueError(f"{directory / file_name}: sha256 does not match {state_json}")
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    tensors = load_file(str(directory / "optimizer.safetensors"))
    if optimizer is not None:
        optimizer.load_state_dict(_join_optimizer(tensors, payload["optimizer"]))
    _set_rng_state(tensors, payload["rng"])
    return payload["progress"]
