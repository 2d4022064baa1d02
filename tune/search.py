"""Building the Ray Tune experiment: the cross-validation trainable, Optuna's TPE and ASHA."""

from __future__ import annotations

from typing import Any

from optuna.samplers import TPESampler
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from core.metrics import METRICS
from search_spaces import SearchSpace
from tune.arguments import RunSettings
from tune.interrupt import StopWhenSaved
from tune.pinning import PinnedSpace
from tune.progress import TrialLines
from tune.resources import trial_resources
from tune.storage import RunStore, is_uri, storage_filesystem
from tune.storage_full import StopWhenStorageFull
from tune.study import LiveStudy
from tune.trackers import check_trackers, tracker_callbacks
from tune.trainable import cross_validate

# A trial whose worker or node dies restarts from its last checkpoint this many times. A diverged config is not
# retried: the trainable ends it with an `error` result (tune/trainable.py), which is not a failure to Tune.
MAX_FAILURES = 2


class DivergenceAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial ended with an `error` result (a diverged config) as FAIL, which TPE then
    leaves out of its model, instead of telling Optuna a NaN value."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result and result.get("error"):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


def objective(settings: RunSettings) -> tuple[str, str]:
    """(Tune result key Optuna is told, mode): the config's cross-validated score (core/scoring.py)."""
    metric = settings.config.train.metric
    return f"{metric}_score", METRICS.get(metric).mode


def pruning_key(settings: RunSettings) -> str:
    """What ASHA compares at each rung: the fold mean of the epoch just run, the cross-validated curve itself."""
    return f"{settings.config.train.metric}_mean"


def trainable(settings: RunSettings) -> tune.Trainable:
    """The trainable with its resources: one bundle, or (--fold-parallel) a driver bundle plus one per fold."""
    gpus = settings.gpus_per_trial or 0.0
    with_base = tune.with_parameters(cross_validate, base=settings.base, cpus=settings.cpus_per_trial,
                                     fold_parallel=settings.fold_parallel)
    resources = trial_resources(settings.cpus_per_trial, gpus, settings.config.data.k_fold, settings.fold_parallel)
    return tune.with_resources(with_base, resources)


def trial_dirname(trial: Trial) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(settings: RunSettings, space: SearchSpace, store: RunStore) -> tune.Tuner:
    key, mode = objective(settings)
    epochs = settings.config.train.epochs
    searcher = DivergenceAwareOptunaSearch(space=PinnedSpace(space.name, settings.pinned, settings.demo),
                                           metric=key, mode=mode, sampler=TPESampler(seed=settings.seed))
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=pruning_key(settings), mode=mode, max_t=epochs,
                              grace_period=min(settings.grace_period, epochs), reduction_factor=3)
    return tune.Tuner(
        trainable(settings),
        # No metric/mode here: the searcher and the scheduler have their own (Tune refuses both being set).
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=settings.num_samples,
                                    max_concurrent_trials=settings.max_concurrent,
                                    trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),  # the next trial skips importing torch & co. again
        run_config=run_config(settings, store))


def run_config(settings: RunSettings, store: RunStore) -> tune.RunConfig:
    return tune.RunConfig(
        name=settings.name, storage_path=store.storage, storage_filesystem=storage_filesystem(store.storage),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[TrialLines(settings.config.train.metric, settings.config.train.epochs, mode=objective(settings)[1]),
                   StopWhenSaved(),
                   StopWhenStorageFull(),
                   LiveStudy(store.storage, settings.name, [objective(settings)], settings.space, settings.pinned,
                             settings.demo, settings.config.train.epochs),
                   *tracker_callbacks(settings.trackers, settings.name, store.path, is_uri(store.storage),
                                      settings.mlflow_uri)])


def restore_tuner(settings: RunSettings, store: RunStore) -> tune.Tuner:
    """Continue a stopped or killed search: finished trials kept, unfinished ones resumed from checkpoints (a trial
    stopped by a full disk is unfinished: see StopWhenStorageFull)."""
    check_trackers(settings.trackers)  # Tune unpickles the run's logger callbacks: their packages must be here
    return tune.Tuner.restore(store.location, trainable=trainable(settings), resume_unfinished=True,
                              resume_errored=False, restart_errored=False,
                              storage_filesystem=storage_filesystem(store.storage))
