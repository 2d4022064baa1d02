"""Focal loss: cross-entropy scaled by (1 - p_target)^gamma, so clips the model already gets right count less and
training time goes to the hard ones. gamma = 0 is plain cross-entropy.

`loss.alpha` (0 = off) adds a fixed class weight: alpha for the positive class (`data.positive_class`, default
the class named `abnormal`: the "foreground" of the detection papers) and 1 - alpha for every other class. The
class is named, never guessed from sorted ids. The batch loss is the plain mean of weight x focal term over the
clips (no division by the weights).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.statistics import FoldStatistics


def focal_per_clip(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """-(1 - p)^gamma log p per clip, p = softmax probability of the target, computed in float32."""
    log_p = torch.log_softmax(logits.float(), dim=-1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
    # 1 - p via expm1 stays accurate near p = 1; the floor keeps d/dp (1 - p)^gamma finite for gamma < 1 when
    # p rounds to exactly 1 (its effect on the value is below float32 resolution).
    focus = (-torch.expm1(log_p)).clamp_min(1e-12).pow(gamma)
    return -focus * log_p


def alpha_weights(alpha: float, num_classes: int, positive: int) -> np.ndarray | None:
    """Per-class weights for `loss.alpha`: alpha for class `positive`, 1 - alpha for the others; None when alpha
    is 0."""
    if alpha == 0:
        return None
    weights = np.full(num_classes, 1.0 - alpha, dtype=np.float32)
    weights[positive] = alpha
    return weights


class FocalLoss(nn.Module):
    """Mean over the batch of class_weight[target] x focal term (class weights optional)."""

    def __init__(self, gamma: float, class_weights: np.ndarray | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        weights = torch.from_numpy(np.asarray(class_weights, dtype=np.float32)) if class_weights is not None else None
        self.register_buffer("class_weights", weights)

    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        per_clip = focal_per_clip(outputs["logits"], batch.targets, self.gamma)
        if self.class_weights is not None:
            per_clip = per_clip * self.class_weights[batch.targets]
        return per_clip.mean()


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    positive = stats.positive_class(config.data.positive_class) if config.loss.alpha else 0
    return FocalLoss(config.loss.gamma, alpha_weights(config.loss.alpha, len(stats.class_counts), positive))
