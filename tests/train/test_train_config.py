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
