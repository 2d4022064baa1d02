"""Optimiser and warmup+cosine schedule: `optim.lr` is the peak, reached after `warmup_ratio` of all steps."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from core.config import Config
from core.data.dataset import AudioData
from core.optim import OPTIMIZERS, SCHEDULERS
from core.train import train_fold


def lrs_used(lr: float, warmup_ratio: float, min_lr_ratio: float, total: int) -> tuple[list[float], float]:
    """The lr each of `total` optimiser steps runs with, and the lr left after the last step."""
    config = Config().with_overrides({"optim.lr": lr, "optim.warmup_ratio": warmup_ratio,
                                      "optim.min_lr_ratio": min_lr_ratio}).validate().optim
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = OPTIMIZERS.get("adamw")([param], config)
    scheduler = SCHEDULERS.get("warmup_cosine")(optimizer, config, total)
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    return used, optimizer.param_groups[0]["lr"]


def test_adamw_takes_lr_and_weight_decay() -> None:
    config = Config().with_overrides({"optim.lr": 0.02, "optim.weight_decay": 0.3}).optim
    optimizer = OPTIMIZERS.get("adamw")([torch.nn.Parameter(torch.zeros(1))], config)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 0.02 and optimizer.param_groups[0]["weight_decay"] == 0.3


def test_warmup_cosine_follows_the_formula() -> None:
    lr, floor_ratio, total, warmup = 1e-3, 0.05, 50, 10  # warmup_ratio 0.2 of 50 steps
    used, after = lrs_used(lr, 0.2, floor_ratio, total)
    floor = floor_ratio * lr
    # Warmup: linear, equal increments, reaching exactly the peak on the last warmup step.
    for step in range(warmup):
        assert used[step] == pytest.approx(lr * (step + 1) / warmup, rel=1e-12)
    increments = [b - a for a, b in zip(used[:warmup], used[1:warmup], strict=False)]
    assert max(increments) - min(increments) < 1e-15
    assert used[warmup - 1] == lr and max(used) == lr
    # Cosine from the peak to the floor over the remaining steps.
    for step in (warmup, 15, 20, 30, 40, 49):
        progress = (step - warmup) / (total - warmup)
        expected = floor + (lr - floor) * (1 + math.cos(math.pi * progress)) / 2
        assert used[step] == pytest.approx(expected, rel=1e-12), step
    assert used[warmup + (total - warmup) // 2] == pytest.approx((lr + floor) / 2, rel=1e-12)  # halfway
    assert all(a >= b for a, b in zip(used[warmup:], used[warmup + 1:], strict=False))
    assert after == pytest.approx(floor, rel=1e-12)
    assert min(used) > floor


def test_no_warmup_starts_at_peak() -> None:
    used, after = lrs_used(0.01, 0.0, 0.0, 20)
    assert used[0] == 0.01
    assert used[10] == pytest.approx(0.005, rel=1e-12)  # cos(pi/2): halfway
    assert after == pytest.approx(0.0, abs=1e-15)


def test_train_fold_schedules_over_all_epochs(toy_data: AudioData,
                                              toy_config_factory: Callable[..., Config]) -> None:
    """The schedule spans epochs x batches: after the last epoch the lr sits at the floor."""
    config = toy_config_factory(**{"train.epochs": 2, "optim.lr": 1e-3, "optim.min_lr_ratio": 0.1})
    fold = toy_data.splits.folds[0]
    results = list(train_fold(config, toy_data, fold))
    steps = math.ceil(len(fold.train) / config.train.batch_size) * config.train.epochs
    scheduler = results[-1].state["scheduler"]
    assert scheduler["last_epoch"] == steps
    assert scheduler["_last_lr"][0] == pytest.approx(1e-4, rel=1e-9)
    assert results[-1].state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4, rel=1e-9)
