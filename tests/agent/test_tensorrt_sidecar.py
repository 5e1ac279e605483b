"""TensorRT engines' sidecar checks: they run before TensorRT sees a byte, so they run anywhere.

Building and running real engines: tests/agent/test_tensorrt_gpu.py (needs a GPU and TensorRT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.inference import ClassifierError, load_classifier
from agent.tensorrt_classifier import engine_sidecar_path, read_engine_sidecar
from mad.constants import CLASS_NAMES
from mad.runtime.graph_io import ENGINE_FORMAT, GRAPH_META_KEY
from mad.runtime.loading import sha256_file


def _fake_engine(tmp_path: Path, **engine_overrides) -> Path:
    """An engine file and a sidecar as the build writes them (the bytes are not a real engine)."""
    path = tmp_path / "model.engine"
    path.write_bytes(b"engine bytes")
    meta = {"name": "mad_small", "version": "abc", "class_names": list(CLASS_NAMES),
            "model_config": {"use_image": True, "use_signal": True},
            "signal_preprocess": {"spread_floor": 1.0, "compress": True}}
    engine = {"sha256": sha256_file(path), "tensorrt_version": "10.0.0", "compute_capability": "9.0",
              "max_batch": 32, **engine_overrides}
    engine_sidecar_path(path).write_text(json.dumps({"format": ENGINE_FORMAT, "version": 1, GRAPH_META_KEY: meta,
                                                     "engine": engine}))
    return path


def test_engine_sidecar_is_read_and_its_sha256_checked(tmp_path):
    path = _fake_engine(tmp_path)
    assert engine_sidecar_path(path).name == "model.engine.json"
    assert read_engine_sidecar(path)[GRAPH_META_KEY]["name"] == "mad_small"
    path.write_bytes(b"engine bytes, changed")
    with pytest.raises(ClassifierError, match="does not match its sidecar"):
        read_engine_sidecar(path)


def test_engine_without_or_with_a_bad_sidecar_is_refused(tmp_path):
    path = _fake_engine(tmp_path)
    sidecar = engine_sidecar_path(path)
    payload = json.loads(sidecar.read_text())
    sidecar.unlink()
    with pytest.raises(ClassifierError, match=r"model\.engine\.json not found; rebuild it"):
        load_classifier(path)
    sidecar.write_text("{")
    with pytest.raises(ClassifierError, match="engine sidecar is not valid JSON"):
        load_classifier(path)
    sidecar.write_text(json.dumps({**payload, "format": "other"}))
    with pytest.raises(ClassifierError, match=f"format must be '{ENGINE_FORMAT}'"):
        load_classifier(path)
    del payload["engine"]["tensorrt_version"]
    sidecar.write_text(json.dumps(payload))
    with pytest.raises(ClassifierError, match="engine lacks tensorrt_version"):
        load_classifier(path)
    payload = json.loads(_fake_engine(tmp_path).with_name("model.engine.json").read_text())
    del payload[GRAPH_META_KEY]["class_names"]
    sidecar.write_text(json.dumps(payload))
    with pytest.raises(ClassifierError, match="mad_meta lacks class_names"):
        load_classifier(path)


def test_engine_on_a_machine_without_tensorrt_or_gpu_is_refused_clearly(tmp_path):
    path = _fake_engine(tmp_path)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ClassifierError, match="TensorRT backend needs the gpu extra"):
            load_classifier(path, "cuda")
        return
    with pytest.raises(ClassifierError, match=r"run on a GPU; set model\.device to cuda"):
        load_classifier(path, "cpu")
