"""Config: the one schema every CLI, search space and export speaks; errors must name the field at fault."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.checks import check_config
from core.config import Config, DataConfig, OptimConfig, all_keys, parse_assignment
from core.errors import ConfigError, UserError


def test_config_is_a_tree_of_dataclasses() -> None:
    """Sections are their own dataclasses, addressed by dotted keys."""
    config = Config()
    assert dataclasses.is_dataclass(config)
    assert isinstance(config.data, DataConfig)
    assert isinstance(config.optim, OptimConfig)
    assert config.get("optim.lr") == config.optim.lr
    assert "optim.lr" in all_keys() and "data.filter_words" in all_keys()
    # Sections are independent objects per Config (default_factory), not shared mutable defaults.
    other = Config()
    other.optim.lr = 123.0
    assert config.optim.lr != 123.0


def test_overrides_parse_strings_to_field_types() -> None:
    """CLI `--set` values arrive as strings and must land as the field's type."""
    config = Config().with_overrides({
        "optim.lr": "3e-4", "train.epochs": "7", "data.shuffle": "false", "model.freeze_encoder": "True",
        "data.filter_words": "rabbit, sun ,cat", "model.name": "whisper", "data.max_seconds": "1",
    })
    assert config.optim.lr == 3e-4 and type(config.optim.lr) is float
    assert config.train.epochs == 7 and type(config.train.epochs) is int
    assert config.data.shuffle is False
    assert config.model.freeze_encoder is True
    assert config.data.filter_words == ["rabbit", "sun", "cat"]
    assert config.data.max_seconds == 1.0 and type(config.data.max_seconds) is float


def test_overrides_return_a_copy() -> None:
    """A search applies each trial's overrides to one base config: the base must not change."""
    base = Config()
    changed = base.with_overrides({"optim.lr": 1.0, "data.filter_words": ["a"]})
    assert changed.optim.lr == 1.0 and changed.data.filter_words == ["a"]
    assert base.optim.lr == OptimConfig().lr and base.data.filter_words == []


def test_native_values_are_accepted_and_bad_types_rejected() -> None:
    """Search spaces pass Python values; ints for floats are fine, junk and bools-as-ints are not."""
    config = Config().with_overrides({"optim.lr": 1, "train.epochs": 4.0, "data.shuffle": False})
    assert config.optim.lr == 1.0 and config.train.epochs == 4 and type(config.train.epochs) is int
    for key, value in (("train.epochs", "four"), ("train.epochs", 2.5), ("train.epochs", True),
                       ("optim.lr", "fast"), ("data.shuffle", "maybe")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            Config().with_overrides({key: value})


def test_parse_assignment() -> None:
    assert parse_assignment(" optim.lr = 3e-4 ") == ("optim.lr", "3e-4")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("optim.lr")


def test_json_round_trip(tmp_path: Path) -> None:
    """The exported best config must load back to an equal Config."""
    config = Config().with_overrides({"optim.lr": "2.5e-4", "data.filter_words": "sun,cat", "train.epochs": 3,
                                      "data.shuffle": "no", "model.pretrained": "/x/whisper-base"})
    path = tmp_path / "config.json"
    config.to_json(path)
    assert json.loads(path.read_text())["optim"]["lr"] == 2.5e-4
    loaded = Config.from_json(path)
    assert loaded == config
    assert loaded != Config()
    assert Config.from_dict(config.to_dict()) == config


def test_from_dict_keeps_defaults_and_rejects_unknown_keys() -> None:
    partial = Config.from_dict({"optim": {"lr": 0.5}})
    assert partial.optim.lr == 0.5 and partial.train == Config().train
    with pytest.raises(ConfigError, match="optim.lrr"):
        Config.from_dict({"optim": {"lrr": 0.5}})


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*did you mean optim\.lr\?"):
        Config().with_overrides({"optim.lrr": "1"})
    with pytest.raises(ConfigError, match=r"did you mean train\.batch_size\?"):
        Config().with_overrides({"train.batchsize": "4"})
    with pytest.raises(ConfigError, match="unknown config key 'nonsense'"):
        Config().with_overrides({"nonsense": "1"})


@pytest.mark.parametrize(("key", "value"), [
    ("optim.lr", -1e-3),
    ("optim.lr", 0.0),
    ("data.test_size", 1.0),
    ("data.test_size", 1.5),
    ("data.valid_size", 0.0),
    ("data.k_fold", 0),
    ("data.max_seconds", -1.0),
    ("optim.warmup_ratio", 1.0),
    ("optim.min_lr_ratio", 1.5),
    ("model.dropout", 1.0),
    ("model.head", "mlp"),
    ("train.select", "median"),
    ("train.epochs", 0),
    ("train.precision", "fp8"),
    ("train.device", "tpu"),
    ("augment.freq_mask", 81),
    ("loss.smoothing", -1.0),
])
def test_validate_names_the_field(key: str, value: object) -> None:
    """Each out-of-range value is reported with its dotted field and the offending value."""
    config = Config().with_overrides({key: value})
    with pytest.raises(ConfigError) as caught:
        config.validate()
    assert str(caught.value).startswith(f"{key}={value!r}")


@pytest.mark.parametrize(("key", "value"), [
    ("model.name", "transformer9000"), ("loss.name", "hinge"), ("optim.name", "sgdx"),
    ("optim.scheduler", "stairs"), ("train.metric", "bleu"), ("model.size", "galactic"),
])
def test_validate_rejects_unknown_registry_names(key: str, value: str) -> None:
    config = Config().with_overrides({key: value})
    with pytest.raises(ConfigError, match=f"{key}={value!r}".replace(".", r"\.")):
        check_config(config)


def test_defaults_validate_and_errors_are_user_errors() -> None:
    """The default config is valid; a ConfigError is a UserError (CLIs exit 2 on it)."""
    assert Config().validate() == Config() == check_config(Config())
    assert issubclass(ConfigError, UserError) and ConfigError.exit_code == 2
