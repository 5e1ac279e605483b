"""TensorRT engines built from the shipped MAD_small on this GPU give the eager model's answers.

Skipped without an NVIDIA GPU and TensorRT (the gpu extra); run with `pytest -m gpu`. fp32 engines
agree to float rounding; fp16 engines to about 1e-2 in probability, with the same classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.inference import ClassifierError, load_classifier
from agent.tensorrt_classifier import engine_sidecar_path

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mad_small.safetensors"


def _tensorrt_missing() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return True
    return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
    pytest.mark.skipif(_tensorrt_missing(), reason="needs TensorRT (pip install 'mad-pd[gpu]')"),
    pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"shipped model {SHIPPED_MODEL} absent"),
]


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    from mad.data.synthetic import generate_window

    generated = [generate_window("standard", 7, i) for i in range(10)]  # two of each class
    return np.stack([w.image for w in generated]), np.stack([w.series for w in generated]).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_graph(tmp_path_factory) -> Path:
    from mad import load_model
    from train.export_onnx import export_onnx

    return export_onnx(load_model(SHIPPED_MODEL), tmp_path_factory.mktemp("trt") / "mad_small.onnx")


@pytest.fixture(scope="module")
def fp32_engine(onnx_graph) -> Path:
    from train.tensorrt_build import build_engine

    return build_engine(onnx_graph, onnx_graph.with_name("mad_small_fp32.engine"), max_batch=4, opt_batch=4)


def _compare(engine: Path, windows, atol: float) -> None:
    images, signals = windows
    trt_model, eager = load_classifier(engine, "cuda"), load_classifier(SHIPPED_MODEL, "cuda")
    assert trt_model.max_batch == 4  # 10 windows: three executions
    for batch_images in (images, None):
        got, want = trt_model.predict(batch_images, signals), eager.predict(batch_images, signals)
        assert np.abs(got - want).max() < atol, np.abs(got - want).max()
        assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_fp32_engine_matches_eager_model(fp32_engine, windows):
    _compare(fp32_engine, windows, atol=1e-3)


def test_fp16_engine_gives_the_same_classes(onnx_graph, windows):
    import tensorrt as trt

    from train.tensorrt_build import build_engine

    if not hasattr(trt.BuilderFlag, "FP16"):
        pytest.skip(f"TensorRT {trt.__version__} has no FP16 builder flag (removed in 11)")

    engine = build_engine(onnx_graph, onnx_graph.with_name("mad_small_fp16.engine"), precision="fp16",
                          max_batch=4, opt_batch=4)
    _compare(engine, windows, atol=2e-2)


def test_engine_from_another_tensorrt_or_gpu_is_refused(fp32_engine):
    sidecar = engine_sidecar_path(fp32_engine)
    original = sidecar.read_text()
    try:
        for key, value, message in (("tensorrt_version", "9.0.0", "built with TensorRT 9.0.0"),
                                    ("compute_capability", "1.0", "built for compute capability 1.0")):
            payload = json.loads(original)
            payload["engine"][key] = value
            sidecar.write_text(json.dumps(payload))
            with pytest.raises(ClassifierError, match=message):
                load_classifier(fp32_engine, "cuda")
    finally:
        sidecar.write_text(original)
