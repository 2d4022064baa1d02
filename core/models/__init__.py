"""Model registry: name -> `ModelSpec` (how to build it, which input it takes, what config it accepts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.registry import Registry
from core.statistics import FoldStatistics


class ModelBuilder(Protocol):
    """(config, num_outputs, fold statistics) -> model(features, batch) -> outputs. The statistics (age range,
    word table) are optional: only age/word conditioning needs them, and says so when they are missing."""

    def __call__(self, config: Config, num_outputs: int, stats: FoldStatistics | None = None) -> nn.Module: ...


class FeaturizerBuilder(Protocol):
    """(config, fold statistics) -> featurizer(batch) -> model input, computed on the device."""

    def __call__(self, config: Config, stats: FoldStatistics | None = None) -> nn.Module: ...


@dataclass(frozen=True)
class ModelSpec:
    build: ModelBuilder
    featurizer: FeaturizerBuilder
    check: Callable[[Config], None]  # raise ConfigError for settings this model cannot take
    # Models with a Hugging Face backbone: model -> that backbone's config as a dict. A model folder saves it, and
    # `build(config, outputs, stats, architecture=it)` rebuilds the same shape (random weights, replaced by the
    # saved ones) without reading `model.pretrained` again (core/model_folder.py).
    architecture: Callable[[nn.Module], dict[str, Any]] | None = None


MODELS: Registry[ModelSpec] = Registry("model")


def forward_batch(model: nn.Module, featurizer: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The one way every caller runs a model: features from the batch, then the model.
    Outputs: "logits" [B, outputs] and "embedding" [B, projection_dim]."""
    return model(featurizer(batch), batch)

from core.models import resnet, wav2vec2, whisper  # noqa: E402,F401  (register themselves)
