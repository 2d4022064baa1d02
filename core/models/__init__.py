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
from core.models.conditioning import CONDITIONING
from core.registry import Registry
from core.statistics import FoldStatistics


class ModelBuilder(Protocol):
    """(config, num_outputs, fold statistics) -> model(features, batch) -> outputs. The statistics (age range,
    word table) are optional: only age/word conditioning needs them, and says so when they are missing."""

    def __call__(self, config: Config, num_outputs: int, stats: FoldStatistics | None = None) -> nn.Module: ...


class FeaturizerBuilder(Protocol):
    """(config, fold statistics) -> featurizer(batch) -> model input, computed on the device."""

    def __call__(self, config: Config, stats: FoldStatistics | None = None) -> nn.Module: ...


def conditioning_keys(config: Config) -> set[str]:
    """The conditioning mode, and the settings of what it builds: the age row's momentum, the embeddings' size."""
    if config.features.conditioning not in CONDITIONING.names():  # check_conditioning names the choices
        return {"features.conditioning"}
    mode = CONDITIONING.get(config.features.conditioning)
    return ({"features.conditioning"} | ({"features.age_momentum"} if mode.rows else set())
            | ({"features.embed_dim"} if mode.embedding else set()))


def mask_keys(config: Config) -> set[str]:
    """SpecAugment's settings, per axis only when both the width and the count are above 0 (a mask needs both)."""
    a = config.augment
    return {f"augment.{axis}_{part}" for axis in ("time", "freq") for part in ("mask", "masks")
            if getattr(a, f"{axis}_mask") > 0 and getattr(a, f"{axis}_masks") > 0}


def common_keys(config: Config) -> set[str]:
    """What every model reads: its source, the head and whether the encoder trains; the size preset from scratch."""
    size = {"model.size"} if config.model.pretrained == "none" else set()
    return {"model.name", "model.pretrained", "model.projection_dim", "model.head", "model.dropout",
            "model.freeze_encoder"} | size | conditioning_keys(config)


def whisper_keys(config: Config) -> set[str]:
    m = config.model
    return (common_keys(config) | mask_keys(config) | {"features.n_mels", "features.n_fft", "features.hop_length",
                                                        "features.normalize", "model.pooling", "model.layers"}
            | ({"model.encoder_cache"} if m.freeze_encoder else {"model.train_positions"}))


def resnet_keys(config: Config) -> set[str]:
    """resnet50 computes its hop from the clip length (224 frames) and has no size presets, pooling or table."""
    return common_keys(config) - {"model.size"} | mask_keys(config) | {"features.n_mels", "features.n_fft",
                                                                        "features.normalize"}


def wav2vec2_keys(config: Config) -> set[str]:
    """wav2vec2 takes normalised waveforms: no log-mel, no SpecAugment, its own masked mean pooling."""
    return common_keys(config) | {"model.freeze_feature_encoder", "model.layers"}


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
    # The `features.*`, `augment.*` and `model.*` keys this model reads under a config (some only with others, e.g.
    # the age row's momentum only with rows): core.checks refuses a non-default value of any other one.
    reads: Callable[[Config], set[str]] = whisper_keys


def forward_batch(model: nn.Module, featurizer: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The one way every caller runs a model: features from the batch, then the model.
    Outputs: "logits" [B, outputs] and "embedding" [B, projection_dim]."""
    return model(featurizer(batch), batch)


MODELS: Registry[ModelSpec] = Registry("model")
MODELS.register("whisper")(ModelSpec(build=whisper.build, featurizer=whisper.featurizer, check=whisper.check,
                                     check_pretrained=whisper.check_pretrained,
                                     architecture=lambda model: model.encoder.config.to_dict(), reads=whisper_keys))
MODELS.register("wav2vec2")(ModelSpec(build=wav2vec2.build, featurizer=wav2vec2.featurizer, check=wav2vec2.check,
                                      architecture=lambda model: model.backbone.config.to_dict(),
                                      reads=wav2vec2_keys))
MODELS.register("resnet50")(ModelSpec(build=resnet.build, featurizer=resnet.featurizer, check=resnet.check,
                                      reads=resnet_keys))
