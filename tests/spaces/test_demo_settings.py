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


def within(value: object, distributions: list[optuna.distributions.BaseDistribution]) -> bool:
    for distribution in distributions:
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value in distribution.choices:
                return True
        elif distribution.low <= value <= distribution.high:  # type: ignore[attr-defined,operator]
            return True
    return False


def test_every_demo_draw_is_a_valid_from_scratch_config() -> None:
    """Each draw checks, is a micro model from scratch with the demo's pinned settings, and every sampled value lies
    in the range the space declares for its demo (read from the space, not restated: a re-tune is no bug)."""
    space = SPACES.get("whisper_balancing")
    base = demo_base()
    ranges = describe(space, demo=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(40):
        sampled = sample_parameters(space, study.ask(), demo=True)
        config = check_config(base.with_overrides(sampled))
        assert config.model.pretrained == "none" and config.model.size == "micro"
        for key, value in space.demo.items():
            assert config.get(key) == value, key
        for key, value in sampled.items():
            if key in ranges:
                assert within(value, ranges[key]), (key, value, ranges[key])


def test_demo_ranges_leave_the_real_search_alone() -> None:
    """The demo's own ranges and pins never leak into the real search's."""
    space = SPACES.get("whisper_balancing")
    real, demo = describe(space), describe(space, demo=True)
    assert real["optim.lr"] != demo["optim.lr"]
    for key in space.demo:  # pinned in the demo: searched, or left at the default, in the real search
        assert key not in space.base
        assert key not in demo
