"""One line per trial event instead of Ray's large tables."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from tune.aggregate import fold_values
from tune.leaderboard import trial_status
from tune.storage_full import failed_for_space


def trial_number(trial: Trial) -> str:
    return trial.trial_id.rsplit("_", 1)[-1]


def format_params(config: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(config.items()):
        short = key.split(".")[-1]
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


class TrialLines(Callback):
    """Prints `trial 00003 epoch 2/6  uar 0.612 ± 0.041  folds 0.58 0.65 0.60  lr=3.2e-04 ...`."""

    def __init__(self, metric: str, epochs: int, stream: TextIO | None = None) -> None:
        self.metric = metric
        self.epochs = epochs
        self.stream = stream  # None: sys.stdout at print time (the callback is pickled with the run)

    def _line(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(f"trial {trial_number(trial)} start  {format_params(trial.config)}")

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if result.get("error"):
            return  # said once, by on_trial_complete
        mean, std = result.get(f"{self.metric}_mean", math.nan), result.get(f"{self.metric}_std", math.nan)
        folds = " ".join(f"{v:.3f}" for v in fold_values(result, self.metric))
        self._line(f"trial {trial_number(trial)} epoch {int(result.get('epoch', 0))}/{self.epochs}  "
                   f"{self.metric} {mean:.3f} ± {std:.3f}  folds {folds}  loss {result.get('train_loss_mean', 0):.4f}")

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        result = trial.last_result or {}
        epoch = int(result.get("epoch", 0))
        if result.get("error"):
            self._line(f"trial {trial_number(trial)} ended at epoch {epoch}: {result['error']}")
            return
        how = trial_status(None, result, self.epochs)
        self._line(f"trial {trial_number(trial)} {how} at epoch {epoch}: score {self.metric} "
                   f"{result.get(f'{self.metric}_score', math.nan):.3f} at epoch {int(result.get('score_epoch', 0))}")

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):  # not a lost worker: the search stops (tune/storage_full.py)
            self._line(f"trial {trial_number(trial)} could not save its checkpoint: no space left on the storage")
            return
        latest = trial.latest_checkpoint_result  # what the restart resumes from (the last result may be newer)
        where = f"its checkpoint after epoch {int(latest.metrics.get('epoch', 0))}" if latest else "the start"
        self._line(f"trial {trial_number(trial)} lost its worker; restarting from {where} "
                   f"(retry {trial.num_failures} of {trial.max_failures})")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(f"trial {trial_number(trial)} ERROR: {trial.error_file or 'see the trial log'}")
