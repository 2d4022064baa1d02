"""Optimiser and scheduler registries."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from core.config import OptimConfig
from core.registry import Registry

OptimizerBuilder = Callable[[Iterable[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]
SchedulerBuilder = Callable[[torch.optim.Optimizer, OptimConfig, int], torch.optim.lr_scheduler.LRScheduler]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULERS: Registry[SchedulerBuilder] = Registry("scheduler")


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def warmup_steps(config: OptimConfig, total_steps: int) -> int:
    return int(round(config.warmup_ratio * total_steps))


def warmup_cosine_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of the peak lr at `step`: linear 0 -> 1 over `warmup` steps, then cosine 1 -> `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULERS.register("warmup_cosine")
def warmup_cosine(optimizer: torch.optim.Optimizer, config: OptimConfig,
                  total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule; `optim.lr` is the peak."""
    warmup = warmup_steps(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup, total_steps, config.min_lr_ratio))
