"""`mad-train experiment`: every experiment end to end on the smoke budget (tiny stand-in models, seconds),
resumption (finished cells skipped, an interrupted training continued by fit's own resume), the budgets and
the argument checks."""

import json
from pathlib import Path

import numpy as np
import pytest

import train.experiments.runner as runner
from train.cli import main
from train.experiments.base import Context
from train.experiments.budget import BUDGETS, load_budget
from train.experiments.cells import Cell, run_dir, seeds_for
from train.experiments.fig3 import latent_metrics
from train.experiments.latency import cpu_name
from train.experiments.registry import EXPERIMENTS
from train.experiments.tables import mean_std
from train.fit import fit

FIGURES = {"table2": ["confusion.png", "scores.png"], "table3": ["curves.png", "loss.png"], "table4": ["cost.png"],
           "fig3": ["latent_per_modality.png", "latent_space.png"], "fig6": ["confusion.png", "curves.png"]}
CELLS = {"table2": 3, "table3": 2, "table4": 5, "fig3": 1, "fig6": 2}


def _run(name, out, *extra):
    return main(["experiment", name, "--budget", "smoke", "--device", "cpu", "--out", str(out), *extra])


@pytest.fixture
def fit_calls(monkeypatch):
    """Every call runner makes to fit, with its keyword arguments (fit itself still runs)."""
    calls = []

    def counting_fit(config, out_dir, **kwargs):
        calls.append({"name": config.name, "out_dir": Path(out_dir), **kwargs})
        return fit(config, out_dir, **kwargs)

    monkeypatch.setattr(runner, "fit", counting_fit)
    return calls


def _check_outputs(name, out):
    table = (out / "table.md").read_text()
    assert table.startswith("# ") and any(head in table for head in ("| model |", "| recipe |", "| measure"))
    assert "mad_tiny-sized stand-ins" in table  # the smoke budget says its models are not the paper's
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == name and results["budget"]["name"] == "smoke"
    assert len(results["records"]) == CELLS[name]
    assert all(r["status"] == "done" for r in results["records"])
    for figure in FIGURES[name]:
        assert (out / figure).stat().st_size > 1000, figure
    return table, results


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table2", "table4", "fig3"])
def test_experiment_smoke_end_to_end(tmp_path, name, capsys):
    assert _run(name, tmp_path / name) == 0
    table, results = _check_outputs(name, tmp_path / name)
    assert "wrote " in capsys.readouterr().out
    record = results["records"][0]
    assert 0.0 <= record["test"]["macro_f1"] <= 1.0 and record["history"] and record["cost"]["params"] > 0
    if name == "table2":
        assert "0.9516" in table  # the paper's signal-only F1 beside ours
        assert set(results["records"][-1]["single_modality"]) == {"image", "signal"}
    if name == "table4":
        assert cpu_name() in table  # the CPU the latency was measured on
        assert all(set(r["latency"]["ms_per_window"]) == {"1", "16"} for r in results["records"])
        assert "not in the paper" in table  # InceptionTime has no published row
    if name == "fig3":
        assert set(record["latent"]) >= {"silhouette_image_before", "silhouette_signal_after", "modality_gap_after"}
        assert "figure only" in table


@pytest.mark.slow
def test_table3_resume_skips_finished_cells_and_adds_seeds(tmp_path, fit_calls, capsys):
    out = tmp_path / "t3"
    assert _run("table3", out) == 0
    _check_outputs("table3", out)
    assert len(fit_calls) == 2
    capsys.readouterr()

    assert _run("table3", out, "--resume") == 0  # nothing left to do: no training, no measuring
    assert len(fit_calls) == 2
    assert "2 finished before (skipped), 0 run now" in capsys.readouterr().out

    # A lost record whose run finished is measured again from the run, not retrained.
    next((out / "cells").glob("mad_small-seed42-*.json")).unlink()
    assert _run("table3", out, "--resume") == 0
    assert len(fit_calls) == 2
    assert "1 finished before (skipped), 1 run now" in capsys.readouterr().out

    assert _run("table3", out, "--resume", "--seeds", "2") == 0  # a second seed: only its cells train
    assert [c["name"] for c in fit_calls[2:]] == ["mad_small", "mad_base"]
    records = json.loads((out / "results.json").read_text())["records"]
    assert [r["seed"] for r in records] == [42, 42, 43, 43]
    assert " ± " in (out / "table.md").read_text()  # two seeds: mean ± std

    # Another experiment sharing --runs measures MAD_small seed 42's finished run instead of training it again.
    assert _run("fig3", tmp_path / "f3", "--runs", str(out / "runs")) == 0
    assert len(fit_calls) == 4
    assert json.loads((tmp_path / "f3" / "results.json").read_text())["records"][0]["run_dir"].startswith(str(out))


def test_a_diverged_run_is_recorded_as_failed_not_raised(tmp_path, monkeypatch, capsys):
    def diverging_fit(config, out_dir, **kwargs):
        raise FloatingPointError("ce epoch 1: training loss is not finite; lower the lr")

    monkeypatch.setattr(runner, "fit", diverging_fit)
    assert _run("table3", tmp_path / "t3") == 0
    records = json.loads((tmp_path / "t3" / "results.json").read_text())["records"]
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert "failed: ce epoch 1: training loss is not finite" in (tmp_path / "t3" / "table.md").read_text()


@pytest.mark.slow
def test_fig6_continues_an_interrupted_training_with_fits_resume(tmp_path, fit_calls):
    out = tmp_path / "f6"
    budget = load_budget("smoke")
    ctx = Context(experiment="fig6", preset="standard", budget=budget, seeds=seeds_for(1), out=out,
                  runs=out / "runs", device="cpu", show_progress=False)
    two_stage = next(c for c in EXPERIMENTS["fig6"].cells(ctx) if c.variant == "two_stage")
    assert two_stage.config.stages == ("supcon", "ce")
    interrupted = run_dir(ctx.runs, two_stage)
    assert not fit(two_stage.config, interrupted, device="cpu", stop_after_epochs=1, show_progress=False).completed

    assert _run("fig6", out) == 0
    table, results = _check_outputs("fig6", out)
    resumed = [c for c in fit_calls if c["out_dir"] == interrupted]
    assert len(resumed) == 1 and resumed[0]["resume"] == interrupted  # continued, not restarted
    stages = [row["stage"] for row in results["records"][0]["history"]]
    assert stages == ["supcon", "ce"]  # the SupCon epoch ran once
    ce_only = results["records"][1]
    assert ce_only["stages"] == ["ce"] and ce_only["config"]["ce"]["epochs"] == 3  # 1 CE + 2 views x 1 SupCon
    assert "CE only" in table and "precision Corona" in table


def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys):
    for argv, named in ((["table2", "--seeds", "0"], "--seeds"), (["table2", "--budget", "huge"], "--budget"),
                        (["table2", "--preset", "easy"], "--preset"), (["table9"], "NAME"),
                        (["fig3", "--num-workers", "-1"], "--num-workers")):
        with pytest.raises(SystemExit) as exc:
            main(["experiment", *argv, "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
        assert named in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    out = tmp_path / "started"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"name": "table2", "preset": "standard", "budget": "smoke"}))
    for argv, named in ((["table2"], "--resume"), (["table2", "--resume", "--preset", "hard"], "--preset"),
                        (["table3", "--resume"], "NAME"), (["table2", "--resume", "--budget", "cpu"], "--budget"),
                        (["table2", "--resume", "--device", "tpu"], "--device")):
        assert main(["experiment", argv[0], "--budget", "smoke", "--out", str(out), *argv[1:]]) == 2, argv
        assert named in capsys.readouterr().err, argv
    assert list((out).iterdir()) == [out / "experiment.json"]  # nothing was started


@pytest.mark.parametrize("budget_name", BUDGETS)
def test_every_budget_builds_valid_cells_for_every_experiment(budget_name, tmp_path):
    budget = load_budget(budget_name)
    for preset in ("standard", "hard"):
        ctx = Context(experiment="", preset=preset, budget=budget, seeds=seeds_for(2), out=tmp_path, runs=tmp_path)
        for name, experiment in EXPERIMENTS.items():
            cells = experiment.cells(ctx)
            assert len(cells) == 2 * CELLS[name]
            assert len({c.key for c in cells}) == len(cells)  # distinct run folders
            for cell in cells:
                if cell.config is None:
                    assert cell.skip_reason and budget_name == "cpu" and cell.role == "mad_base"
                else:
                    assert cell.config.data.spec == f"synth:{preset}" and cell.config.seed == cell.seed
    assert load_budget("cpu").skip and not load_budget("gpu").skip


def test_a_cell_is_keyed_by_its_recipe_not_by_its_worker_count(tmp_path):
    budget = load_budget("smoke")
    ctx = Context(experiment="", preset="standard", budget=budget, seeds=[42], out=tmp_path, runs=tmp_path)
    cell = EXPERIMENTS["fig3"].cells(ctx)[0]
    more_workers = cell.config.model_copy(update={"data": cell.config.data.model_copy(update={"num_workers": 3})})
    other_lr = cell.config.model_copy(update={"ce": cell.config.ce.model_copy(update={"lr": 0.5})})
    assert Cell(cell.role, "", cell.label, 42, more_workers).key == cell.key
    assert Cell(cell.role, "", cell.label, 42, other_lr).key != cell.key


def test_mean_std_and_latent_measures():
    assert mean_std([0.5]) == "0.5000" and mean_std([]) == "n/a"
    assert mean_std([0.9, 0.95, 1.0], 3) == "0.950 ± 0.050"
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 20)
    mixed = rng.normal(size=(100, 8))
    separated = mixed * 0.05 + np.eye(8)[labels] * 3
    latent = {"pre_flow": np.concatenate([mixed, mixed]), "post_flow": np.concatenate([separated, separated]),
              "modality": np.repeat([0, 1], 100), "label": np.concatenate([labels, labels])}
    measures = latent_metrics(latent)
    assert measures["silhouette_image_after"] > 0.8 > 0.1 > measures["silhouette_image_before"]
    assert measures["modality_gap_before"] == pytest.approx(0.0) == measures["modality_gap_after"]
