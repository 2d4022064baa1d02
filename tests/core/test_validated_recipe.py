"""The validated recipe without Ray: `train.stop_epoch` stops a run under the full horizon's learning-rate schedule,
the export builder writes the horizon and e* (select=last: the full horizon), the trial status names patience, and
the out-of-fold table has one row per development clip."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from core.config import Config
from core.data.dataset import AudioData
from core.errors import ConfigError
from core.evaluate import score
from core.optim.schedulers import warmup_cosine_factor, warmup_steps
from core.train import train_fold
from tune.results.export import out_of_fold, validated_recipe
from tune.results.leaderboard import trial_status

ConfigFactory = Callable[..., Config]


def learning_rates(results: list) -> list[float]:
    return [r.state["scheduler"]["_last_lr"][0] for r in results]


def test_stop_epoch_stops_on_the_horizons_schedule(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    fold = toy_data.splits.folds[0]
    full = list(train_fold(toy_config_factory(**{"train.epochs": 3}), toy_data, fold))
    stopped = list(train_fold(toy_config_factory(**{"train.epochs": 3, "train.stop_epoch": 2}), toy_data, fold))
    assert [r.epoch for r in stopped] == [1, 2] and not any(r.stopped for r in stopped)
    # The first two epochs of the 3-epoch run, exactly: same learning rates, same numbers.
    assert learning_rates(stopped) == learning_rates(full)[:2]
    assert [r.metrics for r in stopped] == [r.metrics for r in full[:2]]
    steps = math.ceil(len(fold.train) / 8)
    optim = toy_config_factory().optim  # warmup_cosine, peak 2e-3: after epoch e the schedule is at step e * steps
    expected = [optim.lr * warmup_cosine_factor(e * steps, warmup_steps(optim, 3 * steps), 3 * steps,
                                                optim.min_lr_ratio) for e in (1, 2)]
    assert learning_rates(stopped) == pytest.approx(expected, rel=1e-12)
    # The old export (train.epochs = e*) compressed the schedule into 2 epochs: another trajectory.
    compressed = list(train_fold(toy_config_factory(**{"train.epochs": 2}), toy_data, fold))
    assert learning_rates(compressed)[0] != pytest.approx(learning_rates(stopped)[0], rel=1e-3)


def test_stop_epoch_beyond_the_horizon_is_refused(toy_config_factory: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"train.stop_epoch=4: must be in \[0, train.epochs=3\]"):
        toy_config_factory(**{"train.epochs": 3, "train.stop_epoch": 4})


def last_result(epoch: int, score_epoch: int, folds: list[float]) -> dict[str, float]:
    row = {"epoch": float(epoch), "score_epoch": float(score_epoch), "uar_score": float(np.mean(folds)),
           "uar_score_std": float(np.std(folds, ddof=1))}
    row.update({f"uar_score_fold{i}": v for i, v in enumerate(folds)})
    return row


@pytest.mark.parametrize(("select", "score_epoch", "stop"), [("best", 2, 2), ("best", 4, 0), ("last", 4, 0)])
def test_export_keeps_the_horizon_and_stops_at_e_star(toy_config: Config, select: str, score_epoch: int,
                                                      stop: int) -> None:
    base = toy_config.with_overrides({"train.epochs": 4, "train.select": select}).to_dict()
    config, validated = validated_recipe({"optim.lr": 1e-3}, base, last_result(4, score_epoch, [0.5, 0.6, 0.7]))
    assert config["train"]["epochs"] == 4 and config["train"]["stop_epoch"] == stop
    assert config["optim"]["lr"] == 1e-3
    assert validated == {"metric": "uar", "select": select, "horizon": 4, "epoch": score_epoch,
                         "score": pytest.approx(0.6), "std": pytest.approx(0.1), "folds": [0.5, 0.6, 0.7]}


def test_trial_status_names_patience_and_asha() -> None:
    folds = {f"train_loss_fold{i}": 0.1 for i in range(3)}
    assert trial_status(None, {"epoch": 4, "folds_stopped": 0, **folds}, 4) == "finished"
    assert trial_status(None, {"epoch": 2, "folds_stopped": 3, **folds}, 4) == "early-stopped (patience)"
    assert trial_status(None, {"epoch": 2, "folds_stopped": 1, **folds}, 4) == "stopped (ASHA)"
    assert trial_status(None, {"epoch": 2, "error": "diverged: ...", **folds}, 4) == "error"


def test_out_of_fold_table_has_every_development_clip_once(toy_data: AudioData, toy_config: Config) -> None:
    rng = np.random.default_rng(0)
    outputs = {}
    for fold in toy_data.splits.folds:
        raw = rng.random((len(fold.valid), len(toy_data.classes)))
        outputs[fold.index] = raw / raw.sum(axis=1, keepdims=True)
    table, rows, values = out_of_fold(toy_config, toy_data, outputs)
    assert sorted(rows.tolist()) == sorted(toy_data.splits.development.tolist())
    assert list(table.columns) == ["path", "speaker", "word", "age", "label", "fold", "predicted",
                                   *(f"p_{name}" for name in toy_data.classes)]
    assert table["path"].is_unique and len(table) == len(toy_data.splits.development)
    manifest = toy_data.manifest.table
    assert table["speaker"].tolist() == manifest["speaker"].to_numpy()[rows].tolist()
    assert table["label"].tolist() == manifest["label"].to_numpy()[rows].tolist()
    probabilities = table[[f"p_{name}" for name in toy_data.classes]].to_numpy()
    np.testing.assert_allclose(probabilities, values)
    for fold in toy_data.splits.folds:  # each fold's rows score as that fold's outputs do
        mine = table["fold"] == fold.index
        assert score(toy_data, rows[mine], probabilities[mine]) == score(toy_data, fold.valid, outputs[fold.index])
