"""`train_fold`: learns, is exactly reproducible on CPU (rerun, resume, lockstep), selects and stops correctly."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from core.config import Config
from core.data.dataset import AudioData
from core.data.splits import Fold
from core.evaluate import predict
from core.train import EpochResult, NonFiniteLossError, train_fold

ConfigFactory = Callable[..., Config]
# Dropout and SpecAugment on, so reproducibility covers the per-fold torch RNG stream, not just batch order.
NOISY = {"model.dropout": 0.1, "augment.time_mask": 8, "augment.time_masks": 1, "augment.freq_mask": 8,
         "augment.freq_masks": 1}


def numbers(results: list[EpochResult]) -> list[tuple[int, float, dict[str, float], int, float, bool]]:
    """Everything a search reports per epoch (NaN-safe for exact comparison)."""
    def clean(value: float) -> float | str:
        return "nan" if math.isnan(value) else value
    return [(r.epoch, r.train_loss, {k: clean(v) for k, v in r.metrics.items()}, r.best_epoch, clean(r.best_score),
             r.stopped) for r in results]


def weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_the_toy_set(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"train.epochs": 8})
    results = list(train_fold(config, toy_data, toy_data.splits.folds[0]))
    assert [r.epoch for r in results] == list(range(1, 9))
    assert all(r.fold == 0 and not r.stopped for r in results)
    losses = [r.train_loss for r in results]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    # the classification metrics, and the bias metrics (core/bias.py) the toy folds allow: counts at least
    assert set(results[-1].metrics) >= {"uar", "f1", "accuracy", "auroc", "uar_age_bands", "uar_speakers"}
    assert results[-1].metrics["uar"] >= 0.75, [r.metrics["uar"] for r in results]  # chance is 0.5
    assert results[-1].metrics["auroc"] >= 0.75


def test_two_runs_are_identical(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"train.epochs": 3, **NOISY})
    fold = toy_data.splits.folds[1]
    torch.manual_seed(1)  # the caller's RNG state must not matter: the fold seeds its own streams
    first = list(train_fold(config, toy_data, fold))
    torch.manual_seed(2)
    second = list(train_fold(config, toy_data, fold))
    assert numbers(first) == numbers(second)
    assert same_weights(first[-1].state["model"], second[-1].state["model"])
    other_seed = list(train_fold(toy_config_factory(**{"train.epochs": 3, "train.seed": 1, **NOISY}), toy_data, fold))
    assert [r.train_loss for r in other_seed] != [r.train_loss for r in first]  # the seed does matter


def test_does_not_touch_global_rng(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Pure: a fold runs on its own random streams, so callers' (and other folds') RNG state is left alone."""
    torch.manual_seed(123)
    np.random.seed(123)
    torch_before, numpy_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    list(train_fold(toy_config_factory(**{"train.epochs": 1, **NOISY}), toy_data, toy_data.splits.folds[0]))
    assert torch.equal(torch.get_rng_state(), torch_before)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)


@pytest.mark.parametrize("through_disk", [True, False], ids=["checkpoint-file", "in-memory"])
def test_resume_continues_exactly(toy_data: AudioData, toy_config_factory: ConfigFactory, tmp_path: Path,
                                  through_disk: bool) -> None:
    """A run resumed from the state yielded after epoch k gives the uninterrupted run's later epochs."""
    config = toy_config_factory(**{"train.epochs": 5, "train.select": "best", **NOISY})
    fold = toy_data.splits.folds[0]
    uninterrupted: list[EpochResult] = []
    for result in train_fold(config, toy_data, fold):
        if through_disk and result.epoch == 2:
            torch.save(result.state, tmp_path / "fold0.pt")  # what the Tune trainable checkpoints
        uninterrupted.append(result)
    # Either the checkpoint file, or the state object kept in memory while the run went on to epoch 5.
    state = torch.load(tmp_path / "fold0.pt", weights_only=True) if through_disk else uninterrupted[1].state
    resumed = list(train_fold(config, toy_data, fold, resume=state))
    assert [r.epoch for r in resumed] == [3, 4, 5]
    assert numbers(resumed) == numbers(uninterrupted[2:])
    assert same_weights(resumed[-1].state["model"], uninterrupted[-1].state["model"])
    assert same_weights(resumed[-1].model.state_dict(), uninterrupted[-1].model.state_dict())


def test_lockstep_folds_match_folds_run_alone(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"train.epochs": 3, **NOISY})
    folds = toy_data.splits.folds
    alone = [numbers(list(train_fold(config, toy_data, fold))) for fold in folds]
    runs = [train_fold(config, toy_data, fold) for fold in folds]
    interleaved: list[list[EpochResult]] = [[] for _ in folds]
    for _ in range(config.train.epochs):
        for i, run in enumerate(runs):
            torch.rand(17)  # other code drawing from the global RNG between folds changes nothing
            interleaved[i].append(next(run))
    assert [numbers(r) for r in interleaved] == alone
    assert alone[0] != alone[1]  # the folds really differ (own data and own seed)


def test_only_training_labels_shape_training(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Per-fold statistics (here: the balancing weights) come from the training rows only: flipping every label
    outside `fold.train` leaves training bit-identical, while validation scores see the flipped labels."""
    config = toy_config_factory(**{"train.epochs": 2, "loss.name": "balancing", "loss.smoothing": 0.5, **NOISY})
    fold = toy_data.splits.folds[0]
    outside = np.setdiff1d(np.arange(len(toy_data.targets)), fold.train)
    flipped_targets = toy_data.targets.copy()
    flipped_targets[outside] = 1 - flipped_targets[outside]
    flipped = dataclasses.replace(toy_data, targets=flipped_targets)
    original = list(train_fold(config, toy_data, fold))
    relabelled = list(train_fold(config, flipped, fold))
    assert [r.train_loss for r in relabelled] == [r.train_loss for r in original]
    assert same_weights(relabelled[-1].state["model"], original[-1].state["model"])
    assert [r.metrics for r in relabelled] != [r.metrics for r in original]


def test_select_best_returns_the_best_epochs_weights(toy_data: AudioData,
                                                     toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"train.epochs": 8, "train.select": "best", "optim.lr": 3e-3})
    fold = toy_data.splits.folds[0]
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    history: list[float] = []
    checked_lagging = False
    for result in train_fold(config, toy_data, fold):
        snapshots[result.epoch] = weights(result.state["model"])
        history.append(result.metrics["uar"])
        best = int(np.argmax(history)) + 1  # first epoch with the highest UAR so far
        assert result.best_epoch == best and result.best_score == max(history)
        assert same_weights(result.model.state_dict(), snapshots[best])
        checked_lagging |= best != result.epoch
    assert checked_lagging, f"UAR improved every epoch {history}: the test needs a plateau"
    final = result
    assert not same_weights(final.model.state_dict(), snapshots[final.epoch])
    # The returned model scores the best epoch's UAR, recomputed here from its predictions.
    outputs = predict(final.model, final.featurizer, toy_data, fold.valid, torch.device("cpu"), 64)
    recomputed = balanced_accuracy_score(toy_data.targets[fold.valid], outputs.argmax(axis=1))
    assert recomputed == pytest.approx(final.best_score)


def test_select_last_returns_the_last_weights(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"train.epochs": 3, "train.select": "last"})
    results = list(train_fold(config, toy_data, toy_data.splits.folds[2]))
    assert same_weights(results[-1].model.state_dict(), results[-1].state["model"])


def test_patience_stops_early(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    patience, epochs = 2, 30
    config = toy_config_factory(**{"train.epochs": epochs, "train.patience": patience, "optim.lr": 3e-3})
    fold = toy_data.splits.folds[0]
    results = list(train_fold(config, toy_data, fold))
    assert len(results) < epochs
    assert results[-1].stopped and not any(r.stopped for r in results[:-1])
    best = results[-1].best_epoch
    assert len(results) == best + patience
    uar = [r.metrics["uar"] for r in results]
    assert all(v <= uar[best - 1] for v in uar[best:])  # no improvement in the last `patience` epochs
    # Early stopping only stops: the epochs it ran are the ones a run without patience produces.
    without = train_fold(config.with_overrides({"train.patience": 0}), toy_data, fold)
    unpatient = [next(without) for _ in results]
    assert [(r.train_loss, r.metrics) for r in unpatient] == [(r.train_loss, r.metrics) for r in results]


@pytest.mark.parametrize("lr", [1e30, 1e12])
def test_diverging_loss_raises(toy_data: AudioData, toy_config_factory: ConfigFactory, lr: float) -> None:
    config = toy_config_factory(**{"optim.lr": lr, "optim.warmup_ratio": 0.0, "optim.grad_clip": 0.0,
                                   "train.epochs": 3})
    with pytest.raises(NonFiniteLossError, match=r"fold 0 epoch \d: training loss is (nan|inf)"):
        list(train_fold(config, toy_data, toy_data.splits.folds[0]))


def test_without_validation_rows(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Final training (train + valid, no validation) still yields epochs; the last epoch is the selected one."""
    fold = Fold(index=0, train=toy_data.splits.development, valid=np.array([], dtype=np.int64))
    results = list(train_fold(toy_config_factory(**{"train.epochs": 2}), toy_data, fold))
    assert [r.metrics for r in results] == [{}, {}]
    assert [r.best_epoch for r in results] == [1, 2]
    assert same_weights(results[-1].model.state_dict(), results[-1].state["model"])


def test_state_survives_a_checkpoint_round_trip(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """The yielded state is plain torch-serialisable data (what a Ray checkpoint stores)."""
    result = next(train_fold(toy_config_factory(**{"train.epochs": 2}), toy_data, toy_data.splits.folds[0]))
    buffer = io.BytesIO()
    torch.save(result.state, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert same_weights(loaded["model"], result.state["model"])
    assert loaded["progress"]["epoch"] == 1
    assert loaded["random"]["numpy"] == result.state["random"]["numpy"]
    assert torch.equal(loaded["random"]["torch"], result.state["random"]["torch"])
