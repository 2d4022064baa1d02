"""The Ray Tune trial: one config over k folds, advanced in lockstep, reporting the fold mean every epoch.

ASHA therefore prunes on the cross-validated curve, not on one lucky fold, and every checkpoint holds all folds,
so a restarted trial resumes each fold exactly where it was. Each result also carries the config's score
(core/scoring.py: the fold-mean curve read at one epoch e* for all folds), which is what Optuna is told and the
leaderboard ranks, and the checkpoint keeps each fold's validation predictions at e*: the out-of-fold predictions
the search writes for its winner. A config whose loss diverges is not a lost worker: the trial ends at once with a
result carrying the reason (`error`), instead of being retried by Tune.
"""

from __future__ import annotations

import json
import math
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune

from core.checks import trial_config
from core.config import Config
from core.data.dataset import CheckedData
from core.errors import UserError
from core.metrics import METRICS
from core.scoring import CrossValidatedScore, cross_validated_score
from core.train import NonFiniteLossError
from tune.engine.folds import ActorFolds, FoldReport, Folds, LocalFolds, placement, trial_data
from tune.results.aggregate import aggregate, score_row, scores_at

STATE_FILE = "fold{}.pt"
META_FILE = "trial.json"
PREDICTIONS_FILE = "predictions.npz"  # per fold: `selected{i}` (at e*) and `last{i}` (its latest epoch)


@dataclass
class TrialProgress:
    """What a trial carries from round to round and keeps in its checkpoint: each fold's last report, its metric
    after every epoch (the score is computed from these alone), and its validation outputs at e* so far."""

    metric: str
    mode: str
    select: str
    latest: dict[int, FoldReport] = field(default_factory=dict)
    curves: dict[int, list[float]] = field(default_factory=dict)  # fold -> metric after epoch 1, 2, ...
    selected: dict[int, np.ndarray] = field(default_factory=dict)  # fold -> validation outputs at e*
    selected_epoch: int = 0
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)  # fold -> all metrics per epoch

    @classmethod
    def of(cls, config: Config) -> TrialProgress:
        t = config.train
        return cls(metric=t.metric, mode=METRICS.get(t.metric).mode, select=t.select)

    @property
    def epoch(self) -> int:
        return max((len(values) for values in self.curves.values()), default=0)

    def record(self, index: int, result: FoldReport) -> None:
        self.latest[index] = result
        self.curves.setdefault(index, []).append(result.metrics.get(self.metric, math.nan))
        self.histories.setdefault(index, []).append(dict(result.metrics))

    def score(self) -> CrossValidatedScore:
        return cross_validated_score([self.curves[i] for i in sorted(self.curves)], self.mode, self.select)

    def keep_outputs(self, score: CrossValidatedScore) -> None:
        """e* is this round's epoch (a new best, or select=last): keep every fold's outputs of this round (a fold
        that stopped early: its last ones, as its value at e* is its last value)."""
        if score.epoch == self.epoch and score.epoch != self.selected_epoch:
            self.selected = {i: r.outputs for i, r in self.latest.items() if r.outputs is not None}
            self.selected_epoch = score.epoch


def cross_validate(params: dict[str, Any], base: dict[str, Any], cpus: float = 1, fold_parallel: bool = False,
                   checked: CheckedData | None = None) -> None:
    """Ray Tune function trainable. `params` are the sampled overrides, `base` the search's config as a dict,
    `checked` the data the driver validated (its manifest, splits and decode cache: no clip is looked at again)."""
    torch.set_num_threads(max(1, int(cpus)))
    config = trial_config(params, base)
    progress = TrialProgress.of(config)
    states = restore(config.data.k_fold, progress)
    folds: Folds = (ActorFolds(config, states, checked) if fold_parallel else
                    LocalFolds(config, trial_data(config, checked), states))
    try:
        lockstep(folds, set(states), progress)
    except NonFiniteLossError as error:
        tune.report(diverged(config, progress, error))
    finally:
        folds.close()


def lockstep(folds: Folds, active: set[int], progress: TrialProgress) -> None:
    """Step every running fold once per round and report the round; stopped folds keep their last result."""
    while active:
        results = folds.step(sorted(active))
        for index, result in results.items():
            if result is None or result.stopped:
                active.discard(index)
            if result is not None:
                progress.record(index, result)
        if any(result is not None for result in results.values()):
            report(progress)


def restore(k: int, progress: TrialProgress) -> dict[int, dict[str, Any] | None]:
    """States of the folds still to run, from Tune's checkpoint; what the checkpoint knew goes into `progress`
    (folds that had stopped keep their last report there)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return dict.fromkeys(range(k))
    with checkpoint.as_directory() as folder:
        return restore_from(Path(folder), progress)


def restore_from(folder: Path, progress: TrialProgress) -> dict[int, dict[str, Any] | None]:
    """`restore` from a trial checkpoint folder (the run folder's copy, which may live on shared storage)."""
    states: dict[int, dict[str, Any] | None] = {}
    with np.load(folder / PREDICTIONS_FILE) as predictions:  # allow_pickle stays False: arrays only
        meta = json.loads((folder / META_FILE).read_text())
        progress.curves = {int(fold): list(values) for fold, values in meta["curves"].items()}
        progress.selected_epoch = int(meta["selected_epoch"])
        progress.histories = {int(fold): values for fold, values in meta.get("histories", {}).items()}
        progress.selected = {i: predictions[f"selected{i}"] for i in progress.curves if f"selected{i}" in predictions}
        for summary in meta["folds"]:
            report_ = FoldReport(**summary)
            if report_.stopped:  # early stopping fired: resuming it would train past its stop
                report_.outputs = predictions.get(f"last{report_.fold}")
                progress.latest[report_.fold] = report_
            else:
                states[report_.fold] = load_fold_state(folder / STATE_FILE.format(report_.fold))
    return states


def load_fold_state(file: Path) -> dict[str, Any]:
    """A fold's saved state: tensors, dicts, lists and numbers only (`weights_only=True`; train_fold saves
    nothing else), so a crafted file in a shared run folder cannot run code in the trial worker."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never passed on
        raise UserError(f"{file}: refused: not a plain fold checkpoint (it holds Python objects that would run "
                        "code when loaded); delete the trial's checkpoint or start the search afresh") from None


def report(progress: TrialProgress) -> None:
    """One Tune result for the round just finished (fold mean of this epoch, and the score so far), with a
    checkpoint of every fold."""
    results = [progress.latest[i] for i in sorted(progress.latest)]
    score = progress.score()
    progress.keep_outputs(score)
    row = aggregate(results, progress.epoch)
    row["folds_stopped"] = float(sum(r.stopped for r in results))
    row.update(score_row(progress.metric, sorted(progress.curves), score))
    row.update(scores_at(progress.histories, score.epoch, progress.metric))  # other objectives, at the same e*
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(Path(folder), progress, score)
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))


def write_checkpoint(folder: Path, progress: TrialProgress, score: CrossValidatedScore) -> None:
    """Every fold's state, its outputs and the trial's curves into `folder` (what `restore_from` reads)."""
    results = [progress.latest[i] for i in sorted(progress.latest)]
    for result in results:
        if result.state is not None:
            torch.save(result.state, folder / STATE_FILE.format(result.fold))
    arrays = {f"selected{i}": outputs for i, outputs in progress.selected.items()}
    arrays.update({f"last{r.fold}": r.outputs for r in results if r.outputs is not None})
    np.savez(folder / PREDICTIONS_FILE, **arrays)
    meta = {"epoch": progress.epoch, "trial": placement(), "folds": [r.summary() for r in results],
            "curves": {str(i): values for i, values in progress.curves.items()},
            "selected_epoch": progress.selected_epoch, "score": score.to_dict(),
            "histories": {str(i): values for i, values in progress.histories.items()}}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))


def selected_predictions(folder: Path) -> tuple[int, dict[int, np.ndarray]]:
    """(e*, {fold: validation outputs at e*}) from a trial's checkpoint folder."""
    meta = json.loads((folder / META_FILE).read_text())
    with np.load(folder / PREDICTIONS_FILE) as predictions:
        folds = {int(key.removeprefix("selected")): predictions[key] for key in predictions.files
                 if key.startswith("selected")}
    return int(meta["selected_epoch"]), folds


def diverged(config: Config, progress: TrialProgress, error: NonFiniteLossError) -> dict[str, Any]:
    """The trial's last result: the objective and score are NaN (Optuna records a failed trial) and `error` says
    why."""
    results = [progress.latest[i] for i in sorted(progress.latest)]
    epoch = progress.epoch + 1
    row: dict[str, Any] = aggregate(results, epoch) if results else {"epoch": epoch}
    metric = config.train.metric
    cause = getattr(error, "cause", None) or error  # from a fold actor, Ray wraps the fold's own exception
    row.update({f"{metric}_mean": math.nan, f"{metric}_std": math.nan, f"{metric}_score": math.nan,
                f"{metric}_score_std": math.nan, "score_epoch": 0.0, "epoch": epoch,
                "error": f"diverged: {cause.args[0] if cause.args else cause}"})
    return row
