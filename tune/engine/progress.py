"""One line per trial event instead of Ray's large tables, and after every finished trial a summary of the search:
`7/40 done, 2 running, 1 errored · best uar 0.712 ± 0.021 (trial 3f2a9c01) · 12 min elapsed, ~30 min left`."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from tune.engine.storage_full import failed_for_space
from tune.results.aggregate import fold_values
from tune.results.leaderboard import trial_status


def trial_number(trial: Trial) -> str:
    return trial.trial_id.rsplit("_", 1)[-1]


def format_params(config: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(config.items()):
        short = key.split(".")[-1]
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `2.5 h`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def is_errored(trial: Trial) -> bool:
    """Tune gave up on it, or the trainable ended it with an `error` result (a diverged config)."""
    return trial.status == Trial.ERROR or bool(trial.last_result.get("error"))


def search_summary(trials: list[Trial], ended: Trial | None, total: int, metric: str, mode: str,
                   elapsed: float, concurrency: int) -> str:
    """The search at a glance. `ended`: the trial whose end is being reported (Tune marks it finished only after
    its callbacks ran). The estimate: the mean finished-trial time times the trials left, over `concurrency`."""
    finished = [t for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR) or t is ended]
    running = sum(t.status == Trial.RUNNING and t is not ended for t in trials)
    errored = [t for t in finished if is_errored(t)]
    parts = [f"{len(finished)}/{total} done, {running} running, {len(errored)} errored"]
    scored = [t for t in finished if t not in errored
              and math.isfinite(t.last_result.get(f"{metric}_score", math.nan))]
    if scored:
        sign = 1 if mode == "max" else -1
        best = max(scored, key=lambda t: sign * t.last_result[f"{metric}_score"])
        score, std = best.last_result[f"{metric}_score"], best.last_result.get(f"{metric}_score_std", math.nan)
        parts.append(f"best {metric} {score:.3f} ± {std:.3f} (trial {trial_number(best)})")
    else:
        parts.append(f"best {metric} none yet")
    times = [float(t.last_result["time_total_s"]) for t in finished if t.last_result.get("time_total_s")]
    if total - len(finished) <= 0:
        left = "nothing left"
    elif times:
        left = f"~{duration(sum(times) / len(times) * (total - len(finished)) / max(1, concurrency))} left"
    else:
        left = "~? left"
    parts.append(f"{duration(elapsed)} elapsed, {left}")
    return " · ".join(parts)


class TrialLines(Callback):
    """Prints `trial 3f2a9c01 epoch 2/6  uar 0.612 ± 0.041  folds 0.58 0.65 0.60  lr=3.2e-04 ...`, and the search's
    summary (`search_summary`) after every trial that ends."""

    def __init__(self, metric: str, epochs: int, stream: TextIO | None = None, mode: str = "max") -> None:
        self.metric = metric
        self.epochs = epochs
        self.mode = mode
        self.stream = stream  # None: sys.stdout at print time (the callback is pickled with the run)
        self.total = 0
        self.started = time.time()
        self.concurrency = 1  # the most trials seen running at once: what the estimate divides by

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self.total = total_num_samples or num_samples or 0
        self.started = time.time()  # a resumed search: its elapsed time counts from the resume

    def summary(self, trials: list[Trial], ended: Trial | None) -> None:
        running = sum(t.status == Trial.RUNNING for t in trials)
        self.concurrency = max(self.concurrency, running)
        self._line(search_summary(trials, ended, max(self.total, len(trials)), self.metric, self.mode,
                                  time.time() - self.started, self.concurrency))

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
        else:
            how = trial_status(None, result, self.epochs)
            self._line(f"trial {trial_number(trial)} {how} at epoch {epoch}: score {self.metric} "
                       f"{result.get(f'{self.metric}_score', math.nan):.3f} at epoch "
                       f"{int(result.get('score_epoch', 0))}")
        self.summary(trials, trial)

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):  # not a lost worker: the search stops (tune/engine/storage_full.py)
            self._line(f"trial {trial_number(trial)} could not save its checkpoint: no space left on the storage")
            return
        latest = trial.latest_checkpoint_result  # what the restart resumes from (the last result may be newer)
        where = f"its checkpoint after epoch {int(latest.metrics.get('epoch', 0))}" if latest else "the start"
        self._line(f"trial {trial_number(trial)} lost its worker; restarting from {where} "
                   f"(retry {trial.num_failures} of {trial.max_failures})")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(f"trial {trial_number(trial)} ERROR: {trial.error_file or 'see the trial log'}")
        self.summary(trials, trial)
