"""The k folds of one trial, stepped one epoch at a time: in the trial's own process, or (--fold-parallel) as Ray
actors placed in the trial's placement-group bundles, one bundle per fold.

Either way a step returns one `FoldReport` per fold still running, carrying the fold's full training state, so the
trial checkpoints every fold after every epoch and a restarted trial resumes each fold exactly where it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from core.config import Config
from core.data.dataset import AudioData, CheckedData, prepare_data, reopen
from core.train import EpochResult, train_fold


@dataclass
class FoldReport:
    """One epoch of one fold, without the live model: small enough to cross process boundaries every epoch."""

    fold: int
    epoch: int
    train_loss: float
    metrics: dict[str, float]
    best_epoch: int
    best_score: float
    stopped: bool
    placement: dict[str, Any] = field(default_factory=dict)  # where it ran: pid, node, Ray resources
    state: dict[str, Any] | None = field(default=None, repr=False)  # None once restored from a summary
    outputs: np.ndarray | None = field(default=None, repr=False)  # predictions on the fold's validation rows

    @classmethod
    def from_epoch(cls, result: EpochResult) -> FoldReport:
        return cls(fold=result.fold, epoch=result.epoch, train_loss=result.train_loss, metrics=dict(result.metrics),
                   best_epoch=result.best_epoch, best_score=result.best_score, stopped=result.stopped,
                   placement=placement(), state=result.state, outputs=result.outputs)

    def summary(self) -> dict[str, Any]:
        """Everything but the state and the outputs (JSON for the checkpoint's trial.json)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name not in ("state", "outputs")}


def placement() -> dict[str, Any]:
    """This process's pid, Ray node, placement group and assigned resources: where a fold really ran."""
    if not ray.is_initialized():
        return {"pid": os.getpid()}
    context = ray.get_runtime_context()
    return {"pid": os.getpid(), "node": context.get_node_id(), "placement_group": context.get_placement_group_id(),
            "resources": context.get_assigned_resources()}


class Folds(Protocol):
    def step(self, folds: Sequence[int]) -> dict[int, FoldReport | None]:
        """Advance each of `folds` by one epoch; None for a fold that has no epoch left."""
        ...

    def close(self) -> None: ...


def trial_data(config: Config, checked: CheckedData | None = None) -> AudioData:
    """A trial's data. The driver validated every clip and the recorded split (data.splits_file) before Ray
    started, so a trial skips both checks; given the driver's `checked` data, it looks at no clip at all."""
    if checked is not None:
        return reopen(checked, config)
    return prepare_data(config, check_audio=False, allow_changed_data=True)


def _fold_run(config: Config, data: AudioData, index: int, state: dict[str, Any] | None) -> Iterator[EpochResult]:
    fold = next(f for f in data.splits.folds if f.index == index)
    return train_fold(config, data, fold, resume=state)


class LocalFolds:
    """All folds in the trial's process (the default): no extra processes, one memory-mapped cache."""

    def __init__(self, config: Config, data: AudioData, states: dict[int, dict[str, Any] | None]) -> None:
        self.runs = {index: _fold_run(config, data, index, state) for index, state in states.items()}

    def step(self, folds: Sequence[int]) -> dict[int, FoldReport | None]:
        out: dict[int, FoldReport | None] = {}
        for index in folds:
            result = next(self.runs[index], None)
            out[index] = FoldReport.from_epoch(result) if result is not None else None
        return out

    def close(self) -> None:
        self.runs.clear()


class FoldWorker:
    """A Ray actor training one fold. It prepares the data itself, so a fold on another node builds or reuses
    that node's decode cache from the manifest: nothing assumes the trial's disk is visible there."""

    def __init__(self, config: Config, index: int, state: dict[str, Any] | None, threads: int,
                 checked: CheckedData | None = None) -> None:
        torch.set_num_threads(threads)
        self.run = _fold_run(config, trial_data(config, checked), index, state)

    def step(self) -> FoldReport | None:
        result = next(self.run, None)
        return FoldReport.from_epoch(result) if result is not None else None


class ActorFolds:
    """--fold-parallel: fold i runs as an actor in bundle i + 1 of the trial's placement group (bundle 0 is the
    trial itself). The actors are owned by the trial, so they die with it and restart with it."""

    def __init__(self, config: Config, states: dict[int, dict[str, Any] | None],
                 checked: CheckedData | None = None) -> None:
        group = ray.util.get_current_placement_group()
        if group is None:
            raise RuntimeError("--fold-parallel trial started without a placement group")
        bundles = group.bundle_specs
        remote = ray.remote(FoldWorker)
        self.actors = {}
        for index, state in states.items():
            bundle = index + 1
            spec = bundles[bundle]
            strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=bundle)
            self.actors[index] = remote.options(
                num_cpus=spec.get("CPU", 0), num_gpus=spec.get("GPU", 0), scheduling_strategy=strategy,
                max_restarts=0,  # a lost fold fails the trial, which Tune restarts from its checkpoint
            ).remote(config, index, state, max(1, int(spec.get("CPU", 1))), checked)

    def step(self, folds: Sequence[int]) -> dict[int, FoldReport | None]:
        pending = {index: self.actors[index].step.remote() for index in folds}
        return dict(zip(pending, ray.get(list(pending.values())), strict=True))

    def close(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
