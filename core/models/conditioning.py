"""Age and word conditioning (`features.conditioning`): the child's age and the target word as model inputs.

Whether a sound is wrong depends on the word that was meant and on what is normal at the child's age, so the
model is told both. Three modes, by name:
- `none`: audio only.
- `rows`: the original's recipe. Two constant rows join the spectrogram after SpecAugment, which never masks them
  (a masked row would read 0, a real code): the age normalised over the fold's training age range times
  `features.age_momentum`, then the word's code `word_id / (num_words - 1)`.
  The model's input therefore has `features.n_mels + 2` rows. A pretrained Whisper keeps its checkpoint's own 80
  bands and takes the two rows as extra input channels whose weights start at zero (core/models/whisper.py); from
  scratch, 78 mels + 2 rows give the seed's 80-row layout.
- `embed`: learned embeddings (a linear layer on the normalised age, an `nn.Embedding` of the word), concatenated
  to the pooled audio features before the projection.
The age range and word table come from the fold's `FoldStatistics` (training rows only). `ConditionedHead`, the
head every model ends in, joins the embedding and, for a regressor, scales the output to the training targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError, DataError
from core.models.heads import ProjectionHead
from core.registry import Registry
from core.statistics import FoldStatistics


class CovariateCodes(nn.Module):
    """Age -> (age - min) / (max - min) over the training range; word id -> id / (num_words - 1). Buffers, so a
    saved model keeps the range it was trained with."""

    def __init__(self, age_min: float, age_max: float, num_words: int) -> None:
        super().__init__()
        self.register_buffer("age_min", torch.tensor(age_min, dtype=torch.float32))
        self.register_buffer("age_span", torch.tensor(age_max - age_min, dtype=torch.float32))
        self.register_buffer("word_span", torch.tensor(float(max(num_words - 1, 1))))
        self.num_words = num_words

    @classmethod
    def from_stats(cls, config: Config, stats: FoldStatistics | None) -> CovariateCodes:
        mode = f"features.conditioning={config.features.conditioning!r}"
        if stats is None:
            raise ConfigError(f"{mode} needs the fold statistics (age range, word table): pass `stats` to the "
                              "model's build() and featurizer()")
        if math.isnan(stats.age_min):
            raise DataError(f"{mode} needs the clips' ages, but the training rows have no numeric 'age' values "
                            "(add an age column, or use features.conditioning=none)")
        return cls(stats.age_min, stats.age_max, stats.num_words)

    def age(self, ages: torch.Tensor) -> torch.Tensor:
        """[B] normalised ages: 0 at the youngest training age, 1 at the oldest (0 for all if they are equal)."""
        span = torch.where(self.age_span > 0, self.age_span, torch.ones_like(self.age_span))
        return (ages.float() - self.age_min) / span

    def word(self, word_ids: torch.Tensor) -> torch.Tensor:
        """[B] word codes in [0, 1]."""
        return word_ids.float() / self.word_span


class ConditioningRows(nn.Module):
    """spectrogram [B, n_mels, T] -> [B, n_mels + 2, T]: an age row, then a word row, each constant over time."""

    def __init__(self, codes: CovariateCodes, age_momentum: float) -> None:
        super().__init__()
        self.codes = codes
        self.age_momentum = age_momentum

    def forward(self, spectrogram: torch.Tensor, batch: Batch) -> torch.Tensor:
        values = torch.stack([self.codes.age(batch.ages) * self.age_momentum, self.codes.word(batch.word_ids)], 1)
        rows = values.to(spectrogram.dtype)[:, :, None].expand(-1, -1, spectrogram.shape[-1])
        return torch.cat([spectrogram, rows], dim=1)


class ConditioningEmbedding(nn.Module):
    """batch -> [B, 2 * embed_dim]: a learned age embedding (linear in the normalised age) and a word embedding."""

    def __init__(self, codes: CovariateCodes, embed_dim: int) -> None:
        super().__init__()
        self.codes = codes
        self.age = nn.Linear(1, embed_dim)
        self.word = nn.Embedding(codes.num_words, embed_dim)
        self.dim = 2 * embed_dim

    def forward(self, batch: Batch) -> torch.Tensor:
        age = self.age(self.codes.age(batch.ages)[:, None])
        return torch.cat([age, self.word(batch.word_ids)], dim=-1)


class FeatureModulation(nn.Module):
    """(pooled [B, d], batch) -> pooled * (1 + scale) + shift, scale and shift [B, d] linear in the age/word
    embedding (FiLM, Perez et al. 2018): the word then changes which audio features count, not only the threshold.
    Zero-initialised, so an untrained model starts from the unmodulated features."""

    def __init__(self, covariates: ConditioningEmbedding, dim: int) -> None:
        super().__init__()
        self.covariates = covariates
        self.film = nn.Linear(covariates.dim, 2 * dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, pooled: torch.Tensor, batch: Batch) -> torch.Tensor:
        scale, shift = self.film(self.covariates(batch).to(pooled.dtype)).chunk(2, dim=-1)
        return pooled * (1 + scale) + shift


class ConditionedHead(ProjectionHead):
    """The head of every model: `ProjectionHead` over the pooled audio features, joined by the age/word embedding
    when there is one. A regressor's output is `mean + std * raw` with the training targets' mean and std, so an
    untrained model already predicts the mean and the layers learn in units of std, whatever the target's scale.
    A classifier without embedding has exactly `ProjectionHead`'s parameters and state-dict keys."""

    def __init__(self, in_dim: int, projection_dim: int, num_outputs: int, dropout: float,
                 covariates: ConditioningEmbedding | None, target_scale: tuple[float, float] | None = None,
                 modulate: bool = False) -> None:
        joined = covariates is not None and not modulate
        super().__init__(in_dim + (covariates.dim if joined else 0), projection_dim, num_outputs, dropout)
        self.covariates = covariates if joined else None
        self.modulation = FeatureModulation(covariates, in_dim) if modulate and covariates is not None else None
        self.regressor = target_scale is not None
        if target_scale is not None:
            self.register_buffer("target_mean", torch.tensor(target_scale[0], dtype=torch.float32))
            self.register_buffer("target_std", torch.tensor(target_scale[1], dtype=torch.float32))

    def forward(self, pooled: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if self.modulation is not None:
            pooled = self.modulation(pooled, batch)
        if self.covariates is not None:
            pooled = torch.cat([pooled, self.covariates(batch).to(pooled.dtype)], dim=-1)
        outputs = super().forward(pooled)
        if self.regressor:
            outputs["logits"] = self.target_mean + self.target_std * outputs["logits"]
        return outputs


@dataclass(frozen=True)
class ConditioningMode:
    extra_rows: int  # rows appended to the spectrogram
    rows: Callable[[Config, FoldStatistics | None], ConditioningRows] | None
    embedding: Callable[[Config, FoldStatistics | None], ConditioningEmbedding] | None
    modulate: bool = False  # the embedding scales and shifts the pooled features (FiLM) instead of joining them


CONDITIONING: Registry[ConditioningMode] = Registry("conditioning mode")
CONDITIONING.register("none")(ConditioningMode(extra_rows=0, rows=None, embedding=None))
CONDITIONING.register("rows")(ConditioningMode(
    extra_rows=2, embedding=None,
    rows=lambda config, stats: ConditioningRows(CovariateCodes.from_stats(config, stats),
                                                config.features.age_momentum)))
def covariate_embedding(config: Config, stats: FoldStatistics | None) -> ConditioningEmbedding:
    return ConditioningEmbedding(CovariateCodes.from_stats(config, stats), config.features.embed_dim)


CONDITIONING.register("embed")(ConditioningMode(extra_rows=0, rows=None, embedding=covariate_embedding))


CONDITIONING.register("film")(ConditioningMode(extra_rows=0, rows=None, embedding=covariate_embedding,
                                                modulate=True))


def extra_rows(config: Config) -> int:
    """Rows the conditioning adds to the spectrogram (0 or 2)."""
    return CONDITIONING.get(config.features.conditioning).extra_rows


def spectrogram_rows(config: Config, stats: FoldStatistics | None) -> ConditioningRows | None:
    """The featurizer's row appender, or None when the mode adds no rows."""
    make = CONDITIONING.get(config.features.conditioning).rows
    return make(config, stats) if make is not None else None


def target_scale(stats: FoldStatistics | None) -> tuple[float, float]:
    """(mean, std) of the training targets; (0, 1) when unknown (no statistics) or degenerate (constant)."""
    if stats is None or not math.isfinite(stats.target_mean) or not stats.target_std > 0:
        return 0.0, 1.0
    return stats.target_mean, stats.target_std


def conditioned_head(config: Config, stats: FoldStatistics | None, in_dim: int, num_outputs: int) -> ConditionedHead:
    """Projection + head for `in_dim` pooled features, with the age/word embedding when the mode asks for it and
    the target scale when the head is a regressor."""
    mode = CONDITIONING.get(config.features.conditioning)
    m = config.model
    scale = target_scale(stats) if m.head == "regressor" else None
    return ConditionedHead(in_dim, m.projection_dim, num_outputs, m.dropout,
                           mode.embedding(config, stats) if mode.embedding is not None else None, scale,
                           mode.modulate)


def check_conditioning(config: Config, takes_rows: bool, why_not: str = "") -> None:
    """Config errors common to every model: unknown mode, rows on a model without a spectrogram, bad sizes, and
    feeding the age column to a model whose target is that same column."""
    f = config.features
    CONDITIONING.check("features.conditioning", f.conditioning)
    if f.conditioning == "none":
        return
    if extra_rows(config) and not takes_rows:
        raise ConfigError(f"features.conditioning={f.conditioning!r}: {config.model.name} {why_not}; use "
                          "features.conditioning=embed")
    if f.embed_dim < 1:
        raise ConfigError(f"features.embed_dim={f.embed_dim}: must be >= 1")
    if not math.isfinite(f.age_momentum):
        raise ConfigError(f"features.age_momentum={f.age_momentum}: must be a finite number")
    if config.data.target == "age":
        raise ConfigError(f"features.conditioning={f.conditioning!r} gives the model the age column, which is the "
                          "target (data.target='age'): the model would read its answer; use "
                          "features.conditioning=none")
