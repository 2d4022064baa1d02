"""The optimisers by name: SGD, Adam, AdamW, and SAM around any of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from core.config import OptimConfig
from core.optim.sam import SAM
from core.registry import Registry

OptimizerBuilder = Callable[[Iterable[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (AdamW decouples it instead)."""
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("sam")
def sam(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """SAM around `optim.sam_base` (built with the same lr, weight decay, momentum ...)."""
    # core.checks refuses SAM around SAM; without it this would recurse until Python's stack ran out.
    assert config.sam_base != "sam", "optim.sam_base='sam' passed core.checks.check_config"
    base = OPTIMIZERS.get(config.sam_base)(params, config)
    return SAM(base, rho=config.sam_rho, adaptive=config.sam_adaptive)
