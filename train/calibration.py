"""`mad-train calibrate`: fit temperature scaling and the familiarity gate on validation windows, write them
into a checkpoint (sidecar block + checked companion file, mad.runtime.calibration).

The windows: for a `synth:` checkpoint, fresh windows of its own training preset (and its training PRPD
families), generated from a seed no training or documented test set uses (CALIBRATION_SEED, 2000); for an
`.h5` or `aihub:` checkpoint, the validation split fit carved. Never a real recording the model is
checked against (the AI Hub sample in ../shared/fixtures is a regression check, not calibration data).

One forward per window gives the raw logits and the pooled features. The familiarity threshold must come
from features the statistics never saw (in-sample distances are optimistic with D = 128), so it is
cross-fitted: the windows of each class are split in two halves, statistics fitted on each half score the
other, and the threshold is the `quantile` (0.5 %) of all those out-of-sample scores; the statistics
written are then fitted on all windows. They are a little tighter than the half-sample ones that set the
threshold, which errs towards flagging fewer in-family windows. The temperature is fitted on all windows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mad.model.familiarity import (
    SCORE_DEFINITION,
    SCORE_MAHALANOBIS,
    fit_gaussian_statistics,
    fit_temperature,
    mahalanobis_familiarity,
)
from mad.runtime.calibration import CALIBRATION_FORMAT, CALIBRATION_KEY, write_companion
from mad.runtime.loading import CheckpointError, read_sidecar, sidecar_path, verify_weights, weights_path
from train.checkpoint import write_json_atomic
from train.metrics import classification_report, expected_calibration_error, negative_log_likelihood

CALIBRATION_SEED = 2000  # synth windows for calibration; training seeds are 0-11, documented test sets 1000/1001
DOCUMENTED_TEST_SEEDS = (1000, 1001)  # the fresh test sets of docs/training.md: never fitted on
DEFAULT_WINDOWS = 2000
DEFAULT_QUANTILE = 0.005
SHRINKAGE = 0.01  # covariance shrinkage; 0.01-0.03 measured alike (docs/familiarity.md)


class CalibrationError(ValueError):
    """A calibration that cannot be fitted or written; the message names the reason."""


@dataclasses.dataclass
class CalibrationFit:
    temperature: float
    class_means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D)
    threshold: float
    report: dict[str, Any]  # measured on the calibration windows themselves (see fitted_on)


def calibration_data(meta: dict[str, Any], *, data: str | None, seed: int, n: int) -> tuple[Dataset, dict[str, Any]]:
    """The windows to calibrate on, and a description of them for the sidecar's `fitted_on`."""
    from mad.data.datasets import SyntheticDataset
    from train.config import DataConfig
    from train.data_spec import open_datasets

    training = dict((meta.get("training_config") or {}).get("data") or {})
    spec = data or training.get("spec") or meta.get("data_spec")
    if spec is None:
        raise CalibrationError("the sidecar names no training data spec; pass --data synth:<preset>")
    if spec.startswith("synth:"):
        train_seed = training.get("synth_seed")
        refused = {s: "its training seed (data.synth_seed)" for s in ([train_seed] if train_seed is not None else [])}
        if train_seed is not None:
            refused[train_seed + 1] = "its test seed (data.synth_seed + 1)"
        refused.update({s: "a documented test set (docs/training.md)" for s in DOCUMENTED_TEST_SEEDS})
        if seed in refused:
            raise CalibrationError(f"--seed {seed} is {refused[seed]}: calibrate on windows no training or test uses")
        if n < 20:
            raise CalibrationError(f"--n-val {n}: too few windows to fit 5 class means and a threshold (>= 20)")
        # In-family = what the model was trained on: its training PRPD rendering families and noise families
        # too (the nuisance overrides are left out: they oversample, they do not widen the family).
        same = spec == training.get("spec")
        families = tuple(training.get("synth_prpd_families") or ()) if same else ()
        noise = tuple(training.get("synth_noise_families") or ()) if same else ()
        extra: dict[str, Any] = {}
        if noise:
            from mad.data.synthetic import resolve_noise_families

            extra["noise_families"] = resolve_noise_families(noise)
        power_freq_hz = float(training.get("power_freq_hz", 60.0))
        preset = spec.removeprefix("synth:")
        dataset = SyntheticDataset(preset, seed, n, power_freq_hz=power_freq_hz, prpd_families=families, **extra)
        return dataset, {"data": spec, "seed": seed, "windows": n, "prpd_families": list(families),
                         "noise_families": list(noise), "power_freq_hz": power_freq_hz}
    fields = {**training, "spec": spec, "materialise": False, "num_workers": 0}
    config = DataConfig.model_validate(fields)
    splits = open_datasets(spec, config, int(meta.get("seed", 42)))
    return splits.val, {"data": spec, "split": "validation (as fit carved it)", "windows": len(splits.val)}


def split_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alternate windows of each class between the statistics and the threshold halves (stratified)."""
    stats, threshold = [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        stats.append(rows[0::2])
        threshold.append(rows[1::2])
    return np.sort(np.concatenate(stats)), np.sort(np.concatenate(threshold))


def fit_calibration(logits: np.ndarray, pooled: np.ndarray, labels: np.ndarray, class_names: list[str],
                    quantile: float = DEFAULT_QUANTILE, shrinkage: float = SHRINKAGE) -> CalibrationFit:
    """Temperature on all windows; the familiarity threshold cross-fitted over two halves, its statistics
    then fitted on all windows (module docstring)."""
    if not 0 < quantile < 0.5:
        raise CalibrationError(f"quantile {quantile}: must be in (0, 0.5)")
    num_classes = len(class_names)
    half_a, half_b = split_rows(labels)
    out_of_sample = np.empty(len(labels))
    try:
        for fit_rows, score_rows in ((half_a, half_b), (half_b, half_a)):
            means, precision = fit_gaussian_statistics(pooled[fit_rows], labels[fit_rows], num_classes, shrinkage)
            out_of_sample[score_rows] = mahalanobis_familiarity(pooled[score_rows], means, precision)
        means, precision = fit_gaussian_statistics(pooled, labels, num_classes, shrinkage)
    except ValueError as exc:
        raise CalibrationError(f"familiarity statistics: {exc}") from None
    threshold = float(np.quantile(out_of_sample, quantile))
    familiarity = mahalanobis_familiarity(pooled, means, precision)  # in-sample: for the record only
    temperature = fit_temperature(logits, labels)

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    raw, calibrated = softmax(logits), softmax(logits / temperature)
    familiar = familiarity >= threshold
    report = {
        "windows": len(labels),
        "macro_f1": classification_report(labels, raw, class_names).macro_f1,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "nll_before": negative_log_likelihood(raw, labels), "nll_after": negative_log_likelihood(calibrated, labels),
        "unfamiliar_fraction_out_of_sample": float((out_of_sample < threshold).mean()),
        "unfamiliar_fraction_in_sample": float((~familiar).mean()),
        "note": "measured on the calibration windows themselves (out of sample: each half scored by statistics "
                "of the other half; in sample: by the statistics written); score a fresh test set with "
                "mad-train eval",
    }
    return CalibrationFit(temperature, means, precision, threshold, report)


def collect(model: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int,
            num_workers: int = 0) -> dict[str, np.ndarray]:
    from train.predict import predict_scores

    return predict_scores(model, dataset, device, batch_size, "both", num_workers, desc="calibrate")


def copy_checkpoint(source: str | Path, out: str | Path) -> Path:
    """Copy weights and sidecar (and nothing else: an old calibration does not travel) to `out`'s stem."""
    meta = read_sidecar(source)
    weights = verify_weights(source, meta)
    target = weights_path(out)
    if target.resolve() == weights.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, target)
    meta = {**meta, "weights_file": target.name}
    meta.pop(CALIBRATION_KEY, None)
    write_json_atomic(sidecar_path(target), meta)
    return target


def write_calibration(checkpoint: str | Path, fit: CalibrationFit, fitted_on: dict[str, Any],
                      quantile: float = DEFAULT_QUANTILE, shrinkage: float = SHRINKAGE) -> Path:
    """Companion file first, then the sidecar block that vouches for it (a crash leaves the old block or none
    pointing at a file whose sha256 no longer matches: refused at load, never silently used)."""
    meta = read_sidecar(checkpoint)
    verify_weights(checkpoint, meta)
    companion, digest = write_companion(checkpoint, torch.from_numpy(fit.class_means),
                                        torch.from_numpy(fit.precision))
    block = {
        "format": CALIBRATION_FORMAT,
        "file": companion.name,
        "sha256": digest,
        "temperature": fit.temperature,
        "familiarity": {
            "score": SCORE_MAHALANOBIS,
            "definition": SCORE_DEFINITION,
            "threshold": fit.threshold,
            "rule": f"unfamiliar when familiarity < threshold; threshold = the {quantile:g} quantile of the "
                    "cross-fitted familiarity of the calibration windows (two halves, every other window per "
                    "class, each scored by statistics of the other); statistics written: fitted on all windows",
            "shrinkage": shrinkage,
            "feature_dim": int(fit.class_means.shape[1]),
            "modalities": "both (image and signal)",
        },
        "fitted_on": fitted_on,
        "validation": fit.report,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta[CALIBRATION_KEY] = block
    path = sidecar_path(checkpoint)
    write_json_atomic(path, meta)
    return path


def calibrate(checkpoint: str | Path, *, out: str | Path | None = None, data: str | None = None,
              seed: int = CALIBRATION_SEED, n: int = DEFAULT_WINDOWS, quantile: float = DEFAULT_QUANTILE,
              batch_size: int = 32, device: str | torch.device = "cpu", num_workers: int = 0
              ) -> tuple[Path, CalibrationFit]:
    """Fit and write; `out` (a stem or .safetensors path) writes a calibrated copy instead of in place."""
    from mad.runtime import load_model

    meta = read_sidecar(checkpoint)
    dataset, fitted_on = calibration_data(meta, data=data, seed=seed, n=n)
    target = copy_checkpoint(checkpoint, out) if out is not None else weights_path(checkpoint)
    model = load_model(target, device=device)
    outputs = collect(model, dataset, torch.device(device), batch_size, num_workers)
    fit = fit_calibration(outputs["logits"], outputs["pooled"], outputs["labels"], model.mad_meta["class_names"],
                          quantile)
    fitted_on = {**fitted_on, "statistics_windows": len(outputs["labels"]), "threshold": "cross-fitted, 2 halves"}
    return write_calibration(target, fit, fitted_on, quantile), fit


__all__ = ["CALIBRATION_SEED", "CalibrationError", "CalibrationFit", "CheckpointError", "calibrate",
           "calibration_data", "copy_checkpoint", "fit_calibration", "write_calibration"]
