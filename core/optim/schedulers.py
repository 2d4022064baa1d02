"""The learning-rate schedules by name. `optim.lr` is always the peak; the warm-up length is `warmup_ratio` of all
optimiser steps, computed from the epoch count (`train_fold` passes epochs x batches per epoch).

Every per-step schedule is a function of the share of training done, step / total steps (the warm-up's length is
not rounded to whole steps): at the end of epoch e it is e / epochs whatever the steps per epoch, so final training
on all development rows holds, epoch for epoch, the learning rates the search's folds validated (the per-epoch
trajectory; within an epoch a fold has fewer, larger steps). reduce_on_plateau steps on validation scores, which
final training has not: it is not `replayable`, and final training refuses it (core.checks)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from core.config import OptimConfig
from core.registry import Registry

# (optimizer, config, total optimiser steps, mode of the validation metric: "max" | "min") -> scheduler
SchedulerBuilder = Callable[[torch.optim.Optimizer, OptimConfig, int, str], Any]


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build a scheduler and when to step it: `per_epoch=False` -> `step()` after every optimiser step;
    `per_epoch=True` -> `step(metric)` once per epoch with the validation metric. `replayable`: a run without
    validation rows (final training) follows the same per-epoch learning rates."""

    build: SchedulerBuilder
    per_epoch: bool = False
    replayable: bool = True

    def __call__(self, optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                 mode: str = "max") -> Any:
        return self.build(optimizer, config, total_steps, mode)


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")


def warmup_steps(config: OptimConfig, total_steps: int) -> float:
    """The warm-up's length in optimiser steps, not rounded: a share of training, the same in every run."""
    return config.warmup_ratio * total_steps


def warmup_factor(step: int, warmup: float) -> float | None:
    """Linear 0 -> 1 over the first `warmup` steps, step / warmup (transformers' convention; the first step at
    least 1 / warmup, not 0); None after."""
    return max(step, 1) / warmup if step < warmup else None


def decay_progress(step: int, warmup: float, total: int) -> float:
    """0 -> 1 over the steps after warm-up."""
    return min(1.0, (step - warmup) / max(1.0, total - warmup))


def cosine(start: float, end: float, share: float) -> float:
    """Half a cosine from `start` (share 0) to `end` (share 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * share))


def warmup_cosine_factor(step: int, warmup: float, total: int, floor: float) -> float:
    """Multiplier of the peak lr at `step`: linear warm-up, then cosine 1 -> `floor`."""
    rising = warmup_factor(step, warmup)
    if rising is not None:
        return rising
    return cosine(1.0, floor, decay_progress(step, warmup, total))


def warmup_linear_factor(step: int, warmup: float, total: int, floor: float) -> float:
    """Linear warm-up, then a straight line 1 -> `floor` at the last step."""
    rising = warmup_factor(step, warmup)
    if rising is not None:
        return rising
    return 1.0 - (1.0 - floor) * decay_progress(step, warmup, total)


def constant_factor(step: int, warmup: float) -> float:
    rising = warmup_factor(step, warmup)
    return 1.0 if rising is None else rising


def _warmup_cosine(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                   mode: str) -> LRScheduler:
    warmup = warmup_steps(config, total_steps)
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup, total_steps, config.min_lr_ratio))


def _warmup_linear(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                   mode: str) -> LRScheduler:
    warmup = warmup_steps(config, total_steps)
    return LambdaLR(optimizer, lambda step: warmup_linear_factor(step, warmup, total_steps, config.min_lr_ratio))


def _constant(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int, mode: str) -> LRScheduler:
    warmup = warmup_steps(config, total_steps)
    return LambdaLR(optimizer, lambda step: constant_factor(step, warmup))


ONE_CYCLE_DIV = 25.0  # one-cycle starts at lr / 25 (torch's default)


def one_cycle_factor(step: int, rise: float, total: int, floor: float) -> float:
    """Cosine 1/25 -> 1 over the first `rise` steps, then cosine 1 -> `floor` over the rest."""
    if step < rise:
        return cosine(1.0 / ONE_CYCLE_DIV, 1.0, step / rise)
    return cosine(1.0, floor, decay_progress(step, rise, total))


def _one_cycle(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int, mode: str) -> LRScheduler:
    """Cosine rise lr/25 -> lr over the warm-up, then cosine fall to `min_lr_ratio * lr`; momentum is not cycled,
    so `optim.momentum` / Adam's betas stay what the config says. Written out rather than torch's OneCycleLR, whose
    phases end at step `pct_start * total - 1`: a function of the steps per epoch, so final training's per-epoch
    learning rates would differ from the folds'."""
    rise = warmup_steps(config, total_steps)
    return LambdaLR(optimizer, lambda step: one_cycle_factor(step, rise, total_steps, config.min_lr_ratio))


def _reduce_on_plateau(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                       mode: str) -> ReduceLROnPlateau:
    """Multiply lr by `plateau_factor` after `plateau_patience` epochs without improvement of the validation
    metric (in its own direction, `mode`). Epoch-driven, so `warmup_ratio` does not apply. Without validation
    rows it would never step, so final training refuses it (not `replayable`)."""
    return ReduceLROnPlateau(optimizer, mode=mode, factor=config.plateau_factor, patience=config.plateau_patience)


SCHEDULERS.register("warmup_cosine")(SchedulerSpec(_warmup_cosine))
SCHEDULERS.register("warmup_linear")(SchedulerSpec(_warmup_linear))
SCHEDULERS.register("constant")(SchedulerSpec(_constant))
SCHEDULERS.register("one_cycle")(SchedulerSpec(_one_cycle))
SCHEDULERS.register("reduce_on_plateau")(SchedulerSpec(_reduce_on_plateau, per_epoch=True, replayable=False))
