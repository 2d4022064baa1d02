"""Plain cross-entropy."""

from __future__ import annotations

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.statistics import FoldStatistics


class CrossEntropy(nn.Module):
    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs["logits"], batch.targets)


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    return CrossEntropy()
