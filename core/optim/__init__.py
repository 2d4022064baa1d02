"""Optimiser and scheduler registries.

An optimiser entry builds a `torch.optim.Optimizer` from the trainable parameters. One that must re-evaluate the
loss inside its step (SAM) sets `needs_closure = True`, and the training loop then hands it a closure that redoes
the forward/backward pass. A scheduler entry says how often it is stepped: after every optimiser step (warm-up,
cosine, linear, one-cycle, constant) or once per epoch with the validation metric (reduce-on-plateau).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from core.config import OptimConfig
from core.registry import Registry

OptimizerBuilder = Callable[[Iterable[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]
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


OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimisers whose `step(closure)` recomputes the loss and gradients (SAM)."""
    return bool(getattr(optimizer, "needs_closure", False))


from core.optim import optimizers, schedulers  # noqa: E402,F401  (register themselves)
