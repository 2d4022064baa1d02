"""The search as an Optuna study in SQLite (`optuna.db` in the run folder), written while the search runs, so
`optuna-dashboard sqlite:///runs/NAME/optuna.db` follows it live.

Tune's own experiment checkpoint stays the source of truth (it resumes the sampler after a killed driver): driving
Optuna's live study from SQLite instead breaks resume after SIGKILL (the saved searcher state is older than the
database). `LiveStudy`, a Tune callback on the driver, mirrors the trials into a study of its own instead:

- a row for every trial as Tune samples it (WAITING), so trial numbers follow the sampling order;
- RUNNING when it starts (the real start time), each epoch's fold mean as an intermediate value;
- COMPLETE with its score when it finishes (the real end time), also when ASHA stopped it before the last epoch:
  its score is then that of the epochs it ran, as the leaderboard ranks it, and the user attribute `stopped` is
  "asha" (a PRUNED trial has no value, so the dashboard's history, `study.best_trial` and the importance
  evaluators would see only the trials that ran to the end); FAIL when it diverged or errored; user attributes:
  the Ray trial id, per-fold scores, std, status, error.

The database is kept in a local working copy and written through the run's storage (complete-or-nothing, see
tune/results/complete_files.py) after every change. A resumed search continues the stored database: rows are keyed by
their Ray trial id, so none is added twice.
"""

from __future__ import annotations

import datetime
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.experiment import Trial

from search_spaces.pinning import PinnedSpace
from tune.engine.private_api import validate_frozen_trial
from tune.results.aggregate import bias_scores, fold_values
from tune.results.leaderboard import ASHA, ERROR, sampling_order, trial_status
from tune.results.storage import RunStore

STUDY_FILE = "optuna.db"
RAY_TRIAL_ID = "ray_trial_id"  # user attribute every row carries: the key that keeps a resumed study free of repeats
STOPPED = "stopped"  # user attribute of a trial ASHA stopped before its last epoch: "asha"
FINISHED = (Trial.TERMINATED, Trial.ERROR)


def metric_of(key: str) -> str:
    """`uar_score` -> `uar`: the metric whose fold mean (`uar_mean`) the trial reports every epoch."""
    return key.removesuffix("_score")


def finished_state(result: dict[str, Any], epochs: int, errored: bool) -> tuple[TrialState, str]:
    """Optuna's state and our status (tune/results/leaderboard.py) of a trial that ended with `result`."""
    status = ERROR if errored else trial_status(None, result, epochs)
    return (TrialState.FAIL if status == ERROR else TrialState.COMPLETE), status


def error_text(trial: Trial, result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    if trial.status == Trial.ERROR or trial.error_file:
        message = [line for line in str(trial.get_error() or "").splitlines() if line.strip()]
        return message[-1][:300] if message else "error (see the trial's log)"
    return ""


@dataclass
class _Row:
    """A trial of the study: Optuna's storage id and its state as written."""

    trial_id: int
    state: TrialState


class LiveStudy(Callback):
    """Writes `optuna.db` as the search runs (see the module's docstring). `objectives`: the (result key, mode)
    pairs Optuna is told, e.g. `[("uar_score", "max")]`; two or more make a multi-objective study."""

    def __init__(self, storage: str, name: str, objectives: list[tuple[str, str]], space: str,
                 pinned: dict[str, Any] | None = None, demo: bool = False, epochs: int = 1) -> None:
        self.storage = storage
        self.name = name
        self.objectives = list(objectives)
        self.define = PinnedSpace(space, pinned or {}, demo)
        self.epochs = epochs
        self._reset()

    def _reset(self) -> None:
        self._folder: tempfile.TemporaryDirectory | None = None
        self._study: optuna.Study | None = None
        self._storage: optuna.storages.RDBStorage | None = None
        self._rows: dict[str, _Row] = {}
        self._checked_restored = False

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the run: the open study stays here
        state = dict(self.__dict__)
        state.update(_folder=None, _study=None, _storage=None, _rows={}, _checked_restored=False)
        return state

    # -- the database ------------------------------------------------------------------------------------------

    @property
    def store(self) -> RunStore:
        return RunStore(self.storage, self.name)

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = self._open()
        return self._study

    def _open(self) -> optuna.Study:
        """The working copy: the stored database of an earlier (resumed) run, or a new study."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._folder = tempfile.TemporaryDirectory(prefix="audiotune-study-")
        path = Path(self._folder.name) / STUDY_FILE
        store = self.store
        if store.exists(STUDY_FILE):
            path.write_bytes(store.read_bytes(STUDY_FILE))
        self._storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        if store.exists(STUDY_FILE):
            study = optuna.load_study(study_name=self.name, storage=self._storage)
            for trial in study.get_trials(deepcopy=False):
                if RAY_TRIAL_ID in trial.user_attrs:
                    self._rows[trial.user_attrs[RAY_TRIAL_ID]] = _Row(trial._trial_id, trial.state)
            return study
        directions = ["maximize" if mode == "max" else "minimize" for _, mode in self.objectives]
        study = optuna.create_study(storage=self._storage, study_name=self.name, directions=directions)
        study.set_user_attr("pinned", self.define.pinned)  # constants of every trial, not parameters
        study.set_user_attr("objectives", [list(pair) for pair in self.objectives])
        return study

    def database(self) -> optuna.storages.RDBStorage:
        self.study  # noqa: B018 (opens it)
        assert self._storage is not None
        return self._storage

    @property
    def study_id(self) -> int:
        return self.database().get_study_id_from_name(self.name)

    def _save(self) -> None:
        assert self._folder is not None
        self.store.write_bytes(STUDY_FILE, (Path(self._folder.name) / STUDY_FILE).read_bytes())

    def _sampled(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
        """The trial's parameters with the distributions of the space they were drawn from (the space's code
        replayed on its values: conditional parameters exist only where their branch was taken)."""
        scratch = optuna.create_study()
        scratch.enqueue_trial({k: v for k, v in config.items() if k not in self.define.pinned})
        trial = scratch.ask()
        self.define(trial)
        return dict(trial.params), dict(trial.distributions)

    def _add(self, trial: Trial, state: TrialState, **fields: Any) -> _Row:
        params, distributions = self._sampled(trial.config)
        frozen = optuna.trial.create_trial(state=state, params=params, distributions=distributions,
                                           user_attrs={RAY_TRIAL_ID: trial.trial_id, **fields.pop("user_attrs", {})},
                                           **fields)
        validate_frozen_trial(frozen)
        # what Study.add_trial does, keeping the storage id (rows are numbered in the order they are added)
        row = self._rows[trial.trial_id] = _Row(self.database().create_new_trial(self.study_id, frozen), state)
        return row

    def _running(self, trial: Trial) -> _Row:
        row = self._rows.get(trial.trial_id) or self._add(trial, TrialState.WAITING)
        if row.state == TrialState.WAITING:
            self.database().set_trial_state_values(row.trial_id, TrialState.RUNNING)  # start time: now
            row.state = TrialState.RUNNING
        return row

    def _report(self, row: _Row, result: dict[str, Any]) -> None:
        if len(self.objectives) > 1:  # Optuna keeps intermediate values for single-objective studies only
            return
        value = result.get(f"{metric_of(self.objectives[0][0])}_mean", math.nan)
        step = result.get("training_iteration")
        if step is not None and isinstance(value, (int, float)) and math.isfinite(value):
            self.database().set_trial_intermediate_value(row.trial_id, int(step), float(value))

    def _attributes(self, trial: Trial, result: dict[str, Any], status: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {"status": status, "error": error_text(trial, result),
                                      "epochs": int(result.get("epoch", 0) or 0),
                                      "score_epoch": int(result.get("score_epoch", 0) or 0)}
        if status == ASHA:  # COMPLETE with the score of the epochs it ran; the stop said here
            attributes[STOPPED] = "asha"
        for key, _ in self.objectives:
            metric = metric_of(key)
            attributes[f"{metric}_score"] = _finite_or_none(result.get(key))
            attributes[f"{metric}_std"] = _finite_or_none(result.get(f"{key}_std"))
            attributes[f"{metric}_folds"] = fold_values(result, key)
        attributes.update(bias_scores(result))  # age-band and speaker UAR at e* (core/bias.py)
        return attributes

    def _values(self, state: TrialState, result: dict[str, Any]) -> list[float] | None:
        if state != TrialState.COMPLETE:
            return None
        return [float(result.get(key, math.nan)) for key, _ in self.objectives]

    def _finish(self, trial: Trial, errored: bool) -> None:
        row = self._rows.get(trial.trial_id)
        if row is not None and row.state.is_finished():
            return
        result = trial.last_result or {}
        state, status = finished_state(result, self.epochs, errored)
        values = self._values(state, result)
        if values is not None and not all(math.isfinite(v) for v in values):
            state, status, values = TrialState.FAIL, ERROR, None
        attributes = self._attributes(trial, result, status)
        if row is None:  # finished before this callback saw it (a driver killed just then): times from its results
            end = result.get("timestamp") or datetime.datetime.now().timestamp()
            start = end - float(result.get("time_total_s", 0.0) or 0.0)
            self._add(trial, state, values=values, user_attrs=attributes,
                      datetime_start=datetime.datetime.fromtimestamp(start),
                      datetime_complete=datetime.datetime.fromtimestamp(end))
            return
        row = self._running(trial)
        storage = self.database()
        for key, value in attributes.items():
            storage.set_trial_user_attr(row.trial_id, key, value)
        self._report(row, result)
        storage.set_trial_state_values(row.trial_id, state, values)  # end time: now
        row.state = state

    def _lost(self, trials: list[Trial]) -> bool:
        """Rows a killed driver left unfinished whose trials the restored search does not know (sampled after
        Tune's last saved state): FAIL, so no row looks as if it were still running."""
        known = {trial.trial_id for trial in trials}
        lost = [(ray_id, row) for ray_id, row in self._rows.items()
                if ray_id not in known and not row.state.is_finished()]
        storage = self.database()
        for _, row in lost:
            if row.state == TrialState.WAITING:
                storage.set_trial_state_values(row.trial_id, TrialState.RUNNING)
            storage.set_trial_user_attr(row.trial_id, "status", ERROR)
            storage.set_trial_user_attr(row.trial_id, "error", "lost when the search's driver stopped")
            storage.set_trial_state_values(row.trial_id, TrialState.FAIL)
            row.state = TrialState.FAIL
        return bool(lost)

    # -- Tune's events -----------------------------------------------------------------------------------------

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.on_step_end(iteration, trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Rows for the trials sampled since the last step, in sampling order."""
        changed = False
        if not self._checked_restored:
            self._checked_restored = True
            changed = self._lost(trials)
        new = sorted((t for t in trials if t.trial_id not in self._rows), key=sampling_order)
        for trial in new:
            if trial.status in FINISHED:  # a restored search: finished before the database saw it
                self._finish(trial, errored=trial.status == Trial.ERROR)
            else:
                self._add(trial, TrialState.WAITING)
        if changed or new:
            self._save()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._running(trial)
        self._save()

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        self._report(self._running(trial), result)
        self._save()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, errored=False)
        self._save()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, errored=True)
        self._save()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._study is not None:
            self._save()
        if self._folder is not None:
            self._folder.cleanup()
        self._reset()


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
