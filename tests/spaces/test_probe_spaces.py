"""whisper_probe searches model.layers; whisper_lpft searches LP-FT's probe epochs and encoder lr scale: every draw is a
valid config on the space's base (and on --demo's)."""

from __future__ import annotations

import optuna
import pytest

from core.checks import check_config
from core.config import Config
from search_spaces import DEMO_OVERRIDES, SPACES, describe, sample_parameters


@pytest.mark.parametrize("name", ["whisper_probe", "whisper_lpft"])
@pytest.mark.parametrize("demo", [False, True])
def test_every_draw_is_a_valid_config(name: str, demo: bool) -> None:
    space = SPACES.get(name)
    base = Config().with_overrides({**space.base, **(DEMO_OVERRIDES if demo else {}), **space.demo})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    seen: dict[str, set] = {}
    for _ in range(40):
        params = sample_parameters(space, study.ask(), demo)
        check_config(base.with_overrides(params))
        for key, value in params.items():
            seen.setdefault(key, set()).add(value)
    assert set(seen) >= set(describe(space))
    assert seen["model.layers"] >= {"last", "weighted"}
    if name == "whisper_probe":
        assert seen["model.layers"] == {"last", "weighted", "middle"}
    if name == "whisper_lpft":
        assert seen["train.probe_epochs"] == {1, 2, 3, 4, 5}
        assert base.model.freeze_encoder is False
        assert 0.01 <= min(seen["optim.encoder_lr_scale"]) < max(seen["optim.encoder_lr_scale"]) <= 0.3
