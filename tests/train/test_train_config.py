"""Training configs: every shipped YAML parses; a bad key or value is named with its file."""

from pathlib import Path

import pytest

from train.config import ConfigError, load_config, parse_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("mad_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse_and_name_a_known_model(path):
    from mad.config import get_config

    config = load_config(path)
    get_config(config.model)
    if config.init_from is None:
        assert config.name == path.stem
    else:  # a config that continues another run keeps the name of the model it refines
        assert path.stem.startswith(config.name + "_")


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nce:\n  epocs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "ce.epocs" in str(info.value) and str(path) in str(info.value)


def test_bad_value_is_named_with_the_value():
    with pytest.raises(ConfigError) as info:
        parse_config({"supcon": {"lr": -1}}, "cfg.yaml")
    assert "supcon.lr" in str(info.value) and "-1" in str(info.value)


def test_stages_must_be_supcon_ce_or_ce():
    with pytest.raises(ConfigError, match="stages"):
        parse_config({"stages": ["ce", "supcon"]})
    assert parse_config({"stages": ["ce"]}).stages == ("ce",)


def test_masking_both_modalities_always_is_refused():
    with pytest.raises(ConfigError, match="never drop both"):
        parse_config({"augment": {"drop_image_prob": 0.6, "drop_signal_prob": 0.6}})


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_synth_train_overrides_are_checked_and_named():
    config = parse_config({"data": {"spec": "synth:standard", "synth_train_overrides": {"multi_source_prob": 0.3}}})
    assert config.data.synth_train_overrides == {"multi_source_prob": 0.3}
    with pytest.raises(ConfigError, match=r"synth_train_overrides.*'intensity'"):
        parse_config({"data": {"spec": "synth:standard", "synth_train_overrides": {"intensity": 0.3}}})
    with pytest.raises(ConfigError, match="synth: specs only"):
        parse_config({"data": {"spec": "data.h5", "synth_train_overrides": {"multi_source_prob": 0.3}}})


def test_synth_train_overrides_change_train_windows_not_test_windows():
    import numpy as np

    from mad.data.synthetic import generate_window
    from train.data_spec import DataSpecError, open_datasets

    config = parse_config({"data": {"spec": "synth:standard", "synth_train": 20, "synth_test": 10,
                                    "val_fraction": 0.25, "synth_train_overrides": {"multi_source_prob": 1.0}}})
    splits = open_datasets("synth:standard", config.data)
    defects = [i for i in range(len(splits.train)) if int(splits.train[i]["label"]) in (2, 3, 4)]
    assert defects
    for i in defects:  # every training defect window now carries a Noise-strength source
        index = int(splits.train[i]["index"])
        assert generate_window(splits.train.dataset.preset, 0, index).params["multi_source"]
    plain = generate_window("standard", 1, 3)
    np.testing.assert_array_equal(splits.test[3]["series"].numpy(), plain.series)
    with pytest.raises(DataSpecError, match="synth: specs only"):  # --data may swap the spec after parsing
        open_datasets("other.h5", config.data)


def test_fit_cli_names_a_negative_worker_count(tmp_path, capsys):
    from train.cli import main

    assert main(["fit", "--config", str(CONFIGS[0]), "--num-workers", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "--num-workers must be >= 0, got -1" in capsys.readouterr().out
