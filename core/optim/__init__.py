"""Optimiser and scheduler registries.

An optimiser entry builds a `torch.optim.Optimizer` from the trainable parameters. One that must re-evaluate the
loss inside its step (SAM) sets `needs_closure = True`, and the training loop then hands it a closure that redoes
the forward/backward pass. A scheduler entry says how often it is stepped: after every optimiser step (warm-up,
cosine, linear, one-cycle, constant) or once per epoch with the validation metric (reduce-on-plateau).
Each registry lives in the module of its entries (optimizers.py, schedulers.py), which therefore imports nothing
of this package: no import cycle.
"""

from __future__ import annotations

import torch

from core.optim.optimizers import OPTIMIZERS, OptimizerBuilder
from core.optim.schedulers import SCHEDULERS, SchedulerBuilder, SchedulerSpec

__all__ = ["OPTIMIZERS", "SCHEDULERS", "OptimizerBuilder", "SchedulerBuilder", "SchedulerSpec", "needs_closure"]


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimisers whose `step(closure)` recomputes the loss and gradients (SAM)."""
    return bool(getattr(optimizer, "needs_closure", False))
