"""The MAD model: presets, shapes, missing modalities, preprocessing, training reach, cost accounting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mad.config import MAD_SMALL, MAD_TINY, PRESETS, get_config
from mad.constants import ROW_SAMPLES, WINDOW_ROWS
from mad.flops import count_macs, model_cost, parameter_counts
from mad.model import MAD, build_model
from mad.model.preprocess import SignalPreprocess


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _signals(batch: int, seed: int = 0) -> torch.Tensor:
    """Integer ADC windows: Gaussian noise on a baseline, plus sparse large pulses."""
    gen = torch.Generator().manual_seed(seed)
    x = 500 + 8 * torch.randn(batch, WINDOW_ROWS, ROW_SAMPLES, generator=gen)
    pulses = torch.rand(batch, WINDOW_ROWS, ROW_SAMPLES, generator=gen) < 0.002
    x = x + pulses * 600 * torch.randn(batch, WINDOW_ROWS, ROW_SAMPLES, generator=gen)
    return x.round().to(torch.int16)


@pytest.fixture(scope="module")
def tiny() -> MAD:
    return build_model("mad_tiny", seed=0).eval()


# --- config


def test_config_dict_round_trips_and_rejects_unknown_keys():
    for config in PRESETS.values():
        assert get_config(dataclasses.asdict(config)) == config
    with pytest.raises(ValueError, match="depht"):
        get_config({**dataclasses.asdict(MAD_TINY), "depht": 3})
    with pytest.raises(ValueError, match="mad_huge"):
        get_config("mad_huge")


@pytest.mark.parametrize(("change", "field"), [
    ({"patch_size": 33}, "patch_size"), ({"heads": 5}, "heads"), ({"routing": "sparse"}, "routing"),
    ({"use_image": False, "use_signal": False}, "use_signal"), ({"signal_token_len": 7}, "signal_token_len"),
    ({"routing": "topk", "top_k": 3}, "top_k"), ({"dropout": 1.5}, "dropout"),
    ({"signal_spread_floor": "1e-3"}, "signal_spread_floor"), ({"use_image": "yes"}, "use_image"),
    ({"dim": 64.0}, "dim"),
])
def test_config_rejects_bad_values_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        MAD_TINY.replace(**change)


def test_preset_sizes_near_the_paper():
    assert abs(model_cost("mad_small").params["total"] / 2.38e6 - 1) < 0.05
    assert abs(model_cost("mad_base").params["total"] / 75.77e6 - 1) < 0.05
    assert (MAD_SMALL.image_tokens, MAD_SMALL.signal_tokens) == (64, 400)
    base = get_config("mad_base")
    assert (base.image_tokens, base.signal_tokens, base.dim, base.depth, base.heads) == (256, 2560, 768, 4, 8)


# --- shapes


@pytest.mark.parametrize("name", ["mad_tiny", "mad_small", "mad_img_only", "mad_sig_only"])
def test_output_shapes(name):
    model = build_model(name, seed=0).eval()
    config = model.config
    images, signals = _images(1), _signals(1)
    with torch.inference_mode():
        tokens = model.forward_features(images, signals)
        logits = model.forward_head(tokens)
        projections = model.forward_head(tokens, for_supcon=True)
    assert tokens.shape == (1, config.image_tokens + config.signal_tokens, config.dim)
    assert logits.shape == (1, 5)
    assert projections.shape == (1, config.proj_dim)
    assert torch.allclose(projections.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_base_shapes_on_meta_device():
    with torch.device("meta"):
        model = MAD(get_config("mad_base"))
        stages = model.forward_features(_images(1).to("meta"), _signals(1).to("meta"), return_stages=True)
        logits = model(_images(1).to("meta"), _signals(1).to("meta"))
    assert stages["encoded"].shape == (1, 2816, 768)
    assert logits.shape == (1, 5)


def test_stages_and_aux(tiny):
    stages = tiny.forward_features(_images(2), _signals(2), return_stages=True)
    tokens = 16 + 80
    for key in ("pre_flow", "post_flow", "encoded"):
        assert stages[key].shape == (2, tokens, 32)
    assert stages["modality"].tolist() == [0] * 16 + [1] * 80
    assert torch.equal(stages["pre_flow"], stages["post_flow"])  # fresh flows are the identity
    _, aux = tiny(_images(2), _signals(2), return_aux=True)
    assert set(aux) == {"flow_nll"} and aux["flow_nll"].dim() == 0


def test_topk_model_reports_routing_losses():
    model = build_model(MAD_TINY.replace(routing="topk", top_k=1), seed=0)
    _, aux = model(_images(2), _signals(2), return_aux=True)
    assert set(aux) == {"flow_nll", "moe_load_balance", "moe_local_entropy", "moe_global_entropy"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in aux.values())


def test_float_chw_and_uint8_hwc_images_agree(tiny):
    images = _images(2)
    as_float = images.permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        assert torch.allclose(tiny(images, None), tiny(as_float, None), atol=1e-5)


@pytest.mark.parametrize(("images", "signals", "match"), [
    (torch.zeros(1, 3, 256, 256, dtype=torch.uint8), None, "uint8 images"),
    (torch.zeros(1, 256, 256, 3), None, "float images"),
    (None, torch.zeros(1, 20, 7000), "signals"),
    (None, None, "no input"),
    (_images(2), _signals(3), "batch sizes"),
])
def test_bad_inputs_raise_clear_errors(tiny, images, signals, match):
    with pytest.raises(ValueError, match=match):
        tiny(images, signals)


# --- missing modality


def test_missing_modality_gives_finite_logits(tiny):
    with torch.inference_mode():
        for images, signals in ((_images(2), None), (None, _signals(2))):
            assert torch.isfinite(tiny(images, signals)).all()
            assert tiny.forward_features(images, signals).shape[1] == (16 if signals is None else 80)


def test_per_sample_mask_equals_dropping_the_modality(tiny):
    images, signals = _images(2), _signals(2)
    image_present = torch.tensor([False, True])
    with torch.inference_mode():
        masked = tiny(images, signals, image_present=image_present)
        signal_only = tiny(None, signals)
        both = tiny(images, signals)
    assert torch.allclose(masked[0], signal_only[0], atol=1e-5)
    assert torch.allclose(masked[1], both[1], atol=1e-5)
    with pytest.raises(ValueError, match="no modality"):
        tiny(images, signals, image_present=torch.tensor([False, True]), signal_present=torch.tensor([False, True]))


def test_model_ignores_input_of_a_modality_it_lacks():
    model = build_model("mad_sig_only", seed=0).eval()
    with torch.inference_mode():
        assert torch.equal(model(_images(1), _signals(1)), model(None, _signals(1)))
    with pytest.raises(ValueError, match="no input"):
        model(_images(1), None)


# --- determinism


def test_same_seed_same_output_and_global_rng_untouched():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("mad_tiny", seed=7).eval()
    assert torch.equal(torch.rand(1), expected_next)
    b = build_model("mad_tiny", seed=7).eval()
    c = build_model("mad_tiny", seed=8).eval()
    with torch.inference_mode():
        out_a, out_b, out_c = (m(_images(2), _signals(2)) for m in (a, b, c))
    assert torch.equal(out_a, out_b)
    assert not torch.allclose(out_a, out_c)


# --- preprocessing


def test_signal_normalisation_ignores_gain_and_baseline():
    pre = SignalPreprocess(spread_floor=1e-3, compress=True)
    raw = _signals(2).float()
    reference = pre(raw)
    changed = pre(raw * 3.7 - 1200)
    assert (reference - changed).abs().max() < 1e-3
    assert reference.abs().max() > 3  # pulses still stand out above the noise floor


def test_model_logits_nearly_ignore_gain_and_baseline(tiny):
    signals = _signals(2)
    with torch.inference_mode():
        assert torch.allclose(tiny(None, signals), tiny(None, signals.int() * 5 + 10_000), atol=1e-4)


def test_constant_window_is_finite():
    pre = SignalPreprocess(spread_floor=1e-3, compress=True)
    assert torch.isfinite(pre(torch.full((1, WINDOW_ROWS, ROW_SAMPLES), 77, dtype=torch.int32))).all()


# --- training reach


@pytest.mark.parametrize("routing", ["dense", "topk"])
@pytest.mark.parametrize("for_supcon", [False, True])
def test_optimizer_step_reaches_every_trainable_parameter(routing, for_supcon):
    config = MAD_TINY.replace(routing=routing, top_k=2)
    model = build_model(config, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    unused_head = "classifier." if for_supcon else "projection_head."
    labels = torch.tensor([0, 1, 2, 3])

    def backward() -> None:
        optimizer.zero_grad()
        out, aux = model(_images(4), _signals(4), for_supcon=for_supcon, return_aux=True)
        loss = out.pow(2).mean() if for_supcon else torch.nn.functional.cross_entropy(out, labels)
        (loss + 0.01 * sum(aux.values())).backward()

    # The flows' last layers start at zero, so their earlier layers only get gradient after one step.
    backward()
    optimizer.step()
    backward()
    for name, param in model.named_parameters():
        if name.startswith(unused_head):
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


# --- cost accounting


def test_macs_match_hand_count_for_the_encoder():
    cost = model_cost("mad_small")
    tokens, dim, depth = 464, 128, 4  # 64 image + 400 signal tokens
    per_block = 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * 2 * tokens * dim * 4 * dim + tokens * dim * 2
    assert cost.macs["encoder"] == depth * per_block
    assert cost.macs["heads"] == dim * 5
    assert cost.macs["total"] == sum(cost.macs[c] for c in ("tokenisers", "flows", "encoder", "heads"))


def test_counts_agree_on_cpu_and_meta(tiny):
    assert parameter_counts(tiny)["total"] == sum(p.numel() for p in tiny.parameters())
    assert count_macs(tiny) == model_cost("mad_tiny").macs


def test_topk_macs_count_only_visited_experts():
    dense = model_cost(MAD_TINY).macs["encoder"]
    top1 = model_cost(MAD_TINY.replace(routing="topk", top_k=1)).macs["encoder"]
    tokens, dim, depth = 96, 32, 2
    one_expert = 2 * tokens * dim * 4 * dim  # fc1 + fc2 per block
    assert dense - top1 == depth * one_expert


def test_mac_counting_keeps_training_mode():
    model = build_model("mad_tiny", seed=0).train()
    count_macs(model)
    assert model.training


# Input-shape validation is baked into the trace as constants: those warnings are expected.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_dense_model_traces_for_export_and_generalises_over_batch(tiny):
    traced = torch.jit.trace(tiny, (_images(2), _signals(2)), check_trace=False)  # the TorchScript export path
    with torch.inference_mode():
        assert torch.allclose(traced(_images(3, seed=1), _signals(3, seed=1)),
                              tiny(_images(3, seed=1), _signals(3, seed=1)), atol=1e-5)


def test_empty_prpd_background_embeds_to_the_bias_alone():
    """Black (empty) PRPD cells must be zero input: otherwise the constant background swamps the
    discharge pattern in every token and the model stays at chance for hundreds of steps."""
    model = build_model("mad_tiny", seed=0)
    black = torch.zeros(2, 256, 256, 3, dtype=torch.uint8)
    with torch.no_grad():
        tokens = model.image_tokenizer.proj(model.image_preprocess(black)).flatten(2).transpose(1, 2)
    assert torch.allclose(tokens, model.image_tokenizer.proj.bias.expand_as(tokens))
