"""Building the Ray Tune experiment: the cross-validation trainable, Optuna's TPE and ASHA."""

from __future__ import annotations

from optuna.samplers import TPESampler
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from core.metrics import METRICS
from search_spaces import SearchSpace
from tune.arguments import RunSettings
from tune.progress import TrialLines
from tune.storage import RunStore
from tune.trainable import cross_validate

MAX_FAILURES = 2  # a trial whose worker or node dies restarts from its last checkpoint this many times


def objective(settings: RunSettings) -> tuple[str, str]:
    """(Tune metric key, mode) from the config's selection metric."""
    metric = settings.config.train.metric
    return f"{metric}_mean", METRICS.get(metric).mode


def trainable(settings: RunSettings) -> tune.Trainable:
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    with_base = tune.with_parameters(cross_validate, base=settings.base, cpus=settings.cpus_per_trial)
    return tune.with_resources(with_base, resources)


def trial_dirname(trial: Trial) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(settings: RunSettings, space: SearchSpace, store: RunStore) -> tune.Tuner:
    key, mode = objective(settings)
    epochs = settings.config.train.epochs
    searcher = OptunaSearch(space=space.define, metric=key, mode=mode, sampler=TPESampler(seed=settings.seed))
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                              grace_period=min(settings.grace_period, epochs), reduction_factor=3)
    return tune.Tuner(
        trainable(settings),
        tune_config=tune.TuneConfig(metric=key, mode=mode, search_alg=searcher, scheduler=scheduler,
                                    num_samples=settings.num_samples,
                                    max_concurrent_trials=settings.max_concurrent,
                                    trial_dirname_creator=trial_dirname),
        run_config=run_config(settings, store))


def run_config(settings: RunSettings, store: RunStore) -> tune.RunConfig:
    return tune.RunConfig(
        name=settings.name, storage_path=store.storage, verbose=0,
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[TrialLines(settings.config.train.metric, settings.config.train.epochs)])


def restore_tuner(settings: RunSettings, store: RunStore) -> tune.Tuner:
    """Continue a stopped or killed search: finished trials kept, unfinished ones resumed from checkpoints."""
    return tune.Tuner.restore(store.location, trainable=trainable(settings), resume_unfinished=True,
                              resume_errored=False, restart_errored=False)
