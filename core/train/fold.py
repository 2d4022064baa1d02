"""`train_fold`: one model/loss/fold, one result per epoch. Pure: everything comes in through its arguments.

Ray is not needed: `tune/` advances several of these generators in lockstep, `python -m core.train` runs them
one after another, and a test can just iterate one. Imported as `from core.train import train_fold`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch, make_batch
from core.data.dataset import AudioData
from core.data.samplers import SAMPLERS
from core.data.splits import Fold
from core.devices import resolve_device
from core.evaluate import predict, score
from core.log_mel_cache import cached_front_end
from core.losses import LOSSES
from core.metrics import METRICS
from core.models import MODELS
from core.models.freezing import fine_tuning_groups
from core.models.frozen import full_model, with_cached_encoder
from core.optim import OPTIMIZERS, SCHEDULERS, needs_closure
from core.optim.sam import frozen_batch_norm_statistics
from core.randomness import FoldRandom, fold_seed
from core.statistics import FoldStatistics


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the config diverged (the search marks the trial errored)."""


@dataclass
class EpochResult:
    fold: int
    epoch: int  # 1-based
    train_loss: float
    metrics: dict[str, float]  # validation metrics of this epoch; empty without validation rows
    best_epoch: int  # epoch with the best validation score so far (the last epoch without validation)
    best_score: float
    stopped: bool  # early stopping fired: no further epochs follow
    state: dict[str, Any] = field(repr=False)  # torch.save-able; pass back as `resume` to continue exactly
    selected: Callable[[], nn.Module] = field(repr=False)  # read it as `model`, before the generator goes on
    featurizer: nn.Module = field(repr=False)
    outputs: np.ndarray | None = field(default=None, repr=False)  # this epoch's predictions on fold.valid, in order

    @property
    def model(self) -> nn.Module:
        """The selected model (best or last epoch, per train.select) on the training device. With select=best it
        is built from the CPU copy of the best weights when first read: a search never reads it, so it never
        holds a second model on the device."""
        return self.selected()


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16/fp16 autocast on CUDA; a disabled context on CPU or with fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    enabled = device.type == "cuda" and dtype != torch.float32
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA only: bf16 has fp32's exponent range, and CPU never autocasts here."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and precision == "fp16")


def cpu_copy(value: Any) -> Any:
    """A copy of a (nested dict/list/tuple) state with every tensor detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(cpu_copy(item) for item in value)
    return copy.deepcopy(value)


@dataclass
class _Progress:
    """What early stopping and epoch selection need to remember."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = math.nan
    since_best: int = 0
    best_model: dict[str, torch.Tensor] | None = None  # on the CPU: the best epoch's own resume snapshot
    stopped: bool = False  # early stopping fired: a fold resumed from this state must not train further

    def improved(self, value: float, mode: str) -> bool:
        if math.isnan(value):
            return False
        return math.isnan(self.best_score) or (value > self.best_score if mode == "max" else value < self.best_score)


def train_fold(config: Config, data: AudioData, fold: Fold,
               resume: dict[str, Any] | None = None) -> Iterator[EpochResult]:
    """Train `config` on `fold.train`, validating on `fold.valid` after every epoch; yield one result per epoch, up
    to `train.stop_epoch` when it is set.

    Seeded from `train.seed` and the fold index, with its own RNG streams: two runs on CPU give the same numbers,
    and so does a run resumed from any yielded `state`.

    LP-FT (`train.probe_epochs = N`): the first N epochs are the probe's own (the encoder frozen, from the cache
    where it applies, the schedule over N epochs: the same numbers as a probe of N epochs); then the encoder
    unfreezes at `optim.encoder_lr_scale x lr`, with a fresh optimiser and the schedule over the remaining epochs.
    """
    t = config.train
    spec = MODELS.get(config.model.name)
    device = resolve_device(t.device)
    random = FoldRandom(fold_seed(t.seed, fold.index))
    stats = FoldStatistics.from_data(data, fold.train)
    probe = config.with_overrides({"model.freeze_encoder": True}) if t.probe_epochs else config  # LP-FT's first
    with random.active(device):
        classifier = spec.build(probe, data.num_outputs, stats).to(device)
        waveform_featurizer = spec.featurizer(probe, stats).to(device)  # a result's model and featurizer read waveforms
    loss_fn = LOSSES.get(config.loss.name)(config, stats).to(device)
    steps_per_epoch = math.ceil(len(fold.train) / t.batch_size)
    mode = METRICS.get(t.metric).mode
    schedule = SCHEDULERS.get(config.optim.scheduler)
    last_epoch = t.stop_epoch or t.epochs

    def start(fine_tune: bool) -> tuple[nn.Module, nn.Module, Callable, torch.optim.Optimizer, Any]:
        """(model, featurizer, front end, optimiser, scheduler) of the first epochs (a frozen encoder may train its
        head on cached outputs) or of LP-FT's fine-tuning (the whole classifier on waveforms)."""
        if fine_tune:
            trained, features = classifier, waveform_featurizer
            params: Any = fine_tuning_groups(classifier, config.optim.lr, config.optim.encoder_lr_scale)
        else:
            trained, features = with_cached_encoder(probe, data, classifier, waveform_featurizer, device)
            params = (p for p in trained.parameters() if p.requires_grad)
        built = OPTIMIZERS.get(config.optim.name)(params, config.optim)
        # The schedule spans train.epochs (LP-FT: each phase's) even when train.stop_epoch ends training sooner: the
        # final run then follows the learning-rate trajectory the search's folds validated, epoch for epoch.
        epochs = t.probe_epochs if t.probe_epochs and not fine_tune else t.epochs - t.probe_epochs
        # The log-mel once per clip for the whole trial (the store is data's, shared by its folds).
        return (trained, features, cached_front_end(features, data, device), built,
                schedule(built, config.optim, steps_per_epoch * epochs, mode))

    fine_tuning = bool(t.probe_epochs) and resume is not None and resume["progress"]["epoch"] > t.probe_epochs
    model, featurizer, front_end, optimizer, scheduler = start(fine_tuning)
    scaler = grad_scaler(device, t.precision)
    progress = _Progress()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        random.load_state_dict(resume["random"])
        progress = _Progress(**resume["progress"])
    if progress.stopped:  # resumed from the epoch where early stopping fired: nothing is left to train
        return
    best_on_device: nn.Module | None = None  # built when a result's `model` is first read, then reused

    def selected(best: dict[str, torch.Tensor] | None) -> nn.Module:
        nonlocal best_on_device
        if t.select != "best" or best is None:  # select=last, or no epoch had a finite metric: the live model
            return full_model(model)
        if best_on_device is None:
            best_on_device = copy.deepcopy(model)
        best_on_device.load_state_dict(best)
        return full_model(best_on_device)

    def backward(features: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        """Loss and (clipped) gradients at the current weights. SAM calls it a second time at its perturbed weights,
        on the same features (the config refuses SAM + fp16: GradScaler cannot step an optimiser through a
        closure)."""
        with autocast(device, t.precision):  # the model only: the features are already computed, in fp32
            loss = loss_fn(model(features, batch), batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"fold {fold.index} epoch {epoch}: training loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.optim.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        return loss

    for epoch in range(progress.epoch + 1, last_epoch + 1):
        if t.probe_epochs and epoch == t.probe_epochs + 1:  # LP-FT: the probe is done; the encoder unfreezes
            model, featurizer, front_end, optimizer, scheduler = start(fine_tune=True)
            if progress.best_model is not None:  # a probe epoch's head on the encoder it was trained with
                progress.best_model = {**cpu_copy(classifier.state_dict()), **progress.best_model}
            best_on_device = None
        model.train()
        featurizer.train()
        losses = []
        with random.active(device):
            for rows in SAMPLERS.get(t.sampler)(data, fold.train, t.batch_size, random.numpy):
                batch = make_batch(data, rows, device)
                # Once per step: SAM's second pass must see the very same augmentation. The featurizer has no
                # trained parameters, so the features need no graph.
                with torch.no_grad():
                    features = front_end(batch)
                loss = backward(features, batch, epoch)
                if needs_closure(optimizer):  # SAM: a second pass at w + e, which must not move BN statistics
                    with frozen_batch_norm_statistics(model):
                        scaler.step(optimizer, functools.partial(backward, features, batch, epoch))
                else:
                    scaler.step(optimizer)
                scaler.update()
                if not schedule.per_epoch:
                    scheduler.step()
                losses.append(loss.item())

        metrics: dict[str, float] = {}
        outputs = None
        if len(fold.valid):
            outputs = predict(model, front_end, data, fold.valid, device, t.eval_batch_size)
            if not np.isfinite(outputs).all():  # weights blew up although the last batch's loss was finite
                raise NonFiniteLossError(f"fold {fold.index} epoch {epoch}: validation outputs are not finite")
            metrics = score(data, fold.valid, outputs, config.data)
        progress.epoch = epoch
        value = metrics.get(t.metric, math.nan)
        if schedule.per_epoch and metrics:  # e.g. reduce-on-plateau: once per epoch, on the validation metric
            scheduler.step(value)
        # A snapshot on the CPU, not views of the live tensors: a state kept while training goes on must still
        # resume exactly, and the device holds only the live model and its optimiser.
        weights = cpu_copy(model.state_dict())
        if not metrics or progress.improved(value, mode):
            progress.best_epoch, progress.best_score, progress.since_best = epoch, value, 0
            if t.select == "best":
                progress.best_model = weights  # never modified, so this epoch's and later states share it
        else:
            progress.since_best += 1
        stopped = progress.stopped = t.patience > 0 and progress.since_best >= t.patience and epoch < last_epoch
        state = {"model": weights, "optimizer": cpu_copy(optimizer.state_dict()),
                 "scheduler": copy.deepcopy(scheduler.state_dict()), "scaler": copy.deepcopy(scaler.state_dict()),
                 "random": cpu_copy(random.state_dict()), "progress": dict(vars(progress))}
        yield EpochResult(fold=fold.index, epoch=epoch, train_loss=float(np.mean(losses)), metrics=metrics,
                          best_epoch=progress.best_epoch, best_score=progress.best_score, stopped=stopped,
                          state=state, selected=functools.partial(selected, progress.best_model),
                          featurizer=waveform_featurizer, outputs=outputs)
        if stopped:
            return

