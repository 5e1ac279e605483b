"""`mad-train eval` end to end on a small checkpoint: report, figures, and the fresh-test-seed guard."""

import json

from mad.model import build_model
from train.checkpoint import save_checkpoint
from train.cli import main


def _checkpoint(tmp_path):
    model = build_model("mad_tiny", seed=3)
    extra = {"seed": 42, "training_config": {"data": {"spec": "synth:easy", "synth_train": 10, "synth_test": 10,
                                                      "synth_seed": 0}}}
    return save_checkpoint(tmp_path / "tiny.safetensors", model, name="tiny", extra=extra)


def test_eval_writes_report_and_figures_on_a_fresh_test_seed(tmp_path, capsys):
    path = _checkpoint(tmp_path)
    out = tmp_path / "report"
    code = main(["eval", "--checkpoint", str(path), "--data", "synth:easy", "--test-seed", "5", "--n", "10",
                 "--latent-windows", "10", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "both: n=10 " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert "10" in json.dumps(metrics)  # the report counts the 10 windows it scored
    assert "confusion_matrix.png" in (out / "report.md").read_text()
    for figure in ("confusion_matrix", "roc", "reliability", "latent_space"):
        assert (out / f"{figure}.png").stat().st_size > 1000


def test_eval_refuses_the_training_seed_as_a_test_seed(tmp_path, capsys):
    path = _checkpoint(tmp_path)
    code = main(["eval", "--checkpoint", str(path), "--data", "synth:easy", "--test-seed", "0", "--n", "4",
                 "--out", str(tmp_path / "r")])
    assert code == 2
    assert "training seed" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()
