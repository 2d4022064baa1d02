"""Every check of a config beyond its schema, in one place; every entry point calls it before any work.

- `check_config(config)`: the schema (`Config.validate`), then the rules that need the registries: names that must
  be registered (listing the choices), head/loss/metric agreement on the task each registered loss and metric
  carries, SAM's rules, and each model's own rules (`ModelSpec.check`). Reads the config only, so a trial can
  afford it as well as the driver.
- `check_run(config, data)`: the rules that need the prepared data or the model's source files: enough optimiser
  steps for the schedule, a pretrained model's own front end (`ModelSpec.check_pretrained`), and the report's
  positive class among the data's classes. Called once the
  data is prepared, before Ray starts (tune.run) or before training (core.train, tune.final).

Each raises `ConfigError` with the one-line "KEY=VALUE: why" message of `core.config.require`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from core.config import Config, require
from core.data.dataset import AudioData
from core.data.samplers import SAMPLERS
from core.errors import ConfigError
from core.losses import LOSSES
from core.metrics import METRICS
from core.models import MODELS
from core.optim import OPTIMIZERS, SCHEDULERS
from core.registry import CLASSIFICATION, REGRESSION, Registry
from core.statistics import positive_class

SAM = "sam"
ONE_CYCLE_MIN_STEPS = 3  # OneCycleLR divides by the length of its rising and falling phases, each >= 1 step


def check_config(config: Config) -> Config:
    """The schema and every rule that needs the registries; return the config (so calls can chain)."""
    config.validate()
    _registered_names(config)
    _optimizer_rules(config)
    MODELS.get(config.model.name).check(config)
    _task_rules(config)
    return config


def check_run(config: Config, data: AudioData, training_rows: Sequence[np.ndarray] | None = None) -> None:
    """The rules that need the data or the model's files. `training_rows`: the training split of each run to come
    (default: every fold's; final training passes the development rows)."""
    rows = [fold.train for fold in data.splits.folds] if training_rows is None else training_rows
    _schedule_rules(config, (len(split) for split in rows))
    MODELS.get(config.model.name).check_pretrained(config)
    if not data.regression:  # every report names its positive class: found now, not after training
        positive_class(data.classes, config.data.positive_class)


def head_task(config: Config) -> str:
    return REGRESSION if config.model.head == "regressor" else CLASSIFICATION


def _registered_names(c: Config) -> None:
    registries: tuple[tuple[str, Registry], ...] = (
        ("model.name", MODELS), ("loss.name", LOSSES), ("optim.name", OPTIMIZERS), ("optim.sam_base", OPTIMIZERS),
        ("optim.scheduler", SCHEDULERS), ("train.metric", METRICS), ("train.sampler", SAMPLERS))
    for key, registry in registries:
        registry.check(key, c.get(key))


def _optimizer_rules(c: Config) -> None:
    plain = [name for name in OPTIMIZERS if name != SAM]
    require(c.optim.sam_base != SAM, "optim.sam_base", f"SAM wraps a plain optimiser: {_either(plain)}", c)
    require(c.optim.name != SAM or c.train.precision != "fp16", "train.precision",
            "fp16 is not supported with optim.name=sam: its GradScaler cannot step an optimiser through a closure "
            "(SAM's second pass); use bf16 (no scaler needed) or fp32", c)


def _task_rules(c: Config) -> None:
    """Head, loss and selection metric must agree on the task: a regressor has one output and no classes."""
    task = head_task(c)
    losses = [name for name in LOSSES if LOSSES.get(name).task == task]
    wanted = f"one of {', '.join(losses)}" if task == REGRESSION else f"a {task} loss"
    require(LOSSES.get(c.loss.name).task == task, "loss.name", f"model.head={c.model.head!r} needs {wanted}", c)
    metrics = [name for name in METRICS if METRICS.get(name).task == task]
    require(METRICS.get(c.train.metric).task == task, "train.metric",
            f"model.head={c.model.head!r} is scored by {task} metrics: one of {', '.join(metrics)}", c)
    require(c.loss.name != "huber" or c.loss.huber_delta > 0, "loss.huber_delta", "must be positive", c)


def _schedule_rules(c: Config, training_sizes: Iterable[int]) -> None:
    """One-cycle needs a rising and a falling phase: at least 3 optimiser steps in the shortest run."""
    if c.optim.scheduler != "one_cycle":
        return
    batches = min((math.ceil(size / c.train.batch_size) for size in training_sizes), default=0)  # as train_fold
    steps = batches * c.train.epochs
    if steps < ONE_CYCLE_MIN_STEPS:
        raise ConfigError(f"optim.scheduler='one_cycle' needs at least {ONE_CYCLE_MIN_STEPS} optimiser steps, got "
                          f"{steps} ({batches} batch(es) of train.batch_size={c.train.batch_size} x "
                          f"train.epochs={c.train.epochs}); raise train.epochs or lower train.batch_size")


def _either(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
