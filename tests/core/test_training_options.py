"""Training options inside `train_fold`: gradient clipping, mixed precision on CPU, early stopping (and resuming a
stopped fold), and train.select — each on a case constructed so the right answer is known in advance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from core.config import Config
from core.data.dataset import AudioData
from core.data.splits import Fold
from core.evaluate import predict, score
from core.train import EpochResult, autocast, grad_scaler, train_fold

ConfigFactory = Callable[..., Config]
# Plain SGD with a constant lr: a step is exactly -lr * (clipped) gradient.
PLAIN_SGD = {"optim.name": "sgd", "optim.momentum": 0.0, "optim.weight_decay": 0.0, "optim.scheduler": "constant",
             "optim.warmup_ratio": 0.0}
# A vanishing lr: the weights (so the validation scores) stay as initialised, every epoch is a plateau.
FROZEN = {**PLAIN_SGD, "optim.lr": 1e-30}


def step_norm(results: list[EpochResult], lr: float) -> float:
    """||w2 - w1|| / lr of the one optimiser step of epoch 2: the norm of the gradient the optimiser used."""
    before, after = results[0].state["model"], results[1].state["model"]
    squares = sum(float(((after[k].double() - before[k].double()) ** 2).sum()) for k in before)
    return squares ** 0.5 / lr


def test_grad_clip_bounds_the_gradient_norm(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """One batch per epoch (batch = all training rows) makes epoch 2 a single SGD step, whose length over lr is the
    norm of the gradient actually applied: clip_grad_norm_'s bound, or the raw norm without clipping."""
    fold = toy_data.splits.folds[0]
    lr, clip = 0.05, 0.01
    common = {**PLAIN_SGD, "optim.lr": lr, "train.epochs": 2, "train.batch_size": len(fold.train)}
    raw = step_norm(list(train_fold(toy_config_factory(**common, **{"optim.grad_clip": 0.0}), toy_data, fold)), lr)
    clipped = step_norm(list(train_fold(toy_config_factory(**common, **{"optim.grad_clip": clip}), toy_data, fold)),
                        lr)
    assert raw > 10 * clip  # the gradient is far larger than the bound...
    assert clipped == pytest.approx(clip, rel=1e-3)  # ...and the applied one is scaled down to it
    looser = step_norm(list(train_fold(toy_config_factory(**common, **{"optim.grad_clip": raw * 10}), toy_data,
                                       fold)), lr)
    assert looser == pytest.approx(raw, rel=1e-3)  # a bound above the norm changes nothing


def test_bf16_on_cpu_is_full_precision(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Autocast and loss scaling are CUDA-only: on CPU train.precision=bf16/fp16 computes in fp32 and gives
    bit-identical training, and the GradScaler is disabled (its state is empty)."""
    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 3)
    for precision in ("bf16", "fp16", "fp32"):
        with autocast(cpu, precision):
            assert not torch.is_autocast_enabled("cpu")
            assert layer(torch.randn(2, 4)).dtype == torch.float32
        assert not grad_scaler(cpu, precision).is_enabled()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what an enabled CPU autocast would have done
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    fold = toy_data.splits.folds[2]
    runs = {p: list(train_fold(toy_config_factory(**{"train.epochs": 2, "train.precision": p}), toy_data, fold))
            for p in ("fp32", "bf16", "fp16")}
    for precision in ("bf16", "fp16"):
        assert [(r.train_loss, r.metrics) for r in runs[precision]] == [(r.train_loss, r.metrics) for r in runs["fp32"]]
        final, reference = runs[precision][-1].state["model"], runs["fp32"][-1].state["model"]
        assert all(torch.equal(final[k], reference[k]) and final[k].dtype == reference[k].dtype for k in reference)
        assert runs[precision][-1].state["scaler"] == {}


def test_patience_stops_at_the_constructed_epoch(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """With frozen weights the score never improves after epoch 1, so patience p stops right after epoch 1 + p."""
    fold = toy_data.splits.folds[0]
    for patience in (1, 3):
        results = list(train_fold(toy_config_factory(**FROZEN, **{"train.epochs": 10, "train.patience": patience}),
                                  toy_data, fold))
        assert len({r.metrics["uar"] for r in results}) == 1  # the construction holds
        assert [r.epoch for r in results] == list(range(1, patience + 2))
        assert [r.stopped for r in results] == [False] * patience + [True]
        assert all(r.best_epoch == 1 for r in results)
    # Patience reached only at the last epoch: nothing left to stop, so it is not reported as stopped.
    last = list(train_fold(toy_config_factory(**FROZEN, **{"train.epochs": 3, "train.patience": 2}), toy_data, fold))
    assert [r.stopped for r in last] == [False, False, False]


def test_a_stopped_fold_does_not_resume_training(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**FROZEN, **{"train.epochs": 10, "train.patience": 1})
    results = list(train_fold(config, toy_data, toy_data.splits.folds[0]))
    assert results[-1].stopped and results[-1].epoch == 2
    state = results[-1].state
    assert state["progress"]["stopped"] is True
    assert list(train_fold(config, toy_data, toy_data.splits.folds[0], resume=state)) == []
    # An earlier, not-stopped state still resumes into the remaining epoch(s).
    assert [r.epoch for r in train_fold(config, toy_data, toy_data.splits.folds[0], resume=results[0].state)] == [2]


def flipped_validation(data: AudioData, fold: Fold) -> AudioData:
    """Validation labels inverted: the better the model learns the (training) labels, the worse it scores, so the
    best validation epoch comes early while training goes on."""
    targets = data.targets.copy()
    targets[fold.valid] = 1 - targets[fold.valid]
    return dataclasses.replace(data, targets=targets)


@pytest.mark.parametrize("select", ["best", "last"])
def test_select_returns_the_selected_epochs_model(toy_data: AudioData, toy_config_factory: ConfigFactory,
                                                  select: str) -> None:
    fold = toy_data.splits.folds[0]
    data = flipped_validation(toy_data, fold)
    config = toy_config_factory(**{"train.epochs": 6, "train.select": select, "optim.lr": 3e-3})
    results = list(train_fold(config, data, fold))
    uar = [r.metrics["uar"] for r in results]
    best = int(np.argmax(uar)) + 1
    assert best < len(results), uar  # the construction holds: the best epoch is not the last
    chosen = best if select == "best" else len(results)
    final = results[-1]
    assert final.best_epoch == best
    # Evaluating the returned model reproduces the chosen epoch's validation metrics exactly.
    outputs = predict(final.model, final.featurizer, data, fold.valid, torch.device("cpu"), 64)
    assert score(data, fold.valid, outputs) == results[chosen - 1].metrics
    if select == "best":
        assert score(data, fold.valid, outputs) != results[-1].metrics
