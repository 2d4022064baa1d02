"""Model registry: name -> `ModelSpec` (how to build it, which input it takes, what config it accepts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from core.config import Config
from core.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Config, int], nn.Module]  # (config, num_outputs) -> module returning {"logits", "embedding"}
    featurizer: Callable[[Config], nn.Module]  # waveforms [B, samples] -> model input, on the device
    check: Callable[[Config], None]  # raise ConfigError for settings this model cannot take


MODELS: Registry[ModelSpec] = Registry("model")

from core.models import whisper  # noqa: E402,F401  (registers itself)
