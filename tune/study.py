"""The search as an Optuna study in SQLite, for optuna-dashboard and later analysis.

Tune's own experiment checkpoint is the source of truth (it resumes the sampler after a killed driver); the
SQLite file is rebuilt from the finished trials at the end of every run. Keeping Optuna's live study in SQLite
instead breaks resume after SIGKILL (the saved searcher state is older than the database).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import optuna
from ray.tune import ResultGrid

from search_spaces import SearchSpace
from tune.pinning import PinnedSpace


def record_study(grid: ResultGrid, space: SearchSpace, metric: str, mode: str, study_name: str,
                 pinned: dict[str, Any] | None = None, demo: bool = False) -> bytes:
    """SQLite bytes of a study holding every trial: its parameters, per-epoch fold means and its score.
    Pinned keys (--set on a searched key) are constants, not parameters: kept as the study's user attributes."""
    pinned = pinned or {}
    define = PinnedSpace(space.name, pinned, demo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "optuna.db"
        study = optuna.create_study(storage=f"sqlite:///{path}", study_name=study_name,
                                    direction="maximize" if mode == "max" else "minimize")
        key = f"{metric}_mean"
        study.set_user_attr("pinned", pinned)
        for result in sorted(grid, key=lambda r: (r.metrics or {}).get("trial_id", "")):
            sampled = {k: v for k, v in result.config.items() if k not in pinned}
            study.enqueue_trial(sampled, skip_if_exists=False)
            trial = study.ask()
            define(trial)
            history = result.metrics_dataframe
            if history is not None and key in history:
                for step, value in zip(history["training_iteration"], history[key], strict=True):
                    if math.isfinite(value):
                        trial.report(float(value), int(step))
            value = (result.metrics or {}).get(f"{metric}_score", math.nan)  # the trial's score (core/scoring.py)
            if result.error or not math.isfinite(value):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(value))
        del study
        return path.read_bytes()
