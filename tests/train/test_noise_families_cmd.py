"""`mad-train noise-families`: per-family votes on Noise windows, seen/unseen marking, the familiarity hook."""

import json
from pathlib import Path

import numpy as np
import pytest

from mad.data.synthetic import DEFAULT_NOISE_FAMILIES
from mad.model import build_model
from train.checkpoint import save_checkpoint
from train.cli import main
from train.commands.noise_families import REF_DEFAULT, REF_NORMAL, evaluate_noise_families, seen_families
from train.metrics import binary_auroc

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "mad_small.safetensors"


def test_binary_auroc_on_toy_scores():
    y = np.array([0, 0, 1, 1, 0, 1], bool)
    assert binary_auroc(y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])) == 1.0
    assert binary_auroc(y, -np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])) == 0.0
    assert binary_auroc(y, np.ones(6)) == 0.5  # ties count half
    # 6 of the 9 (positive, negative) pairs are ordered right
    assert binary_auroc(y, np.array([0.1, 0.8, 0.2, 0.9, 0.3, 0.7])) == pytest.approx(6 / 9)
    assert np.isnan(binary_auroc(np.ones(3, bool), np.arange(3.0)))
    with pytest.raises(ValueError, match="1-D"):
        binary_auroc(y, np.ones(5))


def test_seen_families_come_from_the_training_config():
    assert seen_families({}) == DEFAULT_NOISE_FAMILIES  # trained before the field existed: the default mixture
    assert seen_families({"data": {"spec": "synth:standard", "synth_noise_families": []}}) == DEFAULT_NOISE_FAMILIES
    held = seen_families({"data": {"spec": "synth:standard", "synth_noise_families": ["all", "-carrier", "train"]}})
    assert "carrier" not in held and held.count("train") == 1
    assert seen_families({"data": {"spec": "aihub:/data"}}) == ()


def _tiny(tmp_path):
    model = build_model("mad_tiny", seed=3)
    extra = {"seed": 42, "training_config": {"data": {"spec": "synth:easy", "synth_train": 10, "synth_test": 10,
                                                      "synth_seed": 0, "synth_noise_families": ["default", "ringing"]}}}
    return save_checkpoint(tmp_path / "tiny.safetensors", model, name="tiny", extra=extra)


def test_familiarity_hook_gives_an_auroc_and_the_unfamiliar_fraction(tmp_path):
    import torch

    from mad.runtime import load_model

    model = load_model(_tiny(tmp_path))
    seen = ("train", "ringing")

    def toy_score(dataset):  # a perfect toy familiarity: 1 for seen families (and the references), 0 otherwise
        familiar = dataset.family is None or dataset.family in seen
        return np.full(len(dataset), 1.0 if familiar else 0.0)

    result = evaluate_noise_families(model, ["train", "ringing", "carrier"], seen, preset="easy", seed=9, n=3,
                                     device=torch.device("cpu"), score_fn=toy_score, threshold=0.5, progress=False)
    rows = {r["family"]: r for r in result["rows"]}
    assert [r["family"] for r in result["rows"]] == ["train", "ringing", "carrier", REF_DEFAULT, REF_NORMAL]
    assert rows["carrier"]["seen"] is False and rows["ringing"]["seen"] is True
    assert rows["carrier"]["unfamiliar"] == 1.0 and rows["train"]["unfamiliar"] == 0.0
    assert result["summary"]["familiarity_auroc_unseen_vs_seen"] == 1.0
    for r in result["rows"]:
        fractions = [r[f"frac_{c}"] for c in ("normal", "noise", "surface", "corona", "void")]
        assert sum(fractions) == pytest.approx(1.0) and r["n"] == 3
        assert r["defect"] == pytest.approx(r["frac_surface"] + r["frac_corona"] + r["frac_void"])
    without = evaluate_noise_families(model, ["carrier"], seen, preset="easy", seed=9, n=2,
                                      device=torch.device("cpu"), progress=False)
    assert "familiarity_auroc_unseen_vs_seen" not in without["summary"] and "unfamiliar" not in without["rows"][0]


def test_bad_family_and_training_seed_are_refused(tmp_path, capsys):
    path = _tiny(tmp_path)
    assert main(["noise-families", "--checkpoint", str(path), "--families", "carrier,hum", "--n", "2",
                 "--out", str(tmp_path / "a")]) == 2
    assert "'hum'" in capsys.readouterr().out
    assert main(["noise-families", "--checkpoint", str(path), "--test-seed", "0", "--n", "2",
                 "--out", str(tmp_path / "b")]) == 2
    assert "training seed" in capsys.readouterr().out
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped model {SHIPPED} absent (trained separately)")
def test_end_to_end_with_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["noise-families", "--checkpoint", str(SHIPPED), "--n", "2", "--families", "converter,carrier",
                 "--batch-size", "8", "--out", str(out)]) == 0
    assert "false-alarm rate" in capsys.readouterr().out
    report = json.loads((out / "noise_families.json").read_text())
    rows = {r["family"]: r for r in report["rows"]}
    assert set(rows) == {"converter", "carrier", REF_DEFAULT, REF_NORMAL}
    assert rows["converter"]["seen"] and not rows["carrier"]["seen"]  # the shipped model: the default mixture
    assert report["seen"] == list(DEFAULT_NOISE_FAMILIES) and report["summary"]["unseen_families"] == ["carrier"]
    markdown = (out / "noise_families.md").read_text()
    assert "| `carrier` | source | **no** |" in markdown and "mad-train noise-families" in markdown
    assert (out / "noise_families.png").stat().st_size > 1000


def test_a_calibrated_model_reports_its_own_gate_and_the_gated_defect_votes(tmp_path):
    """With a calibration the report reads the model's familiarity in the same pass: unfamiliar windows
    never vote, as in the agent, so the gated defect fraction is the familiar windows' defect votes."""
    import torch

    from mad.runtime import load_model
    from tests.train.test_calibration import _hand_calibration

    path = _tiny(tmp_path)
    _hand_calibration(path)
    model = load_model(path)
    result = evaluate_noise_families(model, ["train", "carrier"], ("train",), preset="easy", seed=9, n=4,
                                     device=torch.device("cpu"), progress=False)
    for r in result["rows"]:
        assert 0.0 <= r["defect_gated"] <= r["defect"] and 0.0 <= r["unfamiliar"] <= 1.0
        assert r["defect_gated"] <= 1.0 - r["unfamiliar"] + 1e-12  # a flagged window cannot vote
    summary = result["summary"]
    assert "familiarity_auroc_unseen_vs_seen" in summary and "unseen_defect_gated_mean" in summary
