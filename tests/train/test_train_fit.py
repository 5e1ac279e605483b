"""Short CPU runs of the two-stage loop with mad_tiny: it learns, resumes exactly, writes checkpoints."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train.config import DataConfig, parse_config
from train.data_spec import open_datasets
from train.fit import fit, lr_factor


@pytest.fixture(scope="module")
def easy_splits():
    config = DataConfig(spec="synth:easy", synth_train=60, synth_test=30, val_fraction=0.25, materialise=True)
    return open_datasets("synth:easy", config, seed=42)


@pytest.fixture(scope="module")
def small_splits():
    """Enough for bookkeeping tests (resume, ablation), not for learning."""
    config = DataConfig(spec="synth:easy", synth_train=25, synth_test=10, val_fraction=0.2, materialise=True)
    return open_datasets("synth:easy", config, seed=42)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _config(**stages):
    raw = {"name": "tiny_test", "model": "mad_tiny", "seed": 42,
           "data": {"spec": "synth:easy", "synth_train": 60, "synth_test": 30, "val_fraction": 0.25},
           "supcon": {"epochs": 1, "batch_size": 12, "lr": 1e-3, "warmup_epochs": 0.5, "probe_windows": 20},
           "ce": {"epochs": 5, "batch_size": 12, "lr": 3e-3, "warmup_epochs": 0.5}}
    for stage, fields in stages.items():
        if stage == "stages":
            raw["stages"] = fields
        else:
            raw[stage].update(fields)
    return parse_config(raw)


def test_splits_are_disjoint_and_class_balance_reported(easy_splits):
    summary = easy_splits.summary()
    assert summary["sizes"] == {"train": 45, "val": 15, "test": 30}
    assert sum(summary["class_balance"]["val"].values()) == 15
    assert min(summary["class_balance"]["val"].values()) >= 2  # stratified
    train_bytes = {easy_splits.train.series[i].numpy().tobytes() for i in range(len(easy_splits.train))}
    assert not any(easy_splits.val.series[i].numpy().tobytes() in train_bytes for i in range(len(easy_splits.val)))
    assert not any(easy_splits.test.series[i].numpy().tobytes() in train_bytes
                   for i in range(len(easy_splits.test)))


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    factors = [lr_factor(step, 100, 10, 0.1) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


@pytest.mark.slow
def test_two_stage_fit_learns_and_writes_a_loadable_checkpoint(tmp_path, easy_splits):
    result = fit(_config(), tmp_path, device="cpu", splits=easy_splits, show_progress=False)
    assert result.completed
    rows = _rows(tmp_path / "metrics.csv")
    ce = [r for r in rows if r["stage"] == "ce"]
    assert [r["stage"] for r in rows] == ["supcon"] + ["ce"] * 5
    assert 0.0 <= float(rows[0]["val_alignment"]) <= 4.0 and float(rows[0]["val_uniformity"]) <= 0.0
    assert ce[0]["val_alignment"] == ""  # the projection geometry is a SupCon-stage figure
    assert float(ce[-1]["train_loss"]) < float(ce[0]["train_loss"])  # the loss falls
    assert max(float(r["val_macro_f1"]) for r in ce) > 0.4  # chance is ~0.2 for 5 balanced classes
    assert result.test_metrics["macro_f1"] > 0.4

    meta = json.loads((tmp_path / "tiny_test.json").read_text())
    assert meta["class_names"] == ["Normal", "Noise", "Surface", "Corona", "Void"]
    assert meta["seed"] == 42 and meta["data_spec"] == "synth:easy"
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["metrics"]["test"]["macro_f1"] == pytest.approx(result.test_metrics["macro_f1"])
    from mad import load_model

    model = load_model(tmp_path / "tiny_test.safetensors")
    batch = easy_splits.test.batch(torch.arange(4))
    with torch.no_grad():
        logits = model(batch["image"], batch["series"])
    assert logits.shape == (4, 5) and not model.training
    # stage 2 started from the best SupCon weights: encoder weights moved but began there
    supcon = load_file(str(tmp_path / "stages" / "tiny_test_supcon_best.safetensors"))
    assert set(supcon) == set(model.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 3])  # inside stage 1, inside stage 2
def test_resume_reproduces_the_uninterrupted_run(tmp_path, small_splits, stop_after):
    config = _config(supcon={"epochs": 2, "batch_size": 10}, ce={"epochs": 2, "batch_size": 10})
    straight = fit(config, tmp_path / "straight", device="cpu", splits=small_splits, show_progress=False)
    first = fit(config, tmp_path / "resumed", device="cpu", splits=small_splits, show_progress=False,
                stop_after_epochs=stop_after)
    assert not first.completed
    resumed = fit(config, None, device="cpu", splits=small_splits, show_progress=False,
                  resume=tmp_path / "resumed")
    assert resumed.completed
    for name in ("state/model.safetensors", "state/optimizer.safetensors", "tiny_test.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    state_a = json.loads((tmp_path / "straight" / "state" / "state.json").read_text())
    state_b = json.loads((tmp_path / "resumed" / "state" / "state.json").read_text())
    assert state_a["progress"] == state_b["progress"] and state_a["rng"] == state_b["rng"]
    rows = _rows(tmp_path / "resumed" / "metrics.csv")
    assert len(rows) == 4  # every epoch logged once
    assert straight.test_metrics["macro_f1"] == pytest.approx(resumed.test_metrics["macro_f1"])


def test_resume_accepts_another_worker_count(tmp_path, small_splits):
    """DataLoader workers are the machine's, not the recipe's: a run may resume on another box."""
    config = _config(stages=["ce"], ce={"epochs": 2})
    fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False, stop_after_epochs=1)
    other = config.model_copy(update={"data": config.data.model_copy(update={"num_workers": 3})})
    assert fit(other, None, device="cpu", splits=small_splits, show_progress=False, resume=tmp_path).completed


def test_resume_accepts_a_run_saved_before_a_config_key_was_added(tmp_path, small_splits):
    """A run interrupted under an older release (its saved config lacks a key added since, whose default
    keeps the old behaviour) still resumes."""
    config = _config(stages=["ce"], ce={"epochs": 2})
    fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False, stop_after_epochs=1)
    state_json = tmp_path / "state" / "state.json"
    state = json.loads(state_json.read_text())
    del state["progress"]["config"]["data"]["synth_noise_families"]
    state_json.write_text(json.dumps(state))
    assert fit(config, None, device="cpu", splits=small_splits, show_progress=False, resume=tmp_path).completed


def test_resume_with_another_config_is_refused(tmp_path, small_splits):
    config = _config(stages=["ce"], ce={"epochs": 2})
    fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False, stop_after_epochs=1)
    other = _config(stages=["ce"], ce={"epochs": 3})
    with pytest.raises(ValueError, match="same training config"):
        fit(other, None, device="cpu", splits=small_splits, show_progress=False, resume=tmp_path)


def test_ce_only_ablation_skips_stage_one(tmp_path, small_splits):
    result = fit(_config(stages=["ce"], ce={"epochs": 1}), tmp_path, device="cpu", splits=small_splits,
                 show_progress=False)
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["stage"] for r in rows] == ["ce"] and result.completed
    assert not (tmp_path / "stages" / "tiny_test_supcon_best.safetensors").exists()
    assert np.isfinite(result.test_metrics["accuracy"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bf16 autocast path)")
def test_fit_runs_on_cuda_with_bf16_autocast(tmp_path, easy_splits):
    """Both stages on the GPU: SupCon with augmented, modality-masked views, then CE; weights saved as fp32."""
    result = fit(_config(supcon={"epochs": 1}, ce={"epochs": 3}), tmp_path, device="cuda", splits=easy_splits,
                 show_progress=False)
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["stage"] for r in rows] == ["supcon", "ce", "ce", "ce"] and result.completed
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[1]["train_loss"])  # it learns under bf16 autocast
    weights = load_file(str(tmp_path / "tiny_test.safetensors"))
    floats = [t for t in weights.values() if t.is_floating_point()]  # the flows' permutations are int64
    assert floats and all(t.dtype == torch.float32 for t in floats)


def test_tensorboard_events_hold_the_csv_figures(tmp_path, small_splits):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(_config(stages=["ce"], ce={"epochs": 2}), tmp_path, device="cpu", splits=small_splits,
        show_progress=False, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    rows = _rows(tmp_path / "metrics.csv")
    f1 = events.Scalars("ce/val_macro_f1")
    assert [e.step for e in f1] == [int(r["step"]) for r in rows]
    assert [e.value for e in f1] == pytest.approx([float(r["val_macro_f1"]) for r in rows], abs=1e-4)
    assert len(events.Scalars("ce/step_loss")) == int(rows[-1]["step"])  # one point per optimizer step
    assert "test/macro_f1" in events.Tags()["scalars"]


def test_tensorboard_without_the_package_fails_before_training(tmp_path, small_splits, monkeypatch):
    import builtins

    from train.fit import MissingExtraError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(MissingExtraError, match=r"mad-pd\[tensorboard\]"):
        fit(_config(stages=["ce"], ce={"epochs": 1}), tmp_path, device="cpu", splits=small_splits,
            show_progress=False, tensorboard=True)
    assert not (tmp_path / "metrics.csv").exists()  # nothing trained


def _with(config, **fields):
    raw = config.model_dump(mode="json")
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return parse_config(raw)


def test_windows_per_epoch_takes_a_new_slice_of_the_train_split_each_epoch(tmp_path, small_splits, monkeypatch):
    import train.fit as fit_module

    seen = []
    real = fit_module.iterate_batches

    def recording(dataset, indices, *args, **kwargs):
        seen.append(list(indices))
        return real(dataset, indices, *args, **kwargs)

    monkeypatch.setattr(fit_module, "iterate_batches", recording)
    config = _with(_config(stages=["ce"], ce={"epochs": 3, "batch_size": 4}), data={"train_windows_per_epoch": 8})
    fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False)
    assert [len(epoch) for epoch in seen] == [8, 8, 8]
    assert [int(r["step"]) for r in _rows(tmp_path / "metrics.csv")] == [2, 4, 6]  # 8 windows / batch 4 per epoch
    assert len({i for epoch in seen for i in epoch}) > 8  # epochs draw different windows, not the same 8
    assert all(0 <= i < len(small_splits.train) for epoch in seen for i in epoch)


def test_init_from_starts_at_the_checkpoint_and_records_it(tmp_path, small_splits):
    first = fit(_config(stages=["ce"], ce={"epochs": 1}), tmp_path / "a", device="cpu", splits=small_splits,
                show_progress=False)
    start = load_file(str(first.checkpoint))
    # an lr so small that the weights cannot move measurably: what comes out is what went in
    config = _with(_config(stages=["ce"], ce={"epochs": 1, "lr": 1e-12}), init_from=str(first.checkpoint))
    second = fit(config, tmp_path / "b", device="cpu", splits=small_splits, show_progress=False)
    end = load_file(str(second.checkpoint))
    fresh = load_file(str(fit(_config(stages=["ce"], ce={"epochs": 1, "lr": 1e-12}), tmp_path / "c", device="cpu",
                              splits=small_splits, show_progress=False).checkpoint))
    for key in start:
        assert torch.allclose(start[key], end[key], atol=1e-8), key
    assert any(not torch.allclose(start[k], fresh[k], atol=1e-4) for k in start)  # a fresh init is elsewhere
    meta = json.loads((tmp_path / "b" / "tiny_test.json").read_text())
    assert meta["init_from"]["weights_sha256"] == json.loads((tmp_path / "a" / "tiny_test.json").read_text())[
        "weights_sha256"]


def test_init_from_refuses_another_architecture_and_changed_weights(tmp_path, small_splits):
    from mad.runtime.loading import CheckpointError

    first = fit(_config(stages=["ce"], ce={"epochs": 1}), tmp_path / "a", device="cpu", splits=small_splits,
                show_progress=False)
    deeper = {**json.loads((tmp_path / "a" / "tiny_test.json").read_text())["model_config"], "depth": 3,
              "name": "tiny_deeper"}
    other = _with(_config(stages=["ce"]), model=deeper, init_from=str(first.checkpoint))
    with pytest.raises(CheckpointError, match=r"model_config differs .*\['depth', 'name'\]"):
        fit(other, tmp_path / "b", device="cpu", splits=small_splits, show_progress=False)
    weights = first.checkpoint.read_bytes()
    first.checkpoint.write_bytes(weights[:-4] + b"\0\0\0\0")
    same = _with(_config(stages=["ce"]), init_from=str(first.checkpoint))
    with pytest.raises(CheckpointError, match="sha256"):
        fit(same, tmp_path / "c", device="cpu", splits=small_splits, show_progress=False)


def test_a_new_run_refuses_a_folder_that_holds_another(tmp_path, small_splits):
    config = _config(stages=["ce"], ce={"epochs": 1})
    fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False)
    before = (tmp_path / "metrics.csv").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        fit(config, tmp_path, device="cpu", splits=small_splits, show_progress=False)
    assert (tmp_path / "metrics.csv").read_text() == before  # the old run is untouched
