"""The Ray Tune trial: one config over k folds, advanced in lockstep, reporting the fold mean every epoch.

ASHA therefore prunes on the cross-validated curve, not on one lucky fold, and every checkpoint holds all folds,
so a restarted trial resumes each fold exactly where it was. A config whose loss diverges is not a lost worker:
the trial ends at once with a result carrying the reason (`error`), instead of being retried by Tune.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from core.checks import check_config
from core.config import Config
from core.train import NonFiniteLossError
from tune.aggregate import aggregate
from tune.folds import ActorFolds, FoldReport, Folds, LocalFolds, placement, trial_data

STATE_FILE = "fold{}.pt"
META_FILE = "trial.json"


def trial_config(params: dict[str, Any], base: dict[str, Any]) -> Config:
    """The trial's full config: the search's base config with the sampled dotted overrides."""
    return check_config(Config.from_dict(base).with_overrides(params))


def cross_validate(params: dict[str, Any], base: dict[str, Any], cpus: float = 1, fold_parallel: bool = False
                   ) -> None:
    """Ray Tune function trainable. `params` are the sampled overrides, `base` the search's config as a dict."""
    torch.set_num_threads(max(1, int(cpus)))
    config = trial_config(params, base)
    states, latest = restore(config.data.k_fold)
    folds: Folds = (ActorFolds(config, states) if fold_parallel else
                    LocalFolds(config, trial_data(config), states))
    try:
        lockstep(folds, set(states), latest)
    except NonFiniteLossError as error:
        tune.report(diverged(config, latest, error))
    finally:
        folds.close()


def lockstep(folds: Folds, active: set[int], latest: dict[int, FoldReport]) -> None:
    """Step every running fold once per round and report the round; stopped folds keep their last result."""
    while active:
        results = folds.step(sorted(active))
        for index, result in results.items():
            if result is None or result.stopped:
                active.discard(index)
            if result is not None:
                latest[index] = result
        if any(result is not None for result in results.values()):
            report(latest)


def restore(k: int) -> tuple[dict[int, dict[str, Any] | None], dict[int, FoldReport]]:
    """(states of the folds still to run, last reports of folds that had stopped) from Tune's checkpoint."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return dict.fromkeys(range(k)), {}
    states: dict[int, dict[str, Any] | None] = {}
    stopped: dict[int, FoldReport] = {}
    with checkpoint.as_directory() as folder:
        meta = json.loads((Path(folder) / META_FILE).read_text())
        for summary in meta["folds"]:
            report_ = FoldReport(**summary)
            if report_.stopped:  # early stopping fired: resuming it would train past its stop
                stopped[report_.fold] = report_
            else:
                states[report_.fold] = torch.load(Path(folder) / STATE_FILE.format(report_.fold), weights_only=False)
    return states, stopped


def report(latest: dict[int, FoldReport]) -> None:
    """One Tune result for the round just finished, with a checkpoint of every fold."""
    results = [latest[i] for i in sorted(latest)]
    epoch = max(r.epoch for r in results)
    row = aggregate(results, epoch)
    row["folds_stopped"] = float(sum(r.stopped for r in results))
    with tempfile.TemporaryDirectory() as folder:
        for result in results:
            if result.state is not None:
                torch.save(result.state, Path(folder) / STATE_FILE.format(result.fold))
        meta = {"epoch": epoch, "trial": placement(), "folds": [r.summary() for r in results]}
        (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=1))
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))


def diverged(config: Config, latest: dict[int, FoldReport], error: NonFiniteLossError) -> dict[str, Any]:
    """The trial's last result: the objective is NaN (Optuna records a failed trial) and `error` says why."""
    results = [latest[i] for i in sorted(latest)]
    epoch = max((r.epoch for r in results), default=0) + 1
    row: dict[str, Any] = aggregate(results, epoch) if results else {"epoch": epoch}
    metric = config.train.metric
    cause = getattr(error, "cause", None) or error  # from a fold actor, Ray wraps the fold's own exception
    row.update({f"{metric}_mean": math.nan, f"{metric}_std": math.nan, "epoch": epoch,
                "error": f"diverged: {cause.args[0] if cause.args else cause}"})
    return row
