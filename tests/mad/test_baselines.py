"""The paper's baselines (Perceiver IO, CMT, CFM) and InceptionTime: built by name like MAD, the same
interface (shapes, missing modalities, heads), trained, saved, loaded, exported and costed the same way."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import mad
from mad.flops import count_macs, model_cost, parameter_counts
from mad.model import PRESETS, get_model_config
from mad.model.baselines import (
    BASELINE_PRESETS,
    CFM_SMALL,
    CMT_SMALL,
    INCEPTION_TIME,
    PERCEIVER_IO,
    BaselineModel,
)
from mad.model.baselines.inception_time import envelope_pool
from mad.runtime import load_model
from train.checkpoint import save_checkpoint
from train.config import load_config

# Small enough for unit tests (the tokenisers keep MAD_tiny's 16 image + 80 signal tokens).
TINY_TOKENS = {"patch_size": 64, "signal_token_len": 1920, "dim": 32, "heads": 2, "proj_dim": 16}
TINY = {
    "perceiver_io": PERCEIVER_IO.replace(name="perceiver_io_tiny", num_latents=8, latent_depth=1, **TINY_TOKENS),
    "cmt": CMT_SMALL.replace(name="cmt_tiny", unimodal_depth=1, cross_depth=1, **TINY_TOKENS),
    "cfm": CFM_SMALL.replace(name="cfm_tiny", unimodal_depth=1, memory_slots=4, fusion_depth=1, **TINY_TOKENS),
    "inception_time": INCEPTION_TIME.replace(name="inception_time_tiny", pool=32, filters=8, bottleneck=8, depth=3,
                                             proj_dim=16),
}
TOKEN_BASELINES = ("perceiver_io", "cmt", "cfm")


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _signals(batch: int, seed: int = 0) -> torch.Tensor:
    """Integer ADC windows: Gaussian noise on a baseline, plus sparse large pulses."""
    gen = torch.Generator().manual_seed(seed)
    x = 500 + 8 * torch.randn(batch, 20, 7680, generator=gen)
    pulses = torch.rand(batch, 20, 7680, generator=gen) < 0.002
    return (x + pulses * 600 * torch.randn(batch, 20, 7680, generator=gen)).round().to(torch.int16)


def _tiny(name: str, seed: int = 0) -> BaselineModel:
    return mad.build_model(TINY[name], seed=seed).eval()


# --- registry and configs


@pytest.mark.parametrize("name", sorted(BASELINE_PRESETS))
def test_preset_builds_by_name_and_reports_its_cost(name):
    model = mad.build_model(name, seed=0)
    assert isinstance(model, BaselineModel) and model.config.name == name
    cost = model_cost(name)
    assert cost.params["total"] == sum(p.numel() for p in model.parameters())
    assert cost.params["flows"] == 0 and cost.macs["flows"] == 0
    assert 0.3e6 < cost.params["total"] < 3e6  # MAD_small's size class (2.35 M)
    assert 0.05 < cost.gmacs < 1.1  # at most MAD_small's 1.04 GMACs: all CPU-trainable


@pytest.mark.parametrize("config", [*BASELINE_PRESETS.values(), *TINY.values()], ids=lambda c: c.name)
def test_config_dict_round_trips_with_its_family(config):
    raw = json.loads(json.dumps(dataclasses.asdict(config)))  # as a sidecar stores it (tuples become lists)
    assert raw["family"] == type(config).FAMILY
    assert get_model_config(raw) == config


def test_config_errors_name_the_field_or_family():
    with pytest.raises(ValueError, match="latnets"):
        get_model_config({**dataclasses.asdict(PERCEIVER_IO), "latnets": 3})
    with pytest.raises(ValueError, match="family 'perceiver'"):
        get_model_config({**dataclasses.asdict(PERCEIVER_IO), "family": "perceiver"})
    with pytest.raises(ValueError, match="family"):
        CMT_SMALL.replace(family="cfm")
    with pytest.raises(ValueError, match="heads"):
        CFM_SMALL.replace(heads=5)
    with pytest.raises(ValueError, match="pool"):
        INCEPTION_TIME.replace(pool=7)
    with pytest.raises(ValueError, match="kernel_sizes"):
        INCEPTION_TIME.replace(kernel_sizes=(40, 20, 10))


def test_a_dict_without_family_is_still_a_mad_config():
    """Checkpoints written before the baselines existed store MADConfig dicts without a family key."""
    config = get_model_config(dataclasses.asdict(PRESETS["mad_tiny"]))
    assert config == PRESETS["mad_tiny"]
    assert isinstance(mad.build_model(config), mad.model.MAD)


def test_baseline_configs_parse_and_build():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in BASELINE_PRESETS:
        config = load_config(root / f"{name}.yaml")
        assert config.name == name and config.stages == ("ce",)
        assert get_model_config(config.model) == BASELINE_PRESETS[name]


# --- shapes and modalities


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shapes_for_both_and_each_modality(name):
    model = _tiny(name)
    config = model.config
    inputs = [(_images(2), _signals(2)), (None, _signals(2))]
    if config.use_image:
        inputs.append((_images(2), None))
    with torch.inference_mode():
        for images, signals in inputs:
            logits = model(images, signals)
            projections = model(images, signals, for_supcon=True)
            scores = model.forward_scores(images, signals)
            assert logits.shape == (2, 5) and torch.isfinite(logits).all()
            assert projections.shape == (2, config.proj_dim)
            assert torch.allclose(projections.norm(dim=-1), torch.ones(2), atol=1e-5)
            assert scores["pooled"].shape == (2, config.dim)
            assert torch.equal(scores["logits"], logits)
    _, aux = model(_images(2), _signals(2), return_aux=True)
    assert aux == {}  # no flow, no routing: nothing for fit to add to the loss


@pytest.mark.parametrize("name", TOKEN_BASELINES)
def test_per_sample_mask_equals_dropping_the_modality(name):
    model = _tiny(name)
    images, signals = _images(3), _signals(3)
    present = torch.tensor([False, True, True])
    with torch.inference_mode():
        both, signal_only, image_only = model(images, signals), model(None, signals), model(images, None)
        masked_image = model(images, signals, image_present=present)
        masked_signal = model(images, signals, signal_present=present)
    assert torch.allclose(masked_image[0], signal_only[0], atol=1e-5)
    assert torch.allclose(masked_image[1:], both[1:], atol=1e-5)
    assert torch.allclose(masked_signal[0], image_only[0], atol=1e-5)
    assert (both[0] - signal_only[0]).abs().max() > 1e-5  # the image does change the answer


@pytest.mark.parametrize("name", TOKEN_BASELINES)
def test_bad_inputs_raise_clear_errors(name):
    model = _tiny(name)
    absent = torch.tensor([False, True])
    with pytest.raises(ValueError, match="no input"):
        model(None, None)
    with pytest.raises(ValueError, match="batch sizes"):
        model(_images(2), _signals(3))
    with pytest.raises(ValueError, match="no modality"):
        model(_images(2), _signals(2), image_present=absent, signal_present=absent)
    with pytest.raises(ValueError, match="image_present"):
        model(_images(2), _signals(2), image_present=torch.ones(3, dtype=torch.bool))


def test_single_modality_token_baseline_ignores_the_other_input():
    model = mad.build_model(TINY["cmt"].replace(use_image=False), seed=0).eval()
    assert model.image_tokenizer is None
    with torch.inference_mode():
        assert torch.equal(model(_images(1), _signals(1)), model(None, _signals(1)))


def test_inception_time_reads_the_series_alone():
    model = _tiny("inception_time")
    signals = _signals(2)
    with torch.inference_mode():
        reference = model(None, signals)
        assert torch.equal(model(_images(2), signals), reference)
        assert torch.equal(model(_images(2), signals, image_present=torch.tensor([False, True])), reference)
        # MAD's robust normalisation inside: sensor gain and baseline do not reach the network
        assert torch.allclose(model(None, signals.int() * 5 + 10_000), reference, atol=1e-4)
    with pytest.raises(ValueError, match="no input"):
        model(_images(2), None)
    with pytest.raises(ValueError, match="no modality"):
        model(None, signals, signal_present=torch.tensor([True, False]))


def test_envelope_pooling_keeps_pulse_height_and_sign():
    x = torch.zeros(1, 2, 16)
    x[0, 0, 5], x[0, 1, 9] = 7.0, -3.0
    pooled = envelope_pool(x, 8)  # (1, 4, 2): max of both rows, then min of both rows
    assert pooled.shape == (1, 4, 2)
    assert pooled[0, 0].tolist() == [7.0, 0.0] and pooled[0, 3].tolist() == [0.0, -3.0]
    assert torch.equal(envelope_pool(x, 1), x)


# --- training behaviour


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("for_supcon", [False, True], ids=["ce", "supcon"])
def test_gradients_reach_every_parameter_of_the_path(name, for_supcon):
    model = _tiny(name).train()
    out = model(_images(4), _signals(4), for_supcon=for_supcon)
    loss = out.sum() if for_supcon else F.cross_entropy(out, torch.arange(4) % 5)
    loss.backward()
    idle = model.classifier if for_supcon else model.projection_head  # the head fit freezes in this stage
    idle_params = {id(p) for p in idle.parameters()}
    for param_name, param in model.named_parameters():
        if id(param) in idle_params:
            assert param.grad is None, param_name
            continue
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_same_model_and_global_rng_untouched(name):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = _tiny(name, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b, c = _tiny(name, seed=7), _tiny(name, seed=8)
    with torch.inference_mode():
        out_a, out_b, out_c = (m(_images(2), _signals(2)) for m in (a, b, c))
    assert torch.equal(out_a, out_b)
    assert not torch.allclose(out_a, out_c)


# --- checkpoint, export, agent


def _trained_looking(name: str) -> BaselineModel:
    """Weights moved off the init (and BatchNorm statistics off 0/1), so a lost tensor would show."""
    model = _tiny(name, seed=1)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
        model.train()(_images(4), _signals(4))  # BatchNorm running statistics
    return model.eval()


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, name):
    model = _trained_looking(name)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, name=name, extra={"seed": 1})
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model_config"]["family"] == name
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.mad_meta["name"] == name and loaded.calibration is None
    images, signals = _images(2, seed=5), _signals(2, seed=5)
    with torch.inference_mode():
        assert torch.equal(loaded(images, signals), model(images, signals))
        logits, familiarity = loaded.infer(images, signals)
    assert familiarity is None and torch.equal(logits, model(images, signals))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", sorted(TINY))
def test_torchscript_export_and_the_agent_run_a_baseline(tmp_path, name):
    from agent.inference import load_classifier
    from train.export import export_torchscript

    model = _trained_looking(name)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, name=name, extra={"seed": 1})
    script = export_torchscript(load_model(path), tmp_path / f"{name}.torchscript")
    images, signals = _images(3, seed=2), _signals(3, seed=2).float()
    with torch.inference_mode():
        expected_both, expected_signal = model(images, signals), model(None, signals)
    for classifier in (load_classifier(path), load_classifier(script)):
        both = classifier.predict(images.numpy(), signals.numpy())
        signal_only = classifier.predict(None, signals.numpy())
        np.testing.assert_allclose(both, torch.softmax(expected_both, -1).numpy(), atol=1e-5)
        np.testing.assert_allclose(signal_only, torch.softmax(expected_signal, -1).numpy(), atol=1e-5)


def test_onnx_export_refuses_a_baseline_by_name():
    from train.export_onnx import ExportError, GraphCore

    with pytest.raises(ExportError, match="CMT is a baseline"):
        GraphCore(_tiny("cmt"))


# --- cost accounting


def test_counts_agree_on_cpu_and_meta():
    for name, config in TINY.items():
        model = _tiny(name)
        assert parameter_counts(model)["total"] == sum(p.numel() for p in model.parameters()), name
        assert count_macs(model) == model_cost(config).macs, name


def test_perceiver_macs_match_hand_count():
    config = TINY["perceiver_io"]
    tokens, latents, dim, hidden = 96, config.num_latents, config.dim, config.mlp_hidden

    def cross(queries: int, keys: int) -> int:  # q, kv, Q K^T + A V, out projection, MLP
        return queries * dim * dim + keys * dim * 2 * dim + 2 * queries * keys * dim + queries * dim * dim \
            + 2 * queries * dim * hidden

    self_block = latents * dim * 3 * dim + 2 * latents * latents * dim + latents * dim * dim \
        + 2 * latents * dim * hidden
    expected = cross(latents, tokens) + config.latent_depth * self_block + cross(1, latents)
    assert model_cost(config).macs["encoder"] == expected


def test_inception_macs_match_hand_count():
    config = INCEPTION_TIME
    steps, f, b = 7680 // config.pool, config.filters, config.bottleneck
    convs = b * f * sum(config.kernel_sizes)

    def module(in_channels: int) -> int:  # bottleneck, long convolutions, max-pool branch's 1x1
        return steps * (in_channels * b + convs + in_channels * f)

    shortcuts = steps * (40 * config.dim + config.dim * config.dim)
    expected = module(40) + (config.depth - 1) * module(config.dim) + shortcuts
    assert model_cost(config).macs["encoder"] == expected


# --- mad-train fit / eval, unchanged, on a baseline


@pytest.mark.slow
def test_mad_train_fit_then_eval_a_tiny_baseline(tmp_path, capsys):
    from train.cli import main

    raw = {"name": "cmt_smoke", "model": dataclasses.asdict(TINY["cmt"]), "seed": 42, "stages": ["supcon", "ce"],
           "data": {"spec": "synth:easy", "synth_train": 20, "synth_test": 10, "val_fraction": 0.25,
                    "materialise": True},
           "supcon": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "probe_windows": 10, "flow_nll_weight": 0.0},
           "ce": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "flow_nll_weight": 0.0}}
    config_path = tmp_path / "cmt_smoke.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["fit", "--config", str(config_path), "--out", str(out), "--device", "cpu"]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    sidecar = json.loads((out / "cmt_smoke.json").read_text())
    assert sidecar["stages"] == ["supcon", "ce"] and sidecar["model_config"]["family"] == "cmt"

    report = tmp_path / "eval"
    code = main(["eval", "--checkpoint", str(out / "cmt_smoke.safetensors"), "--data", "synth:easy",
                 "--test-seed", "5", "--n", "6", "--single-modality", "--out", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "both: n=6 " in printed and "signal: n=6 " in printed
    assert (report / "confusion_matrix.png").is_file()
    assert not (report / "latent_space.png").exists()  # the flows' figure: MAD only
