"""The learning-rate schedules by name. `optim.lr` is always the peak; the warm-up length is `warmup_ratio` of all
optimiser steps, computed from the epoch count (`train_fold` passes epochs x batches per epoch)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from core.config import OptimConfig
from core.registry import Registry

# (optimizer, config, total optimiser steps, mode of the validation metric: "max" | "min") -> scheduler
SchedulerBuilder = Callable[[torch.optim.Optimizer, OptimConfig, int, str], Any]


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build a scheduler and when to step it: `per_epoch=False` -> `step()` after every optimiser step;
    `per_epoch=True` -> `step(metric)` once per epoch with the validation metric."""

    build: SchedulerBuilder
    per_epoch: bool = False

    def __call__(self, optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                 mode: str = "max") -> Any:
        return self.build(optimizer, config, total_steps, mode)


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")


def warmup_steps(config: OptimConfig, total_steps: int) -> int:
    return int(round(config.warmup_ratio * total_steps))


def warmup_factor(step: int, warmup: int) -> float | None:
    """Linear 1/warmup -> 1 over the first `warmup` steps (the peak is reached on the last one); None after."""
    return (step + 1) / warmup if step < warmup else None


def decay_progress(step: int, warmup: int, total: int) -> float:
    """0 -> 1 over the steps after warm-up."""
    return min(1.0, (step - warmup) / max(1, total - warmup))


def warmup_cosine_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of the peak lr at `step`: linear warm-up, then cosine 1 -> `floor`."""
    rising = warmup_factor(step, warmup)
    if rising is not None:
        return rising
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * decay_progress(step, warmup, total)))


def warmup_linear_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up, then a straight line 1 -> `floor` at the last step."""
    rising = warmup_factor(step, warmup)
    if rising is not None:
        return rising
    return 1.0 - (1.0 - floor) * decay_progress(step, warmup, total)


def constant_factor(step: int, warmup: int) -> float:
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


def one_cycle_pct_start(config: OptimConfig, total_steps: int) -> float:
    """`warmup_ratio`, but at least 2 steps: OneCycleLR divides by the length of its rising phase."""
    return max(config.warmup_ratio, 2.0 / total_steps)


def _one_cycle(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int, mode: str) -> LRScheduler:
    """Cosine rise lr/25 -> lr over the warm-up, then cosine fall to `min_lr_ratio * lr`. Momentum is not cycled,
    so `optim.momentum` / Adam's betas stay what the config says."""
    # core.checks.check_run refuses fewer steps before any training starts.
    assert total_steps >= 3, f"one_cycle with {total_steps} optimiser steps passed core.checks.check_run"
    final_div = 1.0 / (ONE_CYCLE_DIV * config.min_lr_ratio) if config.min_lr_ratio > 0 else math.inf
    # Each group's own peak (LP-FT's encoder group has a smaller one); one group: optim.lr.
    return OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps,
                      pct_start=one_cycle_pct_start(config, total_steps), anneal_strategy="cos",
                      cycle_momentum=False, div_factor=ONE_CYCLE_DIV, final_div_factor=final_div)


def _reduce_on_plateau(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int,
                       mode: str) -> ReduceLROnPlateau:
    """Multiply lr by `plateau_factor` after `plateau_patience` epochs without improvement of the validation
    metric (in its own direction, `mode`). Epoch-driven, so `warmup_ratio` does not apply; without validation
    rows (final training) it is never stepped and lr stays at `optim.lr`."""
    return ReduceLROnPlateau(optimizer, mode=mode, factor=config.plateau_factor, patience=config.plateau_patience)


SCHEDULERS.register("warmup_cosine")(SchedulerSpec(_warmup_cosine))
SCHEDULERS.register("warmup_linear")(SchedulerSpec(_warmup_linear))
SCHEDULERS.register("constant")(SchedulerSpec(_constant))
SCHEDULERS.register("one_cycle")(SchedulerSpec(_one_cycle))
SCHEDULERS.register("reduce_on_plateau")(SchedulerSpec(_reduce_on_plateau, per_epoch=True))
