"""Measurements of a trained cell that more than one experiment could ask for."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mad.constants import CLASS_NAMES
from train.experiments.budget import LatencyPlan
from train.experiments.latency import machine_summary, matmul_peak_gflops, ms_per_window
from train.metrics import classification_report
from train.predict import predict_probs

SUMMARY_KEYS = ("n", "accuracy", "macro_f1", "macro_auc")


def single_modality_scores(model: nn.Module, dataset: Dataset, device: torch.device,
                           batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """A two-modality model scored with one input missing at test time (as `mad-train eval --single-modality`):
    what the trained multimodal model is worth when a sensor delivers only the image or only the series."""
    if not (model.config.use_image and model.config.use_signal):
        return {}
    out = {}
    for modalities in ("image", "signal"):
        probs, labels = predict_probs(model, dataset, device, batch_size, modalities=modalities)
        report = classification_report(labels, probs, CLASS_NAMES).to_dict()
        out[modalities] = {k: report[k] for k in SUMMARY_KEYS}
    return out


def latency_record(model: nn.Module, plan: LatencyPlan) -> dict[str, Any]:
    """ms per window on the CPU at each batch size of the plan, with the machine it was measured on."""
    model_cpu = model.to("cpu")
    return {"ms_per_window": {str(b): ms_per_window(model_cpu, b, plan.warmups, plan.repeats) for b in plan.batches},
            "repeats": plan.repeats, "warmups": plan.warmups, "machine": machine_summary(),
            "matmul_peak_gflops": matmul_peak_gflops()}
