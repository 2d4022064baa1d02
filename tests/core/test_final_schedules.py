"""Final training follows the folds' per-epoch learning rates (issue 21, item 2), for every registered scheduler, or
the scheduler is refused before final training: a fold has fewer optimiser steps per epoch than final training on
all development rows, so a schedule must be a function of the share of training done, and reduce_on_plateau, which
steps on validation scores that final training does not have, cannot be replayed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.checks import check_final_training
from core.config import Config
from core.data.dataset import AudioData
from core.data.splits import Fold
from core.errors import ConfigError
from core.optim import SCHEDULERS
from core.train import train_fold

ConfigFactory = Callable[..., Config]


def epoch_lrs(config: Config, data: AudioData, fold: Fold) -> list[float]:
    """The lr the optimiser holds at the end of each epoch (what the next epoch starts with)."""
    return [r.state["optimizer"]["param_groups"][0]["lr"] for r in train_fold(config, data, fold)]


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_final_training_follows_the_folds_per_epoch_lrs(name: str, toy_data: AudioData,
                                                         toy_config_factory: ConfigFactory) -> None:
    # warm-up over 1.2 of 4 epochs: an epoch boundary inside the warm-up, another in the decay
    config = toy_config_factory(**{"optim.scheduler": name, "optim.warmup_ratio": 0.3, "train.epochs": 4,
                                   "optim.min_lr_ratio": 0.05})
    try:
        check_final_training(config)
    except ConfigError as error:
        assert str(error).startswith(f"optim.scheduler={name!r}: ") and "\n" not in str(error)
        assert not SCHEDULERS.get(name).replayable
        return
    final = Fold(index=0, train=toy_data.splits.development, valid=np.zeros(0, dtype=np.int64))
    folds = [epoch_lrs(config, toy_data, fold) for fold in toy_data.splits.folds[:2]]
    steps = [len(fold.train) for fold in toy_data.splits.folds[:2]] + [len(final.train)]
    assert len(set(steps)) > 1 or steps[0] != steps[-1]  # the runs do differ in steps per epoch
    final_lrs = epoch_lrs(config, toy_data, final)
    for lrs in folds:
        assert lrs == pytest.approx(final_lrs, rel=1e-6, abs=1e-12), (name, lrs, final_lrs)
    assert len(set(np.round(final_lrs, 12))) > 1 or name == "constant"  # the schedule does move
