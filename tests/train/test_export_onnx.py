"""ONNX export: the graph ONNX Runtime runs (and TensorRT builds from) gives the eager model's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")

from agent.inference import ClassifierError, TorchClassifier, load_classifier
from mad import load_model
from mad.config import MAD_TINY
from mad.model import build_model
from mad.runtime.graph_io import GRAPH_META_KEY, graph_input_names
from train.checkpoint import save_checkpoint
from train.commands import export as export_command
from train.export_onnx import ExportError, GraphCore, export_onnx


def _checkpoint(tmp_path, config=MAD_TINY, name="tiny"):
    model = build_model(config, seed=1)
    with torch.no_grad():  # move off the identity init, so flows and heads matter
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    return save_checkpoint(tmp_path / f"{name}.safetensors", model, name=name, extra={"seed": 1})


def _windows(batch=3):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    signals = rng.normal(30, 5, (batch, 20, 7680)).round().astype(np.float32)
    signals[:, :, ::97] += 300  # pulses
    return images, signals


def _args(checkpoint, fmt, out, **engine):
    values = {"checkpoint": str(checkpoint), "format": fmt, "out": str(out), "precision": "fp32", "max_batch": 32,
              "opt_batch": 8, "workspace_gib": 4.0, **engine}
    return type("Args", (), values)()


def test_masked_image_equals_missing_image_in_one_batch():
    """One graph serves windows with and without a PRPD frame: image_present 0 == model(None, signals)."""
    model = build_model("mad_tiny", seed=3).eval()
    images, signals = (torch.from_numpy(a) for a in _windows(batch=3))
    present = torch.tensor([1.0, 0.0, 1.0])
    with torch.no_grad():
        out = GraphCore(model)(images.permute(0, 3, 1, 2).float() / 255.0, model.signal_preprocess(signals), present)
        with_image, without = model(images, signals), model(None, signals)
    torch.testing.assert_close(out[[0, 2]], with_image[[0, 2]], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], without[1], rtol=0, atol=1e-5)
    assert (with_image[1] - without[1]).abs().max() > 1e-4  # the image does change this sample


def test_top_k_routing_is_refused_by_name():
    with pytest.raises(ExportError, match="routing='topk'"):
        GraphCore(build_model(MAD_TINY.replace(routing="topk", num_experts=2, top_k=1)))


@pytest.mark.slow
def test_onnx_export_matches_eager_on_onnxruntime(tmp_path):
    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "tiny.onnx"
    assert export_command.run(_args(checkpoint, "onnx", out)) == 0
    onnx_model = load_classifier(out)
    eager = TorchClassifier.from_checkpoint(checkpoint)
    assert (onnx_model.name, onnx_model.version) == (eager.name, eager.version)
    images, signals = _windows(batch=3)  # exported at batch 2: the batch axis must stay dynamic
    for batch_images in (images, None):
        np.testing.assert_allclose(onnx_model.predict(batch_images, signals), eager.predict(batch_images, signals),
                                   rtol=0, atol=1e-5)
    assert np.abs(onnx_model.predict(images, signals) - onnx_model.predict(None, signals)).max() > 1e-5
    meta = onnx_model.meta
    assert meta["weights_sha256"] == json.loads(checkpoint.with_suffix(".json").read_text())["weights_sha256"]
    assert meta["signal_preprocess"] == {"spread_floor": MAD_TINY.signal_spread_floor,
                                         "compress": MAD_TINY.signal_compress}


@pytest.mark.slow
@pytest.mark.parametrize("use_image, use_signal", [(False, True), (True, False)])
def test_single_modality_models_export_with_their_inputs_only(tmp_path, use_image, use_signal):
    config = MAD_TINY.replace(name="tiny_one", use_image=use_image, use_signal=use_signal)
    checkpoint = _checkpoint(tmp_path, config, "tiny_one")
    out = export_onnx(load_model(checkpoint), tmp_path / "one.onnx")
    classifier = load_classifier(out)
    assert classifier.input_names == graph_input_names(use_image, use_signal)
    images, signals = _windows(batch=2)
    eager = TorchClassifier.from_checkpoint(checkpoint)
    np.testing.assert_allclose(classifier.predict(images, signals), eager.predict(images, signals), atol=1e-5)
    if use_image:  # an image-only model cannot answer a window without its frame
        with pytest.raises(ClassifierError, match="needs the PRPD image"):
            classifier.predict(None, signals)
    else:  # a signal-only model ignores the frame
        np.testing.assert_array_equal(classifier.predict(None, signals), classifier.predict(images, signals))


def test_onnx_files_without_metadata_or_garbled_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(ClassifierError, match="not a loadable ONNX model"):
        load_classifier(garbage)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 5])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(plain))
    with pytest.raises(ClassifierError, match=f"no {GRAPH_META_KEY} metadata"):
        load_classifier(plain)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ClassifierError, match="this onnxruntime has no CUDA provider"):
            load_classifier(plain, "cuda")


def test_engine_settings_are_checked_before_any_export(tmp_path, capsys):
    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "tiny.engine"
    assert export_command.run(_args(checkpoint, "engine", out, max_batch=8, opt_batch=16)) == 2
    assert "opt_batch=16: must be in 1..max_batch (8)" in capsys.readouterr().out
    assert not out.with_suffix(".onnx").exists()


@pytest.mark.slow
def test_engine_export_without_tensorrt_says_what_is_missing(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here; tests/agent/test_tensorrt.py builds real engines")
    checkpoint = _checkpoint(tmp_path)
    assert export_command.run(_args(checkpoint, "engine", tmp_path / "tiny.engine")) == 2
    assert "an engine build needs TensorRT" in capsys.readouterr().out
    assert (tmp_path / "tiny.onnx").is_file()  # the graph it would have built from is kept
