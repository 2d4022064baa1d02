"""Loss registry: name -> `LossSpec` (builder(config, fold statistics) -> module(outputs, batch) -> scalar, and the
task it serves).

The losses are registered here, not by their own modules: a loss module then imports nothing of this package, so
the package and its modules form no import cycle. A new loss is one builder function plus one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from core.config import Config
from core.losses import balancing, class_balanced, contrastive, cross_entropy, difficulty, focal, regression
from core.registry import CLASSIFICATION, REGRESSION, Registry
from core.statistics import FoldStatistics

LossBuilder = Callable[[Config, FoldStatistics], nn.Module]


@dataclass(frozen=True)
class LossSpec:
    build: LossBuilder
    task: str  # CLASSIFICATION (logits over the classes) or REGRESSION (one output against a numeric target)

    def __call__(self, config: Config, stats: FoldStatistics) -> nn.Module:
        return self.build(config, stats)


LOSSES: Registry[LossSpec] = Registry("loss")
for _name, _build, _task in (
    ("ce", cross_entropy.build, CLASSIFICATION),
    ("balancing", balancing.build, CLASSIFICATION),
    ("focal", focal.build, CLASSIFICATION),
    ("class_balanced", class_balanced.build, CLASSIFICATION),
    ("difficulty", difficulty.build, CLASSIFICATION),
    ("contrastive", contrastive.build, CLASSIFICATION),
    ("mse", regression.mse, REGRESSION),
    ("l1", regression.l1, REGRESSION),
    ("huber", regression.huber, REGRESSION),
):
    LOSSES.register(_name)(LossSpec(_build, _task))
