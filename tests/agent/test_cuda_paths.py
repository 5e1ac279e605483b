"""The shipped MAD_small on a CUDA device: the agent's backends give the CPU's answers there.

Skipped without an NVIDIA GPU; run on one with `pytest -m gpu`. The model is fp32 on both devices,
so probabilities agree to float rounding (cuBLAS sums in another order), far tighter than any
alarm threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.inference import load_classifier
from mad.data.synthetic import generate_window
from train.export import export_torchscript

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mad_small.safetensors"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
    pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"shipped model {SHIPPED_MODEL} absent"),
]


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    generated = [generate_window("standard", 7, i) for i in range(10)]  # two of each class
    images = np.stack([w.image for w in generated])
    signals = np.stack([w.series for w in generated]).astype(np.float32)
    labels = np.array([w.label for w in generated])
    return images, signals, labels


def test_safetensors_model_on_cuda_matches_cpu(windows):
    images, signals, _ = windows
    cpu = load_classifier(SHIPPED_MODEL, "cpu")
    gpu = load_classifier(SHIPPED_MODEL, "cuda")
    for modality_images in (images, None):  # both modalities, then the signal-only (degraded) path
        np.testing.assert_allclose(gpu.predict(modality_images, signals), cpu.predict(modality_images, signals),
                                   atol=2e-3)


def test_torchscript_export_on_cuda_matches_eager_cpu(tmp_path, windows):
    images, signals, labels = windows
    eager = load_classifier(SHIPPED_MODEL, "cpu")
    path = export_torchscript(eager.module, tmp_path / "mad_small.pt")
    scripted = load_classifier(path, "cuda")
    expected = eager.predict(images, signals)
    np.testing.assert_allclose(scripted.predict(images, signals), expected, atol=2e-3)
    np.testing.assert_allclose(scripted.predict(None, signals), eager.predict(None, signals), atol=2e-3)
    assert (expected.argmax(axis=1) == labels).mean() >= 0.8  # the weights are the trained ones, not noise
