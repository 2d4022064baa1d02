"""Model registry: name -> `ModelSpec` (how to build it, which input it takes, what config it accepts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Config, int], nn.Module]  # (config, num_outputs) -> model(features, batch) -> outputs
    featurizer: Callable[[Config], nn.Module]  # featurizer(batch) -> model input, computed on the device
    check: Callable[[Config], None]  # raise ConfigError for settings this model cannot take


MODELS: Registry[ModelSpec] = Registry("model")


def forward_batch(model: nn.Module, featurizer: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The one way every caller runs a model: features from the batch, then the model.
    Outputs: "logits" [B, outputs] and "embedding" [B, projection_dim]."""
    return model(featurizer(batch), batch)

from core.models import whisper  # noqa: E402,F401  (registers itself)
