"""Batched inference over a dataset: class probabilities, SupCon projections, latent stages for plots."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from train.data_spec import iterate_batches


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (the mixed-precision path); plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def modality_inputs(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
                    modalities: str = "both") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Images/signals for `modalities` in {"both", "image", "signal"} (the other one passed as None)."""
    images = batch["image"].to(device, non_blocking=True) if modalities in ("both", "image") else None
    signals = batch["series"].to(device, non_blocking=True) if modalities in ("both", "signal") else None
    return images, signals


@torch.inference_mode()
def predict_probs(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 32,
                  modalities: str = "both", num_workers: int = 0, desc: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N, C) float64 and labels (N,) over the whole dataset, in order.

    Calibrated (`model.infer`) when the model carries a calibration (a calibrated checkpoint loaded by
    mad.load_model), as every deployed backend reports them; raw otherwise (training never has one)."""
    model.eval()
    calibrated = getattr(model, "calibration", None) is not None
    probs, labels = [], []
    batches = iterate_batches(dataset, np.arange(len(dataset)), batch_size, num_workers)
    for batch in tqdm(batches, total=-(-len(dataset) // batch_size), desc=desc, leave=False, disable=desc is None):
        images, signals = modality_inputs(model, batch, device, modalities)
        with autocast_for(device):
            logits = model.infer(images, signals)[0] if calibrated else model(images, signals)
        probs.append(torch.softmax(logits.float(), dim=-1).cpu().double().numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


@torch.inference_mode()
def predict_scores(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 32,
                   modalities: str = "both", num_workers: int = 0, desc: str | None = None) -> dict[str, np.ndarray]:
    """One `forward_scores` per batch over the whole dataset, in order (float64 numpy):

    "logits" (N, C) uncalibrated, "pooled" (N, D) the classifier's input, "labels" (N,) int64, and with the
    model's calibration (`model.calibration`, from mad-train calibrate) also "probs" (N, C) calibrated and
    "familiarity" (N,); without one "probs" is softmax of the raw logits and "familiarity" is absent."""
    model.eval()
    calibration = getattr(model, "calibration", None)
    rows: dict[str, list[np.ndarray]] = {"logits": [], "pooled": [], "probs": [], "familiarity": [], "labels": []}
    batches = iterate_batches(dataset, np.arange(len(dataset)), batch_size, num_workers)
    for batch in tqdm(batches, total=-(-len(dataset) // batch_size), desc=desc, leave=False, disable=desc is None):
        images, signals = modality_inputs(model, batch, device, modalities)
        with autocast_for(device):
            scores = model.forward_scores(images, signals)
        logits, pooled = scores["logits"].float(), scores["pooled"].float()
        if calibration is not None:
            calibrated, familiarity = calibration(logits, pooled)
            rows["familiarity"].append(familiarity.cpu().double().numpy())
        else:
            calibrated = logits
        rows["logits"].append(logits.cpu().double().numpy())
        rows["pooled"].append(pooled.cpu().double().numpy())
        rows["probs"].append(torch.softmax(calibrated, dim=-1).cpu().double().numpy())
        rows["labels"].append(batch["label"].numpy().astype(np.int64))
    return {key: np.concatenate(value) for key, value in rows.items() if value}


@torch.inference_mode()
def embed(model: nn.Module, dataset: Dataset, indices: np.ndarray, device: torch.device,
          batch_size: int = 32, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised SupCon projections (N, P) and labels of dataset[indices]."""
    model.eval()
    feats, labels = [], []
    for batch in iterate_batches(dataset, indices, batch_size, num_workers):
        images, signals = modality_inputs(model, batch, device)
        with autocast_for(device):
            out = model(images, signals, for_supcon=True)
        feats.append(out.float().cpu().numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(feats), np.concatenate(labels).astype(np.int64)


def nearest_centroid_predict(train_feats: np.ndarray, train_labels: np.ndarray, feats: np.ndarray,
                             num_classes: int) -> np.ndarray:
    """Cosine nearest class centroid: the validation classifier of the SupCon stage (no head trained yet)."""
    onehot = np.eye(num_classes)[train_labels]  # (N, C)
    centroids = onehot.T @ train_feats / np.maximum(onehot.sum(axis=0), 1)[:, None]
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    scores = feats @ centroids.T
    scores[:, onehot.sum(axis=0) == 0] = -np.inf  # a class absent from the probe can't be predicted
    return scores.argmax(axis=1)


@torch.inference_mode()
def latent_stages(model: nn.Module, dataset: Dataset, device: torch.device, max_windows: int = 200,
                  batch_size: int = 16) -> dict[str, np.ndarray]:
    """Mean-pooled tokens per modality before and after the flows (the paper's Figure 3).

    Returns "pre_flow"/"post_flow" (N * M, D), "modality" (N * M,) and "label" (N * M,) where M is the
    number of modalities the model uses.
    """
    model.eval()
    n = min(max_windows, len(dataset))
    out: dict[str, list[np.ndarray]] = {"pre_flow": [], "post_flow": [], "modality": [], "label": []}
    for batch in iterate_batches(dataset, np.arange(n), batch_size):
        images, signals = modality_inputs(model, batch, device)
        stages = model.forward_features(images, signals, return_stages=True)
        modality = stages["modality"].cpu()
        for m in torch.unique(modality).tolist():
            select = modality == m
            for key in ("pre_flow", "post_flow"):
                out[key].append(stages[key][:, select.to(stages[key].device)].float().mean(dim=1).cpu().numpy())
            out["modality"].append(np.full(len(batch["label"]), m))
            out["label"].append(batch["label"].numpy())
    return {key: np.concatenate(value) for key, value in out.items()}
