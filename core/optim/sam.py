"""Sharpness-aware minimisation (Foret et al. 2021) and its adaptive form ASAM (Kwon et al. 2021).

One step = two gradients. With g the gradient at the weights w (already in `.grad` when `step` is called):
  SAM:  e = rho * g / ||g||                 ASAM: e = rho * w^2 * g / || |w| * g ||   (elementwise |w| scaling)
then the closure recomputes loss and gradient at w + e, the weights go back to exactly w, and the base optimiser
steps with the gradient from w + e. Norms are taken over all parameters together. The closure must reuse the
first pass's inputs (the same augmented features) and run under `frozen_batch_norm_statistics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    """Wraps an already built base optimiser and shares its parameter groups, so lr schedulers, `zero_grad` and
    checkpoints all act on the base optimiser's groups and state."""

    needs_closure = True  # the training loop must pass `step` a closure (see core.optim.needs_closure)

    def __init__(self, base: torch.optim.Optimizer, rho: float, adaptive: bool = False) -> None:
        if not rho > 0:  # a library argument check, as torch's optimisers make (the config's is Config.validate)
            raise ValueError(f"SAM needs rho > 0, got {rho!r}")
        super().__init__([{"params": group["params"]} for group in base.param_groups], {})
        self.base = base
        self.rho = rho
        self.adaptive = adaptive
        self.param_groups = base.param_groups  # one set of groups: a scheduler changing lr changes the base's
        self.state = base.state

    @torch.no_grad()
    def perturb(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Move every parameter with a gradient to w + e; return (parameter, original weights) to restore."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return []
        scaled = [p.grad * p.abs() if self.adaptive else p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = self.rho / (norm + 1e-12)
        originals = []
        for p, s in zip(params, scaled, strict=True):
            originals.append((p, p.detach().clone()))
            # ASAM: e = rho * |w| * (|w| * g) / ||.||;  SAM: e = rho * g / ||g||
            p.add_(s * p.abs() * factor if self.adaptive else s * factor)
        return originals

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("SAM.step needs a closure that zeroes the gradients and recomputes loss and backward")
        originals = self.perturb()
        with torch.enable_grad():
            loss = closure()
        for p, weights in originals:
            p.copy_(weights)  # exactly w again (w + e - e would not round-trip in floating point)
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state


@contextlib.contextmanager
def frozen_batch_norm_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers of `model` still normalise with the batch's statistics, as in any training forward pass,
    but leave `running_mean`, `running_var` and `num_batches_tracked` alone. For SAM's second pass: its
    activations are those of the perturbed weights w + e, not of the model being trained, and a second update per
    step would also double the rate at which the running averages forget. (In training mode with
    `track_running_stats` off, BatchNorm passes no running buffers to `F.batch_norm`, so none is written.)"""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
