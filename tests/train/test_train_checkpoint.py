"""mad.load_model trusts only a verified checkpoint; TorchScript export agrees with the eager model."""

import json

import pytest
import torch

from mad import load_model
from mad.model import build_model
from mad.runtime import CheckpointError
from train.checkpoint import save_checkpoint
from train.commands import export as export_command
from train.export import TORCHSCRIPT_META_FILE


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("mad_tiny", seed=1)
    with torch.no_grad():  # non-zero everything, so flows and heads are not at their identity init
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, name="tiny", extra={"seed": 1})
    return path, model.eval()


def _windows(batch=3):
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, generator=generator)
    signals = (torch.randn(batch, 20, 7680, generator=generator) * 5 + 30).round()
    signals[:, :, ::97] += 300  # pulses
    return images, signals


def test_load_model_round_trip_with_metadata(checkpoint):
    path, model = checkpoint
    loaded = load_model(path)
    images, signals = _windows()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, signals), model(images, signals), rtol=0, atol=0)
    assert not loaded.training
    assert loaded.mad_meta["name"] == "tiny" and loaded.mad_meta["class_names"][4] == "Void"
    assert "signal" in loaded.mad_meta["preprocessing"]
    assert load_model(path.with_suffix(".json")).mad_meta["version"] == loaded.mad_meta["version"]


def test_tampered_weights_are_refused(checkpoint):
    path, _ = checkpoint
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_missing_or_garbled_sidecar_is_refused(checkpoint):
    path, _ = checkpoint
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)
    del meta["weights_sha256"]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_model(path)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="sidecar missing"):
        load_model(path)


def test_sidecar_of_another_model_config_is_refused(checkpoint):
    path, _ = checkpoint
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["model_config"]["dim"] = 64
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)


@pytest.mark.slow
def test_torchscript_export_matches_eager_for_both_and_signal_only(checkpoint, tmp_path):
    path, model = checkpoint
    out = tmp_path / "tiny.torchscript"
    args = type("Args", (), {"checkpoint": str(path), "format": "torchscript", "out": str(out)})()
    assert export_command.run(args) == 0
    extra = {TORCHSCRIPT_META_FILE: ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[TORCHSCRIPT_META_FILE])
    assert meta["name"] == "tiny" and meta["class_names"][0] == "Normal"
    assert meta["version"] == load_model(path).mad_meta["version"]
    images, signals = _windows(batch=3)  # traced at batch 2: the batch size must stay dynamic
    with torch.no_grad():
        assert (scripted(images, signals) - model(images, signals)).abs().max() < 1e-4
        assert (scripted(None, signals) - model(None, signals)).abs().max() < 1e-4
        # and the two paths differ, so the dispatcher did pick a different graph
        assert (scripted(None, signals) - scripted(images, signals)).abs().max() > 1e-6
