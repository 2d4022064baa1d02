"""The Ray Tune trial: one config over k folds, advanced in lockstep, reporting the fold mean every epoch.

ASHA therefore prunes on the cross-validated curve, not on one lucky fold, and every checkpoint holds all folds,
so a restarted trial resumes each fold exactly where it was.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from core.config import Config
from core.data.dataset import prepare_data
from core.train import EpochResult, train_fold
from tune.aggregate import aggregate

STATE_FILE = "fold{}.pt"
META_FILE = "trial.json"


def trial_config(params: dict[str, Any], base: dict[str, Any]) -> Config:
    """The trial's full config: the search's base config with the sampled dotted overrides."""
    return Config.from_dict(base).with_overrides(params).validate()


def cross_validate(params: dict[str, Any], base: dict[str, Any], cpus: float = 1) -> None:
    """Ray Tune function trainable. `params` are the sampled overrides, `base` the search's config as a dict."""
    torch.set_num_threads(max(1, int(cpus)))
    config = trial_config(params, base)
    data = prepare_data(config)  # reuses this node's decode cache, or builds it once
    folds = data.splits.folds
    states: list[dict[str, Any] | None] = [None] * len(folds)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            states = [torch.load(Path(folder) / STATE_FILE.format(f.index), weights_only=False) for f in folds]
    runs = [train_fold(config, data, fold, resume=state) for fold, state in zip(folds, states, strict=True)]
    latest: dict[int, EpochResult] = {}
    active = set(range(len(folds)))
    while active:
        progressed = False
        for i in sorted(active):
            result = next(runs[i], None)
            if result is None or result.stopped:
                active.discard(i)
            if result is not None:
                latest[i], progressed = result, True
        if progressed:
            _report(list(latest.values()))


def _report(latest: list[EpochResult]) -> None:
    """One Tune result for the epoch just finished, with a checkpoint of every fold."""
    epoch = max(r.epoch for r in latest)
    row = aggregate(latest, epoch)
    row["folds_stopped"] = float(sum(r.stopped for r in latest))
    with tempfile.TemporaryDirectory() as folder:
        for result in latest:
            torch.save(result.state, Path(folder) / STATE_FILE.format(result.fold))
        (Path(folder) / META_FILE).write_text(json.dumps({"epoch": epoch}))
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))
