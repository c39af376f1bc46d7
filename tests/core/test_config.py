from pathlib import Path

import pytest

from desktop_ft.core.config import RunConfig, all_dotted_keys, field_info, load_config, save_config, validate
from desktop_ft.core.errors import ConfigError


def test_yaml_round_trip_keeps_every_field(tmp_path: Path) -> None:
    config = RunConfig().replace({"training.learning_rate": 1e-4, "method.lora_rank": 8,
                                  "data.columns": {"prompt": "question"}, "output.run_name": "x"})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_unknown_key_names_the_key_and_the_closest_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rat: 0.001\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "training.learning_rat" in message
    assert "training.learning_rate" in message
    assert str(path) in message


def test_unknown_section_suggests_a_section() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'training'"):
        RunConfig.from_dict({"trainig": {}})


def test_wrong_type_names_field_and_expected_type() -> None:
    with pytest.raises(ConfigError, match="'training.batch_size' must be a whole number"):
        RunConfig.from_dict({"training": {"batch_size": "eight"}})


def test_yaml_loose_numbers_are_coerced() -> None:
    config = RunConfig.from_dict({"training": {"learning_rate": "2e-4", "epochs": 2}})
    assert config.training.learning_rate == 2e-4 and config.training.epochs == 2.0


def test_replace_rejects_unknown_dotted_key() -> None:
    with pytest.raises(ConfigError, match="training.max_steps"):
        RunConfig().replace({"training.max_step": 3})


def test_validate_checks_choices_and_ranges() -> None:
    with pytest.raises(ConfigError, match="lr_scheduler"):
        validate(RunConfig().replace({"training.lr_scheduler": "zigzag"}))
    with pytest.raises(ConfigError, match="below its minimum"):
        validate(RunConfig().replace({"training.batch_size": 0}))


def test_every_field_has_help_text() -> None:
    for key in all_dotted_keys():
        assert len(field_info(key).metadata.get("help", "")) > 15, key


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  max_steps: 3\n bad: [\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)
