"""Class-balanced loss (effective number of samples): a class seen n times in the fold's training split is worth
(1 - beta^n) / (1 - beta) distinct samples, so it gets weight (1 - beta) / (1 - beta^n). Rare classes weigh more,
but less than with 1/n, because extra samples of a common class are partly redundant.

Weights are normalised to sum to the number of classes present in the training split (so beta moves the balance
between classes, not the overall loss scale); a class absent from the split gets weight 0 (no training row carries
it). Applied over cross-entropy or focal loss (`loss.cb_base`); over focal, the class-balanced weights take the
place of `loss.alpha`, which is not used.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from core.config import Config
from core.losses.focal import FocalLoss
from core.statistics import FoldStatistics


def class_balanced_weights(class_counts: np.ndarray, beta: float) -> np.ndarray:
    """(1 - beta) / (1 - beta^n_c) per class, scaled to sum to the number of present classes; 0 for n_c = 0."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    raw = np.zeros(len(counts))
    raw[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    total = raw.sum()
    return (raw * present.sum() / total if total > 0 else raw).astype(np.float32)


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    """Cross-entropy is focal with gamma 0, so one weighted module serves both bases."""
    gamma = config.loss.gamma if config.loss.cb_base == "focal" else 0.0
    return FocalLoss(gamma, class_balanced_weights(stats.class_counts, config.loss.beta))
