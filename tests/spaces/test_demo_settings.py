"""The demo's settings (`--demo` on whisper_balancing): every draw is a valid from-scratch config, the real ranges
are untouched."""

from __future__ import annotations

import optuna

from core.checks import check_config
from core.config import Config
from search_spaces import SPACES, describe, sample_parameters


def demo_base() -> Config:
    space = SPACES.get("whisper_balancing")
    return Config().with_overrides({**space.base, **space.demo_overrides()})


def test_every_demo_draw_is_a_valid_from_scratch_config() -> None:
    space = SPACES.get("whisper_balancing")
    base = demo_base()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(40):
        config = check_config(base.with_overrides(sample_parameters(space, study.ask(), demo=True)))
        assert config.model.pretrained == "none" and config.model.size == "micro"
        assert config.features.conditioning == "rows" and config.model.pooling == "max"
        assert config.features.normalize == "clip"
        assert 1.5e-3 <= config.optim.lr <= 4e-3
        assert config.augment.time_mask <= 10


def test_demo_ranges_leave_the_real_search_alone() -> None:
    space = SPACES.get("whisper_balancing")
    real = describe(space)
    assert real["optim.lr"] == [optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)]
    assert real["augment.time_mask"] == [optuna.distributions.IntDistribution(1, 40)]  # with time_masks > 0
    assert "model.pooling" in real
    assert "model.pooling" not in describe(space, demo=True)  # pinned to `max` in the demo
    assert "features.conditioning" not in space.base  # the real search keeps the default (none)
    assert "features.normalize" not in space.base  # and Whisper's own log-mel, which pretrained weights expect
