"""Model registry: name -> `ModelSpec` (how to build it, which input it takes, what config it accepts).

The models are registered here, not by their own modules: a model module then imports nothing of this package, so
the package and its modules form no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.models import resnet, wav2vec2, whisper
from core.registry import Registry
from core.statistics import FoldStatistics


class ModelBuilder(Protocol):
    """(config, num_outputs, fold statistics) -> model(features, batch) -> outputs. The statistics (age range,
    word table) are optional: only age/word conditioning needs them, and says so when they are missing."""

    def __call__(self, config: Config, num_outputs: int, stats: FoldStatistics | None = None) -> nn.Module: ...


class FeaturizerBuilder(Protocol):
    """(config, fold statistics) -> featurizer(batch) -> model input, computed on the device."""

    def __call__(self, config: Config, stats: FoldStatistics | None = None) -> nn.Module: ...


def no_pretrained_rules(config: Config) -> None:
    """For a model whose pretrained source fixes nothing beyond what `build` checks as it loads."""


@dataclass(frozen=True)
class ModelSpec:
    build: ModelBuilder
    featurizer: FeaturizerBuilder
    # Raise ConfigError for settings this model cannot take; reads the config only (core.checks.check_config).
    check: Callable[[Config], None]
    # Raise ConfigError for settings the pretrained source (`model.pretrained`) cannot take; may read its small
    # files, never its weights (core.checks.check_run, once, before training or Ray).
    check_pretrained: Callable[[Config], None] = no_pretrained_rules
    # Models with a Hugging Face backbone: model -> that backbone's config as a dict. A model folder saves it, and
    # `build(config, outputs, stats, architecture=it)` rebuilds the same shape (random weights, replaced by the
    # saved ones) without reading `model.pretrained` again (core/model_folder.py).
    architecture: Callable[[nn.Module], dict[str, Any]] | None = None


def forward_batch(model: nn.Module, featurizer: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The one way every caller runs a model: features from the batch, then the model.
    Outputs: "logits" [B, outputs] and "embedding" [B, projection_dim]."""
    return model(featurizer(batch), batch)


MODELS: Registry[ModelSpec] = Registry("model")
MODELS.register("whisper")(ModelSpec(build=whisper.build, featurizer=whisper.featurizer, check=whisper.check,
                                     check_pretrained=whisper.check_pretrained,
                                     architecture=lambda model: model.encoder.config.to_dict()))
MODELS.register("wav2vec2")(ModelSpec(build=wav2vec2.build, featurizer=wav2vec2.featurizer, check=wav2vec2.check,
                                      architecture=lambda model: model.backbone.config.to_dict()))
MODELS.register("resnet50")(ModelSpec(build=resnet.build, featurizer=resnet.featurizer, check=resnet.check))
