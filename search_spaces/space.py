"""What a search space is, and the registry the spaces add themselves to (apart from the package, so a space module
imports this and the package imports the spaces, with no import circle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from core.registry import Registry

DefineByRun = Callable[[optuna.Trial], dict[str, Any] | None]

# What `--demo` changes in any space: a tiny from-scratch model and a budget that finishes in minutes on 2 CPUs.
# 12 epochs: a micro Whisper from scratch was still improving at epoch 10; the log-mel computed once per clip
# (core/log_mel_cache.py) pays for most of the extra epochs.
DEMO_OVERRIDES: dict[str, Any] = {
    "model.pretrained": "none",
    "model.size": "micro",
    "model.projection_dim": 64,
    "data.k_fold": 3,
    "train.epochs": 12,
    "train.batch_size": 16,
}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    base: dict[str, Any]  # dotted overrides applied to the default Config before sampling
    define: DefineByRun  # suggests dotted config keys; may return constants to add
    demo: dict[str, Any] = field(default_factory=dict)  # extra overrides for --demo, on top of DEMO_OVERRIDES
    # Ranges for --demo, where a tiny model learns from scratch in a few epochs (it wants a larger learning rate
    # than fine-tuning a pretrained encoder does). None: the same function as a real search.
    demo_define: DefineByRun | None = None

    def demo_overrides(self) -> dict[str, Any]:
        """What --demo adds to the base: `DEMO_OVERRIDES` where this space's model reads them (resnet50 takes no
        model.size; core.checks refuses an inert setting), then the space's own `demo`."""
        from core.checks import ignored_keys  # the model registry (torch) only when a demo is asked for
        from core.config import Config

        inert = set(ignored_keys(Config().with_overrides({**self.base, **DEMO_OVERRIDES})))
        return {**{k: v for k, v in DEMO_OVERRIDES.items() if k not in inert}, **self.demo}

    def define_for(self, demo: bool) -> DefineByRun:
        """The define-by-run function a search uses: the demo ranges under --demo, else the real ones."""
        return self.demo_define if demo and self.demo_define is not None else self.define


SPACES: Registry[SearchSpace] = Registry("search space")


def register(space: SearchSpace) -> SearchSpace:
    return SPACES.register(space.name)(space)


def suggest_spec_augment(trial: optuna.Trial, time_mask: int, time_masks: int, freq_mask: int, freq_masks: int) -> None:
    """SpecAugment up to the given widest settings: each axis's mask count first, its width (1..widest) only when
    the count is above 0, so no trial carries a width that does nothing (nor a count of masks 0 wide)."""
    for axis, widest, most in (("time", time_mask, time_masks), ("freq", freq_mask, freq_masks)):
        if trial.suggest_int(f"augment.{axis}_masks", 0, most) > 0:
            trial.suggest_int(f"augment.{axis}_mask", 1, widest)
