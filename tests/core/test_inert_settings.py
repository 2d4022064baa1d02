"""No inert settings (issue 21, item 6): for every model and every key of `features`, `augment` and `model`, a value
away from the model's test base either changes what the model computes or how it trains (its validation outputs
after one epoch), or check_config refuses it, naming the key. E.g. model.pooling=max on wav2vec2 or resnet50 and
features.normalize=clip on wav2vec2 changed nothing and were accepted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from core.config import Config
from core.data.dataset import AudioData
from core.data.splits import Fold
from core.errors import ConfigError
from core.train import train_fold

ConfigFactory = Callable[..., Config]

BASES: dict[str, dict[str, Any]] = {
    "whisper": {},
    "wav2vec2": {"model.name": "wav2vec2"},
    "resnet50": {"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024},
}
# key -> candidate values; the first that differs from the model's base is tried
VALUES: dict[str, list[Any]] = {
    "features.n_mels": [64, 222], "features.n_fft": [512, 2048], "features.hop_length": [320],
    "features.normalize": ["clip"], "features.conditioning": ["embed"], "features.age_momentum": [0.5],
    "features.embed_dim": [8],
    "augment.time_mask": [5], "augment.time_masks": [1], "augment.freq_mask": [5], "augment.freq_masks": [1],
    "model.size": ["tiny", "base"], "model.projection_dim": [16], "model.dropout": [0.3],
    "model.freeze_encoder": [True], "model.encoder_cache": [False], "model.freeze_feature_encoder": [False],
    "model.train_positions": [True], "model.pooling": ["max"], "model.layers": ["weighted"],
}
NOT_VARIED = {  # key -> where it is tested instead
    "model.name": "the model itself", "model.pretrained": "needs a checkpoint: tests/core/test_whisper.py",
    "model.head": "needs a numeric target: tests/core/test_regression.py",
}
SECTIONS = ("features", "augment", "model")


def test_every_key_of_the_model_sections_is_covered() -> None:
    keys = {f"{section}.{f.name}" for section in SECTIONS for f in dataclasses.fields(getattr(Config(), section))}
    assert set(VALUES) | set(NOT_VARIED) == keys


def trained(config: Config, data: AudioData) -> dict[str, torch.Tensor]:
    """The weights after one epoch on 2 training clips: what the model computes and how it trained, in one."""
    fold = data.splits.folds[0]
    small = Fold(index=0, train=fold.train[:2], valid=fold.valid[:2])
    (result,) = train_fold(config.with_overrides({"train.epochs": 1, "train.batch_size": 2}), data, small)
    return result.state["model"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def base_weights() -> dict[str, dict[str, torch.Tensor]]:
    return {}


@pytest.mark.parametrize("key", sorted(VALUES))
@pytest.mark.parametrize("model", [pytest.param(name, marks=[pytest.mark.slow] if name == "resnet50" else [])
                                   for name in sorted(BASES)])
def test_a_setting_changes_the_model_or_is_refused(model: str, key: str, toy_config_factory: ConfigFactory,
                                                    toy_data: AudioData,
                                                    base_weights: dict[str, dict[str, torch.Tensor]]) -> None:
    base = toy_config_factory(**BASES[model])
    value = next(v for v in VALUES[key] if v != base.get(key))
    try:
        config = toy_config_factory(**{**BASES[model], key: value})
    except ConfigError as error:
        assert str(error).startswith(f"{key}="), str(error)  # refused, naming the key
        return
    if model not in base_weights:
        base_weights[model] = trained(base, toy_data)
    assert not same(trained(config, toy_data), base_weights[model]), (
        f"{model}: {key}={value!r} was accepted but changed nothing")
