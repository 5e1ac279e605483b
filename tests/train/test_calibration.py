"""`mad-train calibrate`: the sidecar block and companion file, their checks at load, and every backend
reproducing the eager model's calibrated probabilities and familiarity."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from agent.inference import ClassifierError, TorchScriptClassifier, load_classifier
from mad import load_model
from mad.model import build_model
from mad.runtime import CheckpointError
from mad.runtime.calibration import CALIBRATION_KEY, companion_path
from mad.runtime.loading import sha256_file, sidecar_path
from train.calibration import CalibrationError, CalibrationFit, calibrate, fit_calibration, write_calibration
from train.checkpoint import save_checkpoint
from train.commands import calibrate as calibrate_command
from train.export import TORCHSCRIPT_META_FILE, export_torchscript


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("mad_tiny", seed=1)
    with torch.no_grad():  # off the identity init, so flows and heads matter
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    extra = {"seed": 1, "training_config": {"data": {"spec": "synth:easy", "synth_seed": 0}}}
    return save_checkpoint(tmp_path / "tiny.safetensors", model, name="tiny", extra=extra)


def _windows(batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    signals = rng.normal(30, 5, (batch, 20, 7680)).round().astype(np.float32)
    signals[:, :, ::97] += 300  # pulses
    return images, signals


def _hand_calibration(path, temperature: float = 1.7) -> None:
    """Statistics from the model's own features of a few windows, shrunk to the identity so the familiarity
    is of order one (a random tiny model's features barely vary), written the way calibrate writes them."""
    model = load_model(path)
    images, signals = _windows(20)
    with torch.no_grad():
        scores = model.forward_scores(torch.from_numpy(images), torch.from_numpy(signals))
    labels = np.arange(20) % 5
    fit = fit_calibration(scores["logits"].double().numpy(), scores["pooled"].double().numpy(), labels,
                          model.mad_meta["class_names"], quantile=0.1, shrinkage=1.0)
    fit = CalibrationFit(temperature, fit.class_means, fit.precision, fit.threshold, fit.report)
    write_calibration(path, fit, {"data": "hand-made for a test"}, quantile=0.1, shrinkage=1.0)


def test_calibrate_writes_a_checked_block_beside_untouched_weights(checkpoint, tmp_path):
    original = json.loads(sidecar_path(checkpoint).read_text())
    sidecar, fit = calibrate(checkpoint, out=tmp_path / "calibrated" / "tiny", n=40, seed=2000)
    meta = json.loads(sidecar.read_text())
    block = meta[CALIBRATION_KEY]
    assert block["temperature"] == pytest.approx(fit.temperature) and block["familiarity"]["score"] == "mahalanobis"
    assert block["fitted_on"]["seed"] == 2000 and block["fitted_on"]["data"] == "synth:easy"
    assert block["fitted_on"]["statistics_windows"] == 40
    assert block["sha256"] == sha256_file(companion_path(sidecar))
    assert meta["weights_sha256"] == original["weights_sha256"]  # the trained weights are not rewritten
    assert CALIBRATION_KEY not in json.loads(sidecar_path(checkpoint).read_text())  # the source stays as it was
    model = load_model(sidecar)
    assert model.calibration is not None and model.calibration.threshold == pytest.approx(fit.threshold)
    assert model.mad_meta["version"] == f"{original['model_version']}+cal.{block['sha256'][:8]}"


@pytest.mark.parametrize(("seed", "why"), [(0, "training seed"), (1, "test seed"), (1000, "documented test")])
def test_a_seed_of_training_or_test_is_refused(checkpoint, seed, why):
    with pytest.raises(CalibrationError, match=why):
        calibrate(checkpoint, seed=seed, n=40)


def test_the_command_names_a_refusal_and_exits_2(checkpoint, capsys):
    args = type("Args", (), {"checkpoint": str(checkpoint), "out": None, "data": None, "n_val": 40, "seed": 0,
                             "quantile": 0.005, "batch_size": 8, "device": "cpu", "num_workers": 0})()
    assert calibrate_command.run(args) == 2
    assert "training seed" in capsys.readouterr().out


@pytest.mark.parametrize("tamper", ["companion_bytes", "sidecar_sha", "threshold", "temperature", "missing",
                                    "file_name", "score"])
def test_a_tampered_calibration_is_refused(checkpoint, tamper):
    _hand_calibration(checkpoint)
    sidecar = sidecar_path(checkpoint)
    meta = json.loads(sidecar.read_text())
    block = meta[CALIBRATION_KEY]
    if tamper == "companion_bytes":
        companion = companion_path(checkpoint)
        data = bytearray(companion.read_bytes())
        data[-1] ^= 0xFF
        companion.write_bytes(bytes(data))
        match = "sha256"
    elif tamper == "sidecar_sha":
        block["sha256"] = "0" * 64
        match = "sha256"
    elif tamper == "threshold":
        block["familiarity"]["threshold"] = None
        match = "threshold"
    elif tamper == "temperature":
        block["temperature"] = -1.0
        match = "temperature"
    elif tamper == "missing":
        companion_path(checkpoint).unlink()
        match = "calibration file missing"
    elif tamper == "file_name":
        block["file"] = "../elsewhere.safetensors"
        match = "bare file name"
    else:
        block["familiarity"]["score"] = "energy"
        match = "unknown"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match):
        load_model(checkpoint)


def test_a_checkpoint_without_calibration_runs_with_the_gate_off_and_says_so(checkpoint, caplog):
    with caplog.at_level(logging.WARNING, logger="agent.inference"):
        classifier = load_classifier(checkpoint)
    assert classifier.familiarity_threshold is None
    assert "familiarity gate is off" in caplog.text
    images, signals = _windows()
    scores = classifier.score(images, signals)
    assert scores.familiarity is None and np.allclose(scores.probabilities.sum(axis=1), 1, atol=1e-5)


def test_temperature_is_applied_once_by_the_eager_backend(checkpoint):
    _hand_calibration(checkpoint, temperature=1.7)
    model = load_model(checkpoint)
    images, signals = _windows()
    with torch.no_grad():
        raw = model(torch.from_numpy(images), torch.from_numpy(signals))
    expected = torch.softmax(raw / 1.7, dim=-1).numpy()
    assert np.abs(load_classifier(checkpoint).score(images, signals).probabilities - expected).max() < 1e-6


def _scores(classifier, images, signals):
    return classifier.score(images, signals), classifier.score(None, signals)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exports_reproduce_eager_calibrated_probs_and_familiarity(checkpoint, tmp_path, fmt):
    _hand_calibration(checkpoint)
    eager = load_classifier(checkpoint)
    images, signals = _windows(3)  # the exports were traced at batch 2: the batch axis must stay dynamic
    expected = _scores(eager, images, signals)
    assert 0 < np.abs(expected[0].familiarity).max() < 100  # of order one: the 1e-4 below is a real bound
    if fmt == "torchscript":
        path = export_torchscript(load_model(checkpoint), tmp_path / "tiny.torchscript")
    else:
        pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
        from train.export_onnx import export_onnx

        path = export_onnx(load_model(checkpoint), tmp_path / "tiny.onnx")
    classifier = load_classifier(path)
    assert classifier.familiarity_threshold == pytest.approx(eager.familiarity_threshold)
    assert classifier.version == eager.version and classifier.meta["calibration"]["applied_in_graph"] is True
    for got, want in zip(_scores(classifier, images, signals), expected, strict=True):
        assert np.abs(got.probabilities - want.probabilities).max() < 1e-4
        assert np.abs(got.familiarity - want.familiarity).max() < 1e-4


def test_torchscript_whose_metadata_disagrees_with_its_graph_is_refused(checkpoint, tmp_path):
    _hand_calibration(checkpoint)
    path = export_torchscript(load_model(checkpoint), tmp_path / "tiny.torchscript")
    extra = {TORCHSCRIPT_META_FILE: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra[TORCHSCRIPT_META_FILE])
    meta["calibration"] = None  # a calibrated graph that claims to be raw
    torch.jit.save(module, str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})
    images, signals = _windows(2)
    with pytest.raises(ClassifierError, match="not calibrated"):
        TorchScriptClassifier(path).score(images, signals)


def test_dataset_predictions_are_calibrated_for_a_calibrated_checkpoint(checkpoint):
    from mad.data.datasets import SyntheticDataset
    from train.predict import predict_probs, predict_scores

    _hand_calibration(checkpoint, temperature=1.7)
    model = load_model(checkpoint)
    dataset = SyntheticDataset("easy", 3000, 4)
    probs, labels = predict_probs(model, dataset, torch.device("cpu"), batch_size=2)
    scores = predict_scores(model, dataset, torch.device("cpu"), batch_size=2)
    expected = torch.softmax(torch.from_numpy(scores["logits"]) / 1.7, dim=-1).numpy()
    assert np.abs(probs - expected).max() < 1e-6 and np.abs(scores["probs"] - expected).max() < 1e-6
    assert scores["familiarity"].shape == (4,) and (labels == scores["labels"]).all()


def test_calibrate_then_eval_from_the_command_line(checkpoint, tmp_path, capsys):
    from train.cli import main

    calibrated = tmp_path / "cal" / "tiny.safetensors"
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--out", str(calibrated), "--n-val", "20",
                 "--batch-size", "10"]) == 0
    printed = capsys.readouterr().out
    assert "temperature T = " in printed and "threshold" in printed
    out = tmp_path / "report"
    assert main(["eval", "--checkpoint", str(calibrated), "--data", "synth:easy", "--test-seed", "5", "--n", "10",
                 "--latent-windows", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "familiarity gate: " in printed and "(T=" in printed
    report = (out / "report.md").read_text()
    assert "| inputs | ECE before | ECE after | unfamiliar |" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calibration"]["familiarity"]["score"] == "mahalanobis"
    assert metrics["familiarity_gate"]["both"]["n"] == 10
    predictions = np.load(out / "predictions.npz")
    assert predictions["familiarity"].shape == (10,) and predictions["pooled"].shape == (10, 32)
