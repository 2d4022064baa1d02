"""Every check of a config beyond its schema, in one place; every entry point calls it before any work.

- `check_config(config)`: the schema (`Config.validate`), then the rules that need the registries: names that must
  be registered (listing the choices), head/loss/metric agreement on the task each registered loss and metric
  carries, SAM's rules, each model's own rules (`ModelSpec.check`), and the masks and mel bands against the
  spectrogram the model takes. Reads the config only, so a trial can afford it as well as the driver.
- `check_run(config, data)`: the rules that need the prepared data or the model's source files: every class in
  every part of the split, enough optimiser steps for the schedule, a pretrained model's own front end
  (`ModelSpec.check_pretrained`), and the report's positive class among the data's classes. Called once the data
  is prepared, before Ray starts (tune.run) or before training (core.train, tune.final).

Each raises `ConfigError` with the one-line "KEY=VALUE: why" message of `core.config.require` (a split that
lacks a class: `DataError` naming the manifest).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.config import Config, all_keys, require
from core.data.dataset import AudioData
from core.data.samplers import SAMPLERS
from core.errors import ConfigError, DataError
from core.features import LOG_MELS, WhisperLogMel
from core.losses import LOSSES
from core.metrics import METRICS
from core.models import MODELS
from core.models.pretrained import check_source
from core.models.resnet import empty_mel_bands
from core.optim import OPTIMIZERS, SCHEDULERS
from core.registry import CLASSIFICATION, REGRESSION, Registry
from core.statistics import positive_class

SAM = "sam"
ONE_CYCLE_MIN_STEPS = 3  # a one-cycle schedule needs steps to rise and to fall, at least one each


def check_config(config: Config) -> Config:
    """The schema and every rule that needs the registries; return the config (so calls can chain)."""
    config.validate()
    _registered_names(config)
    _optimizer_rules(config)
    MODELS.get(config.model.name).check(config)
    _task_rules(config)
    _spectrogram_rules(config)
    _inert_rules(config)
    return config


MODEL_SECTIONS = ("features", "augment", "model")  # the sections whose keys a model declares it reads


def ignored_keys(config: Config) -> list[str]:
    """Keys of `features`, `augment` and `model` set away from their default that the chosen model does not read
    under this config (`ModelSpec.reads`): settings that would be accepted and change nothing."""
    reads = MODELS.get(config.model.name).reads(config)
    defaults = Config()
    return [key for key in all_keys() if key.split(".")[0] in MODEL_SECTIONS and key not in reads
            and config.get(key) != defaults.get(key)]


def _inert_rules(c: Config) -> None:
    for key in ignored_keys(c):
        require(False, key, f"model.name={c.model.name!r} does not read it with this config, so it would change "
                f"nothing; remove it (default: {Config().get(key)!r})", c)


def trial_config(params: dict[str, Any], base: dict[str, Any]) -> Config:
    """A trial's full config: the search's base config with the sampled dotted overrides, checked."""
    return check_config(Config.from_dict(base).with_overrides(params))


def check_run(config: Config, data: AudioData, training_rows: Sequence[np.ndarray] | None = None) -> None:
    """The rules that need the data or the model's files. `training_rows`: the training split of each run to come
    (default: every fold's; final training passes the development rows)."""
    rows = [fold.train for fold in data.splits.folds] if training_rows is None else training_rows
    _test_size_rule(config, data)
    _split_rules(config, data)
    _schedule_rules(config, (len(split) for split in rows))
    check_source(config.model.pretrained)  # a missing path is named first; a pickle of objects is refused
    MODELS.get(config.model.name).check_pretrained(config)
    if not data.regression:  # every report names its positive class: found now, not after training
        positive_class(data.classes, config.data.positive_class)


def check_final_training(config: Config) -> None:
    """Final training (tune.final) has no validation rows: a scheduler that steps on validation scores would keep
    `optim.lr` while the folds' learning rate fell, so such a validated recipe cannot be replayed."""
    require(SCHEDULERS.get(config.optim.scheduler).replayable, "optim.scheduler",
            "final training has no validation rows to step it on, so it cannot follow the folds' learning rates; "
            f"search with a per-step schedule ({_either([n for n in SCHEDULERS if SCHEDULERS.get(n).replayable])})",
            config)


def head_task(config: Config) -> str:
    return REGRESSION if config.model.head == "regressor" else CLASSIFICATION


def _registered_names(c: Config) -> None:
    registries: tuple[tuple[str, Registry], ...] = (
        ("model.name", MODELS), ("loss.name", LOSSES), ("optim.name", OPTIMIZERS), ("optim.sam_base", OPTIMIZERS),
        ("optim.scheduler", SCHEDULERS), ("train.metric", METRICS), ("train.sampler", SAMPLERS),
        ("features.normalize", LOG_MELS))
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


def spectrogram_frames(config: Config) -> int | None:
    """Frames of the log-mel the model takes (Whisper: from the clip length and hop; resnet50: 224), or None for a
    model that takes waveforms. Read off the model's own featurizer, so it is the number the masks meet."""
    plain = config.with_overrides({"features.conditioning": "none"})  # the frames do not depend on the rows
    with warnings.catch_warnings():  # torchaudio's empty-band warning: `_spectrogram_rules` reports those itself
        warnings.simplefilter("ignore", UserWarning)
        featurizer = MODELS.get(config.model.name).featurizer(plain)
    log_mels = [part for part in featurizer.modules() if isinstance(part, WhisperLogMel)]
    return log_mels[0].frames if log_mels else None


def _spectrogram_rules(c: Config) -> None:
    """A time mask wider than the model's input is cut to it (`mask_along`), so such a value is a mistake that
    would blank whole spectrograms now and then, as `augment.freq_mask` is bounded by `features.n_mels`; mel bands
    narrower than one FFT bin are rows of zeros."""
    frames = spectrogram_frames(c)
    if frames is None:
        return
    require(c.augment.time_mask <= frames, "augment.time_mask",
            f"must be <= the {frames} frames of {c.model.name}'s input (data.max_seconds at its hop length)", c)
    f = c.features
    empty = empty_mel_bands(c.data.sample_rate, f.n_fft, f.n_mels)
    require(not empty, "features.n_fft", f"{f.n_fft // 2 + 1} frequency bins leave {empty} of features.n_mels="
            f"{f.n_mels} mel bands empty; raise features.n_fft or lower features.n_mels", c)


def _split_rules(c: Config, data: AudioData) -> None:
    """Every part of the split must be usable: each fold's training and validation rows and the test rows hold
    every class (a fold without one cannot score it), or for regression are not empty. The splitter makes sure of
    this for the splits it draws; pre-split files and recorded splits (data.splits_file) are the user's."""
    parts = [("the test set", data.splits.test)]
    for fold in data.splits.folds:
        parts += [(f"fold {fold.index}'s training rows", fold.train), (f"fold {fold.index}'s validation rows",
                                                                         fold.valid)]
    for name, rows in parts:
        if data.regression:
            if not len(rows):
                raise DataError(f"{data.manifest.source}: {name} are empty; check data.test_size, "
                                  "data.valid_size, data.k_fold or the pre-split files")
            continue
        missing = sorted(set(range(len(data.classes))) - set(data.targets[rows].tolist()))
        if missing:
            names = ", ".join(repr(data.classes[i]) for i in missing)
            raise DataError(f"{data.manifest.source}: {name} hold no clip of class {names}; every part of the split "
                              "needs every class (check the pre-split files, data.test_size or data.k_fold)")


def _test_size_rule(c: Config, data: AudioData) -> None:
    """The splitter holds out at least one speaker of each class (core/data/splits.py `_hold_out`), so a
    data.test_size of less than half of one speaker's clips of a class would silently become a much larger test
    set: refused, with the smallest share that holds one speaker out. Pre-split and recorded splits are the user's."""
    d = c.data
    if d.test_file or d.splits_file:
        return
    units, unit = (data.speakers, "speaker") if data.speakers is not None else (np.arange(len(data.targets)), "clip")
    labels = np.zeros(len(data.targets)) if data.regression else data.targets
    for label in np.unique(labels):
        rows = labels == label
        smallest = int(np.unique(units[rows], return_counts=True)[1].min())
        if d.test_size * rows.sum() < smallest / 2:
            minimum = math.ceil(smallest / 2 / rows.sum() * 100) / 100
            of = "" if data.regression else f" of class {data.classes[int(label)]!r}"
            raise ConfigError(f"data.test_size={d.test_size:g}: less than half of one {unit}'s clips{of} "
                              f"({smallest} of {int(rows.sum())}); the test set holds at least one {unit} of each "
                              f"class: use data.test_size >= {minimum:g}")


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
