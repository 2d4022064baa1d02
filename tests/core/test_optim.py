"""Optimisers (SGD, Adam, AdamW, SAM/ASAM) and schedulers (warmup+cosine with `optim.lr` as the peak, linear,
constant, one-cycle, plateau) against formulas computed here by hand with plain tensors, plus SAM and the plateau
schedule inside `train_fold`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from core.checks import check_config
from core.config import Config, OptimConfig
from core.data.dataset import AudioData
from core.errors import ConfigError
from core.optim import OPTIMIZERS, SCHEDULERS, needs_closure
from core.train import train_fold


def cosine_lrs_used(lr: float, warmup_ratio: float, min_lr_ratio: float, total: int) -> tuple[list[float], float]:
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
    used, after = cosine_lrs_used(lr, 0.2, floor_ratio, total)
    floor = floor_ratio * lr
    # Warmup: linear, step / warmup (the first step at 1 / warmup), equal increments, the peak on the first step
    # after it: a function of the share of training done, as final training's per-epoch lrs need.
    for step in range(warmup):
        assert used[step] == pytest.approx(lr * max(step, 1) / warmup, rel=1e-12)
    increments = [b - a for a, b in zip(used[1:warmup + 1], used[2:warmup + 1], strict=False)]
    assert max(increments) - min(increments) < 1e-15
    assert used[warmup] == lr and max(used) == lr
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
    used, after = cosine_lrs_used(0.01, 0.0, 0.0, 20)
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


ConfigFactory = Callable[..., Config]


def optim_config(**overrides: Any) -> OptimConfig:
    return Config().with_overrides({f"optim.{k}": v for k, v in overrides.items()}).validate().optim


# --- optimisers -----------------------------------------------------------------------------------------------
def test_sgd_nesterov_momentum_two_steps_by_hand() -> None:
    lr, momentum, decay = 0.1, 0.9, 0.01
    config = optim_config(name="sgd", lr=lr, momentum=momentum, nesterov=True, weight_decay=decay)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = OPTIMIZERS.get("sgd")([w], config)
    expected, buffer = w.detach().clone(), None
    for g in (torch.tensor([0.5, 0.25], dtype=torch.float64), torch.tensor([-1.0, 2.0], dtype=torch.float64)):
        d = g + decay * expected  # L2 decay joins the gradient
        buffer = d if buffer is None else momentum * buffer + d
        expected = expected - lr * (d + momentum * buffer)  # Nesterov: look ahead along the buffer
        w.grad = g.clone()
        optimizer.step()
        torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_first_step_by_hand(name: str) -> None:
    """After one step Adam's bias-corrected moments are g and g^2: the step is lr * g / (|g| + eps). Adam adds the
    decay to g; AdamW shrinks the weights by (1 - lr * decay) instead."""
    lr, decay, eps = 0.01, 0.1, 1e-8
    w0 = torch.tensor([0.5, -1.5, 3.0], dtype=torch.float64)
    g = torch.tensor([0.2, 0.0, -4.0], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    optimizer = OPTIMIZERS.get(name)([w], optim_config(name=name, lr=lr, weight_decay=decay))
    w.grad = g.clone()
    optimizer.step()
    if name == "adam":
        d = g + decay * w0
        expected = w0 - lr * d / (d.abs() + eps)
    else:
        expected = w0 * (1 - lr * decay) - lr * g / (g.abs() + eps)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def linear_problem() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 3, generator=generator, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=generator, dtype=torch.float64))
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    return model, x, y


def mse_gradients(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dW, d/db of mean((x W^T + b - y)^2), derived by hand (no autograd)."""
    residual = x @ w.T + b - y
    scale = 2.0 / residual.numel()
    return scale * residual.T @ x, scale * residual.sum(dim=0)


def sam_step(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor,
             optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """What the training loop does: first pass, then `step(closure)` with a closure redoing it."""
    def backward() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss
    backward()
    return optimizer.step(backward)


@pytest.mark.parametrize(("base", "adaptive"), [("sgd", False), ("sgd", True), ("adamw", False), ("adamw", True)])
def test_one_sam_step_by_hand(base: str, adaptive: bool) -> None:
    lr, rho, decay, eps = 0.05, 0.3, 0.01, 1e-8
    model, x, y = linear_problem()
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    config = optim_config(name="sam", sam_base=base, lr=lr, sam_rho=rho, sam_adaptive=adaptive, momentum=0.0,
                          weight_decay=0.0 if base == "sgd" else decay)
    optimizer = OPTIMIZERS.get("sam")(model.parameters(), config)
    assert needs_closure(optimizer)
    sam_step(model, x, y, optimizer)

    gw, gb = mse_gradients(w, b, x, y)
    if adaptive:  # ASAM: e = rho * w^2 * g / || |w| g ||
        norm = torch.sqrt(((w.abs() * gw) ** 2).sum() + ((b.abs() * gb) ** 2).sum())
        ew, eb = rho * w * w * gw / norm, rho * b * b * gb / norm
    else:  # SAM: e = rho * g / ||g||
        norm = torch.sqrt((gw ** 2).sum() + (gb ** 2).sum())
        ew, eb = rho * gw / norm, rho * gb / norm
    sharp_w, sharp_b = mse_gradients(w + ew, b + eb, x, y)  # the gradient at the perturbed point
    if base == "sgd":
        expected_w, expected_b = w - lr * sharp_w, b - lr * sharp_b
    else:
        expected_w = w * (1 - lr * decay) - lr * sharp_w / (sharp_w.abs() + eps)
        expected_b = b * (1 - lr * decay) - lr * sharp_b / (sharp_b.abs() + eps)
    torch.testing.assert_close(model.weight.detach(), expected_w, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias.detach(), expected_b, rtol=0, atol=1e-10)
    assert (sharp_w - gw).abs().max() > 1e-2  # the second gradient really is another one


def test_sam_restores_the_weights_exactly() -> None:
    """With a zero-lr base the step must leave w bit-identical: the perturbation is undone by copying, not by
    subtracting e again."""
    model, x, y = linear_problem()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = OPTIMIZERS.get("sam")(model.parameters(), optim_config(name="sam", sam_base="sgd", lr=1.0,
                                                                       momentum=0.0, weight_decay=0.0, sam_rho=0.7))
    optimizer.param_groups[0]["lr"] = 0.0
    sam_step(model, x, y, optimizer)
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before, strict=True))


def test_sam_shares_the_base_groups_and_state() -> None:
    model, x, y = linear_problem()
    config = optim_config(name="sam", sam_base="adamw", lr=0.01, warmup_ratio=0.5)
    optimizer = OPTIMIZERS.get("sam")(model.parameters(), config)
    scheduler = SCHEDULERS.get("warmup_linear")(optimizer, config, 6)  # 3 warm-up steps: lr/3, lr/3, 2lr/3
    assert optimizer.base.param_groups[0]["lr"] == pytest.approx(0.01 / 3)  # the scheduler set the base's lr
    for _ in range(2):
        sam_step(model, x, y, optimizer)
        scheduler.step()
    assert optimizer.base.param_groups[0]["lr"] == pytest.approx(0.02 / 3)
    state = optimizer.state_dict()
    assert state["state"][0]["step"] == 2 and set(state["state"]) == {0, 1}  # the base's Adam state
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


def test_optimizer_config_rules() -> None:
    with pytest.raises(ConfigError, match=r"train.precision='fp16'.*optim.name=sam.*closure"):
        check_config(Config().with_overrides({"optim.name": "sam", "train.precision": "fp16"}))
    check_config(Config().with_overrides({"optim.name": "sam", "train.precision": "bf16"}))  # bf16 needs no scaler
    with pytest.raises(ConfigError, match="optim.sam_base='sam'"):
        check_config(Config().with_overrides({"optim.name": "sam", "optim.sam_base": "sam"}))
    with pytest.raises(ConfigError, match="optim.sam_base='lion'"):
        check_config(Config().with_overrides({"optim.sam_base": "lion"}))
    with pytest.raises(ConfigError, match="optim.nesterov=True: needs optim.momentum > 0"):
        Config().with_overrides({"optim.name": "sgd", "optim.nesterov": True, "optim.momentum": 0.0}).validate()
    with pytest.raises(ConfigError, match="optim.sam_rho"):
        Config().with_overrides({"optim.sam_rho": 0.0}).validate()
    with pytest.raises(ConfigError, match="optim.plateau_factor"):
        Config().with_overrides({"optim.plateau_factor": 1.0}).validate()


# --- schedulers -----------------------------------------------------------------------------------------------
def lrs_used(name: str, total: int, **overrides: Any) -> tuple[list[float], float]:
    """The lr each of `total` optimiser steps runs with, and the lr after the last step."""
    config = optim_config(**overrides)
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = OPTIMIZERS.get("sgd")([param], config)
    scheduler = SCHEDULERS.get(name)(optimizer, config, total)
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    return used, optimizer.param_groups[0]["lr"]


def test_warmup_linear_follows_the_formula() -> None:
    lr, floor, total = 0.02, 0.1, 40
    used, after = lrs_used("warmup_linear", total, lr=lr, warmup_ratio=0.25, min_lr_ratio=floor)
    warmup = 10
    for step in range(total):
        if step < warmup:
            expected = lr * max(step, 1) / warmup
        else:
            expected = lr * (1 - (1 - floor) * (step - warmup) / (total - warmup))
        assert used[step] == pytest.approx(expected, rel=1e-12), step
    assert used[warmup] == pytest.approx(lr) and max(used) == pytest.approx(lr)
    assert after == pytest.approx(floor * lr, rel=1e-12)
    decay = [b - a for a, b in zip(used[warmup:], used[warmup + 1:], strict=False)]
    assert max(decay) - min(decay) < 1e-15  # a straight line


def test_constant_with_and_without_warmup() -> None:
    used, after = lrs_used("constant", 20, lr=0.3, warmup_ratio=0.2)
    assert used[:5] == pytest.approx([0.075, 0.075, 0.15, 0.225, 0.3], rel=1e-12)
    assert used[4:] == [pytest.approx(0.3, rel=1e-12)] * 16 and after == pytest.approx(0.3)
    used, after = lrs_used("constant", 7, lr=0.3, warmup_ratio=0.0)
    assert used == [0.3] * 7 and after == 0.3


@pytest.mark.parametrize(("ratio", "total"), [(0.3, 20), (0.0, 10)])
def test_one_cycle_follows_the_formula(ratio: float, total: int) -> None:
    lr, floor = 0.01, 0.02
    used, after = lrs_used("one_cycle", total, lr=lr, warmup_ratio=ratio, min_lr_ratio=floor)
    start, end = lr / 25, lr * floor
    rise = ratio * total  # steps, not rounded: a share of training

    def cosine(a: float, b: float, share: float) -> float:
        return b + (a - b) * (1 + math.cos(math.pi * share)) / 2

    for step in range(total):
        expected = (cosine(start, lr, step / rise) if step < rise else
                    cosine(lr, end, (step - rise) / (total - rise)))
        assert used[step] == pytest.approx(expected, rel=1e-9), step
    assert used[0] == pytest.approx(start if ratio else lr) and max(used) == pytest.approx(lr)
    assert after == pytest.approx(end) and min(used) > end


@pytest.mark.parametrize("mode", ["max", "min"])
def test_reduce_on_plateau_follows_the_metric(mode: str) -> None:
    lr = 0.1
    config = optim_config(lr=lr, plateau_factor=0.5, plateau_patience=1)
    optimizer = OPTIMIZERS.get("sgd")([torch.nn.Parameter(torch.zeros(1))], config)
    scheduler = SCHEDULERS.get("reduce_on_plateau")(optimizer, config, 1000, mode)
    history = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.65]  # a score; as an error (mode min): 1 - score
    # Best so far improves at epochs 1, 2, 5; the 2nd epoch in a row without improvement (> patience 1) halves lr.
    expected = [lr, lr, lr, lr / 2, lr / 2, lr / 2, lr / 4, lr / 4]
    seen = []
    for value in history:
        scheduler.step(value if mode == "max" else 1 - value)
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(expected, rel=1e-12)


def test_only_plateau_is_stepped_per_epoch() -> None:
    assert {name: SCHEDULERS.get(name).per_epoch for name in SCHEDULERS} == {
        "constant": False, "one_cycle": False, "reduce_on_plateau": True, "warmup_cosine": False,
        "warmup_linear": False}


# --- inside train_fold ----------------------------------------------------------------------------------------
def test_plateau_steps_once_per_epoch_in_train_fold(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Constructed: a vanishing lr leaves the model (and so the UAR) unchanged, so every epoch after the first is
    a plateau and, with patience 0, halves the lr once - per epoch, not per batch."""
    lr = 1e-30
    config = toy_config_factory(**{"optim.name": "sgd", "optim.momentum": 0.0, "optim.weight_decay": 0.0,
                                   "optim.lr": lr, "optim.scheduler": "reduce_on_plateau",
                                   "optim.plateau_patience": 0, "optim.plateau_factor": 0.5, "train.epochs": 4})
    results = list(train_fold(config, toy_data, toy_data.splits.folds[0]))
    assert len({r.metrics["uar"] for r in results}) == 1  # the construction holds
    lrs = [r.state["optimizer"]["param_groups"][0]["lr"] for r in results]
    assert lrs == pytest.approx([lr, lr / 2, lr / 4, lr / 8], rel=1e-12)


def test_sam_trains_through_the_closure(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """A vanishing rho makes SAM's second gradient the first one: training then matches its base optimiser. A real
    rho changes the weights. Resuming SAM from a state continues exactly (its state is the base's)."""
    fold = toy_data.splits.folds[1]
    common = {"train.epochs": 2, "optim.sam_base": "adamw"}
    plain = list(train_fold(toy_config_factory(**common), toy_data, fold))
    flat = list(train_fold(toy_config_factory(**common, **{"optim.name": "sam", "optim.sam_rho": 1e-20}),
                           toy_data, fold))
    assert [r.train_loss for r in flat] == pytest.approx([r.train_loss for r in plain], rel=1e-5)
    for key, value in plain[-1].state["model"].items():
        torch.testing.assert_close(flat[-1].state["model"][key], value, rtol=1e-4, atol=1e-6)
    sharp_config = toy_config_factory(**common, **{"optim.name": "sam", "optim.sam_rho": 0.5})
    sharp = list(train_fold(sharp_config, toy_data, fold))
    distance = sum(float((sharp[-1].state["model"][k] - v).abs().max()) for k, v in plain[-1].state["model"].items())
    assert distance > 1e-3
    resumed = list(train_fold(sharp_config, toy_data, fold, resume=sharp[0].state))
    assert [r.train_loss for r in resumed] == [sharp[1].train_loss]
    assert all(torch.equal(resumed[0].state["model"][k], v) for k, v in sharp[1].state["model"].items())
