"""Regression losses for `model.head=regressor` (one output against a numeric target): MSE, L1 and Huber.

MSE chases the mean and is hurt most by outliers, L1 the median; Huber is quadratic within `loss.huber_delta` of
the target and linear beyond, a searchable compromise between the two.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.statistics import FoldStatistics


class RegressionLoss(nn.Module):
    def __init__(self, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.criterion = criterion

    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        predictions = outputs["logits"].squeeze(-1).float()
        return self.criterion(predictions, batch.targets.float())


def mse(config: Config, stats: FoldStatistics) -> nn.Module:
    return RegressionLoss(nn.functional.mse_loss)


def l1(config: Config, stats: FoldStatistics) -> nn.Module:
    return RegressionLoss(nn.functional.l1_loss)


def huber(config: Config, stats: FoldStatistics) -> nn.Module:
    delta = config.loss.huber_delta
    return RegressionLoss(lambda predictions, targets: nn.functional.huber_loss(predictions, targets, delta=delta))
