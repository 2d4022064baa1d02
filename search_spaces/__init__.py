"""Named search spaces: a base config (dotted overrides) plus an Optuna define-by-run function.

Spaces import optuna, never ray: the same function drives `tune.run` and can be unit-tested alone.
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.space import DEMO_OVERRIDES, SPACES, DefineByRun, SearchSpace, register

__all__ = ["DEMO_OVERRIDES", "SPACES", "DefineByRun", "SearchSpace", "register", "sample_parameters", "describe",
           "format_distribution"]

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
    whisper_lpft,
    whisper_probe,
    whisper_sam,
)
