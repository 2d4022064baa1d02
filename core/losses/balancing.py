"""Per-word balancing loss: cross-entropy weighted by 1 / P(label | word).

Some words are almost always said right, others almost always wrong; unweighted CE then learns the word, not the
articulation. P(label | word) comes from the fold's training split (add-k smoothed); weights are scaled so that
their mean over the training rows is 1, which keeps the learning rate's meaning.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.statistics import FoldStatistics


def balancing_weights(stats: FoldStatistics, smoothing: float) -> np.ndarray:
    """[words, classes] weights 1 / P(label | word), normalised to mean 1 over the training rows."""
    probability = stats.label_given_word(smoothing)
    # With smoothing 0, a (word, label) pair absent from the training rows has P = 0. No training row carries it,
    # so its weight is never used; keep it finite (0) rather than let inf * 0 turn every weight into NaN.
    weights = np.divide(1.0, probability, out=np.zeros(probability.shape), where=probability > 0)
    counts = stats.word_label_counts
    mean = (weights * counts).sum() / max(counts.sum(), 1)
    return (weights / mean).astype(np.float32)


class BalancingLoss(nn.Module):
    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("weights", torch.from_numpy(weights))

    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        per_clip = nn.functional.cross_entropy(outputs["logits"], batch.targets, reduction="none")
        return (per_clip * self.weights[batch.word_ids, batch.targets]).mean()


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    return BalancingLoss(balancing_weights(stats, config.loss.smoothing))
