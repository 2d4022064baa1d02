"""Loss registry: name -> builder(config, fold statistics) -> module(outputs, batch) -> scalar."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core.config import Config
from core.registry import Registry
from core.statistics import FoldStatistics

LossBuilder = Callable[[Config, FoldStatistics], nn.Module]
LOSSES: Registry[LossBuilder] = Registry("loss")

from core.losses import (  # noqa: E402,F401  (register themselves)
    balancing,
    class_balanced,
    contrastive,
    cross_entropy,
    difficulty,
    focal,
    regression,
)
