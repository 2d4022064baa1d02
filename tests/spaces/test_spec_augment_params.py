"""SpecAugment in every space (issue 21, item 5): the mask count first, the width only when the count is above 0,
so no trial carries a searched width that does nothing (and slice plots and importances see only real parameters)."""

from __future__ import annotations

import optuna
import pytest

from search_spaces import SPACES, sample_parameters


@pytest.mark.parametrize("demo", [False, True])
@pytest.mark.parametrize("name", SPACES.names())
def test_a_mask_width_is_searched_only_with_masks(name: str, demo: bool) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        params = sample_parameters(SPACES.get(name), study.ask(), demo=demo)
        for axis in ("time", "freq"):
            count, width = params.get(f"augment.{axis}_masks", 0), params.get(f"augment.{axis}_mask")
            assert (width is not None) == (count > 0), (name, params)
            assert width is None or width >= 1, (name, params)  # a width of 0 is as inert as no mask
