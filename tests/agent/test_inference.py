"""Classifier backends: eager module, TorchScript with embedded meta, suffix dispatch, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.inference import (
    TORCHSCRIPT_META_FILE,
    Classifier,
    ClassifierError,
    FunctionClassifier,
    TorchClassifier,
    load_classifier,
)
from mad.constants import CLASS_NAMES

SIGNALS = np.random.default_rng(0).normal(100, 5, (2, 20, 7680)).astype(np.float32)
IMAGES = np.zeros((2, 256, 256, 3), np.uint8)


class MeanModel(torch.nn.Module):
    """Logits from the signal mean and, when given, the image mean: same call signature as MAD."""

    def forward(self, images: torch.Tensor | None, signals: torch.Tensor) -> torch.Tensor:
        level = signals.mean(dim=(1, 2))
        if images is not None:
            level = level + images.float().mean(dim=(1, 2, 3))
        return torch.stack([level * 0, level * 0 + 1, level * 0, level * 0, level * 0], dim=1)


def test_torch_classifier_returns_probabilities():
    classifier = TorchClassifier(MeanModel(), name="mean", version="1")
    assert isinstance(classifier, Classifier)
    for images in (IMAGES, None):
        probabilities = classifier.predict(images, SIGNALS)
        assert probabilities.dtype == np.float32 and probabilities.shape == (2, 5)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        assert probabilities.argmax(axis=1).tolist() == [1, 1]


def test_inputs_are_checked():
    classifier = TorchClassifier(MeanModel(), name="mean", version="1")
    with pytest.raises(ClassifierError, match="signals must be"):
        classifier.predict(None, SIGNALS[:, :10])
    with pytest.raises(ClassifierError, match="images must be uint8"):
        classifier.predict(IMAGES.astype(np.float32), SIGNALS)


def test_torchscript_with_embedded_meta(tmp_path):
    path = tmp_path / "model.pt"
    meta = {"name": "mad_tiny", "version": "2026.11", "class_names": list(CLASS_NAMES), "preprocessing": {}}
    torch.jit.save(torch.jit.script(MeanModel()), str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})
    classifier = load_classifier(path)
    assert (classifier.name, classifier.version) == ("mad_tiny", "2026.11")
    np.testing.assert_allclose(
        classifier.predict(None, SIGNALS), TorchClassifier(MeanModel(), name="m", version="1").predict(None, SIGNALS)
    )


def test_torchscript_without_meta_is_refused(tmp_path):
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(MeanModel()), str(path))
    with pytest.raises(ClassifierError, match=r"no mad_meta\.json"):
        load_classifier(path)


@pytest.mark.parametrize(("embedded", "message"), [
    ("{not json", r"mad_meta\.json is not valid JSON"),
    ("[1, 2]", r"mad_meta\.json must be a JSON object, got list"),
    (json.dumps({"name": "x", "class_names": list(CLASS_NAMES)}), r"mad_meta\.json lacks version"),
])
def test_torchscript_with_bad_meta_is_refused(tmp_path, embedded, message):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(MeanModel()), str(path), _extra_files={TORCHSCRIPT_META_FILE: embedded})
    with pytest.raises(ClassifierError, match=message):
        load_classifier(path)


def test_torchscript_with_other_classes_is_refused(tmp_path):
    path = tmp_path / "model.torchscript"
    meta = {"name": "x", "version": "1", "class_names": ["a", "b", "c", "d", "e"]}
    torch.jit.save(torch.jit.script(MeanModel()), str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})
    with pytest.raises(ClassifierError, match="differ from the agent's"):
        load_classifier(path)


def test_suffix_dispatch_errors(tmp_path):
    with pytest.raises(ClassifierError, match="model file not found"):
        load_classifier(tmp_path / "model.engine")
    with pytest.raises(ClassifierError, match="model file not found"):
        load_classifier(tmp_path / "missing.safetensors")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ClassifierError, match=r"unknown model suffix '\.h5'"):
        load_classifier(tmp_path / "model.h5")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(ClassifierError, match="not a loadable TorchScript"):
        load_classifier(tmp_path / "garbage.pt")


def test_safetensors_checkpoint_via_load_model(tmp_path):
    import dataclasses

    from safetensors.torch import save_file

    import mad
    from mad.runtime.loading import sha256_file

    model = mad.build_model("mad_tiny", seed=0)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    sidecar = {
        "format": "mad-checkpoint",
        "version": 1,
        "name": "mad_tiny",
        "class_names": list(CLASS_NAMES),
        "model_config": dataclasses.asdict(model.config),
        "preprocessing": {},
        "weights_sha256": sha256_file(path),
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    classifier = load_classifier(path)
    assert classifier.name == "mad_tiny" and classifier.version == sidecar["weights_sha256"][:12]
    with torch.inference_mode():
        expected = torch.softmax(model.eval()(None, torch.from_numpy(SIGNALS)), dim=-1).numpy()
    np.testing.assert_allclose(classifier.predict(None, SIGNALS), expected, atol=1e-5)


def test_function_classifier_checks_its_output_shape():
    with pytest.raises(ClassifierError, match="returned shape"):
        FunctionClassifier(lambda images, signals: np.zeros((1, 5))).predict(None, SIGNALS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_cuda_device_matches_cpu():
    cpu = TorchClassifier(MeanModel(), name="m", version="1").predict(IMAGES, SIGNALS)
    gpu = TorchClassifier(MeanModel(), name="m", version="1", device="cuda").predict(IMAGES, SIGNALS)
    np.testing.assert_allclose(cpu, gpu, atol=1e-5)


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ClassifierError, match="no CUDA device"):
        TorchClassifier(MeanModel(), name="m", version="1", device="cuda")


def test_load_classifier_sets_torch_threads_when_asked(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    before = torch.get_num_threads()
    wanted = 3 if before != 3 else 2
    try:
        with pytest.raises(ClassifierError):
            load_classifier(path, threads=wanted)  # the thread setting applies before the suffix check
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
