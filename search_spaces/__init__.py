"""Named search spaces: a base config (dotted overrides) plus an Optuna define-by-run function.

Spaces import optuna, never ray: the same function drives `tune.run` and can be unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from core.registry import Registry

DefineByRun = Callable[[optuna.Trial], dict[str, Any] | None]

# What `--demo` changes in any space: a tiny from-scratch model and a budget that finishes in minutes on 2 CPUs.
DEMO_OVERRIDES: dict[str, Any] = {
    "model.pretrained": "none",
    "model.size": "micro",
    "model.projection_dim": 64,
    "data.k_fold": 3,
    "train.epochs": 10,
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

    def define_for(self, demo: bool) -> DefineByRun:
        """The define-by-run function a search uses: the demo ranges under --demo, else the real ones."""
        return self.demo_define if demo and self.demo_define is not None else self.define


SPACES: Registry[SearchSpace] = Registry("search space")


def register(space: SearchSpace) -> SearchSpace:
    return SPACES.register(space.name)(space)


def sample_parameters(space: SearchSpace, trial: optuna.Trial, demo: bool = False) -> dict[str, Any]:
    """Run the space on `trial` and return its dotted overrides (suggested values + returned constants)."""
    constants = space.define_for(demo)(trial) or {}
    return {**trial.params, **constants}


def describe(space: SearchSpace, draws: int = 64,
             demo: bool = False) -> dict[str, list[optuna.distributions.BaseDistribution]]:
    """Every parameter the space can suggest, with its distributions: the union over `draws` random draws, so
    conditional parameters (and a parameter whose range depends on another choice) show up too."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found: dict[str, list[optuna.distributions.BaseDistribution]] = {}
    for _ in range(draws):
        trial = study.ask()
        space.define_for(demo)(trial)
        for key, distribution in trial.distributions.items():
            if distribution not in found.setdefault(key, []):
                found[key].append(distribution)
    return dict(sorted(found.items()))


def format_distribution(distribution: optuna.distributions.BaseDistribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, distribution.choices))
    scale = " (log)" if getattr(distribution, "log", False) else ""
    return f"{distribution.low} … {distribution.high}{scale}"


from search_spaces import (  # noqa: E402,F401  (each registers itself)
    resnet_focal,
    wav2vec2_contrastive,
    whisper_balancing,
    whisper_conditioning,
    whisper_losses,
    whisper_sam,
)
