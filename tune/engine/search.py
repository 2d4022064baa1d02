"""Building the Ray Tune experiment: the cross-validation trainable, Optuna's TPE and ASHA (one objective) or
TPE alone (several objectives: Tune's ASHA compares one metric, so a multi-objective search does not prune)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from core.data.dataset import AudioData, CheckedData
from core.errors import UserError
from core.metrics import METRICS
from search_spaces import SearchSpace
from search_spaces.pinning import PinnedSpace
from tune.engine.arguments import RunSettings
from tune.engine.interrupt import StopWhenSaved
from tune.engine.private_api import open_optuna_trial
from tune.engine.progress import TrialLines
from tune.engine.resources import trial_resources
from tune.engine.storage_full import StopWhenStorageFull
from tune.engine.study import LiveStudy
from tune.engine.trackers import check_trackers, tracker_callbacks
from tune.engine.trainable import cross_validate
from tune.results.constraints import Constraint, parse_constraint
from tune.results.storage import RunStore, is_uri, storage_filesystem

# A trial whose worker or node dies restarts from its last checkpoint this many times. A diverged config is not
# retried: the trainable ends it with an `error` result (tune/engine/trainable.py), which is not a failure to Tune.
MAX_FAILURES = 2


class DivergenceAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial ended with an `error` result (a diverged config), or one whose objective
    is NaN (e.g. `uar_age_gap` with fewer than two age bands scored in every fold), as FAIL, which TPE then leaves
    out of its model, instead of telling Optuna a NaN value. With `constraints` (--constraint), each finished
    trial's values at e* go to Optuna as `Trial.set_constraint` (optuna 5's own constraint support; the
    `constraints_func` of TPESampler is deprecated there), so TPE splits feasible from infeasible trials."""

    def __init__(self, *args: Any, constraints: list[Constraint] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constraints = list(constraints or [])

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        keys = self.metric if isinstance(self.metric, list) else [self.metric]
        if result and (result.get("error") or not all(_finite(result.get(key)) for key in keys)):
            result, error = None, True
        trial = open_optuna_trial(self, trial_id)
        if result and trial is not None:
            for constraint in self.constraints:  # before `tell`: the sampler reads them when the trial completes
                trial.set_constraint(constraint.text, constraint.violation(result))
        super().on_trial_complete(trial_id, result=result, error=error)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def objectives(settings: RunSettings) -> list[tuple[str, str]]:
    """(Tune result key, mode) of each objective, the first being `train.metric`: each metric's cross-validated
    score (core/scoring.py), all read at the epoch e* the first objective's fold-mean curve selects."""
    names = settings.objectives or [settings.config.train.metric]
    return [(f"{name}_score", METRICS.get(name).mode) for name in names]


def objective(settings: RunSettings) -> tuple[str, str]:
    """(Tune result key, mode) of the first objective (the only one of a single-objective search)."""
    return objectives(settings)[0]


def check_objective_data(settings: RunSettings, data: AudioData) -> None:
    """An age-band objective needs ages and a speaker objective speakers, or every trial's value would be NaN."""
    bounded = [(constraint.key, "") for constraint in constraints(settings)]
    for key, _ in objectives(settings) + bounded:
        if key.startswith("uar_age") and not np.isfinite(data.ages).any():
            raise UserError(f"--objective {key.removesuffix('_score')}: the age bands come from the manifest's age "
                            f"column (years), and {settings.config.data.manifest or 'the manifest'} has no ages")
        if key.startswith("uar_speaker") and data.speakers is None:
            raise UserError(f"--objective {key.removesuffix('_score')}: needs the manifest's speaker column, and "
                            f"{settings.config.data.manifest or 'the manifest'} has none")


def startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, at least 2 and at most Optuna's default
    10. TPE splits the trials seen into a good and a bad group (gamma ~ 10-25 %), so it needs a few before its
    densities mean anything; but Optuna's 10 is sized for budgets of 100+ trials: it made the 4-trial demo all
    random and half of the default 20-trial search (now 2 of 4 and 5 of 20; 10 from 40 trials on)."""
    return max(2, min(10, num_samples // 4))


def conditional(space: PinnedSpace, draws: int = 32) -> bool:
    """Whether the space suggests different sets of parameters from draw to draw (a loss with its own parameters,
    say); pins included, as a pinned branch leaves one set."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(draws):
        trial = study.ask()
        space(trial)
        seen.add(frozenset(trial.params))
    return len(seen) > 1


def build_sampler(settings: RunSettings, space: PinnedSpace) -> optuna.samplers.BaseSampler:
    """The sampler `--sampler` names (tpe | gp | random; the default is the budget's: tune/engine/arguments.py)."""
    return SAMPLERS[sampler_used(settings, space)](settings, space)


def sampler_used(settings: RunSettings, space: PinnedSpace) -> str:
    """`--sampler`, except that gp becomes tpe in a conditional space: Optuna's GP models one fixed set of parameters
    and would draw every conditional one at random (TPE with `group=True` models each set)."""
    return "tpe" if settings.sampler == "gp" and conditional(space) else settings.sampler


def gp_sampler(settings: RunSettings, space: PinnedSpace) -> optuna.samplers.GPSampler:
    """Optuna's Gaussian-process sampler (floats, ints and categoricals, one or several objectives), seeded by
    --seed, random for the same `startup_trials` as TPE."""
    return optuna.samplers.GPSampler(seed=settings.seed, n_startup_trials=startup_trials(settings.num_samples))


def random_sampler(settings: RunSettings, space: PinnedSpace) -> optuna.samplers.RandomSampler:
    return optuna.samplers.RandomSampler(seed=settings.seed)


def tpe_sampler(settings: RunSettings, space: PinnedSpace) -> TPESampler:
    """TPE seeded by --seed, random for `startup_trials` first, multivariate (a joint density over the parameters,
    so it learns how e.g. the learning rate and the loss interact; Optuna's default for one objective, not for
    several), and with `group=True` for conditional spaces: each set of parameters that occur together gets its own
    joint density, instead of the conditional ones being sampled independently."""
    with warnings.catch_warnings():  # `group` works; Optuna only marks the argument as experimental
        warnings.filterwarnings("ignore", message="Argument ``group`` is an experimental feature",
                                category=optuna.exceptions.ExperimentalWarning)
        return TPESampler(**tpe_options(settings, space))


def tpe_options(settings: RunSettings, space: PinnedSpace) -> dict[str, Any]:
    """TPESampler's arguments for this search (tpe_sampler says why each)."""
    return {"seed": settings.seed, "n_startup_trials": startup_trials(settings.num_samples), "multivariate": True,
            "group": conditional(space)}


SAMPLERS = {"tpe": tpe_sampler, "gp": gp_sampler, "random": random_sampler}  # --sampler's choices (arguments.py)


def build_searcher(settings: RunSettings) -> DivergenceAwareOptunaSearch:
    """Optuna over the space with one objective (metric, mode) or several (lists of both)."""
    space = PinnedSpace(settings.space, settings.pinned, settings.demo)
    targets = objectives(settings)
    keys, modes = [key for key, _ in targets], [mode for _, mode in targets]
    many = len(targets) > 1
    return DivergenceAwareOptunaSearch(space=space, metric=keys if many else keys[0], mode=modes if many else modes[0],
                                       sampler=build_sampler(settings, space), constraints=constraints(settings))


def constraints(settings: RunSettings) -> list[Constraint]:
    """The search's --constraint bounds (tune/results/constraints.py)."""
    return [parse_constraint(text) for text in settings.constraints]


def build_scheduler(settings: RunSettings) -> TrialScheduler:
    """ASHA on the first objective's fold-mean curve; with several objectives none (FIFO): ASHA would stop
    trials on the first objective alone, leaving Pareto trials that trade some of it for the others unfinished."""
    if len(objectives(settings)) > 1:
        return FIFOScheduler()
    epochs = settings.config.train.epochs
    return ASHAScheduler(time_attr="training_iteration", metric=pruning_key(settings), mode=objective(settings)[1],
                         max_t=epochs, grace_period=min(settings.grace_period, epochs), reduction_factor=3)


def objectives_line(settings: RunSettings) -> str:
    """What the search optimises, for the command line (and why a multi-objective search does not prune)."""
    targets = objectives(settings)
    bounds = constraints(settings)
    subject = f", subject to {', '.join(c.text for c in bounds)} (infeasible trials marked)" if bounds else ""
    if len(targets) == 1:
        return (f"optimising {targets[0][0]} ({targets[0][1]}){subject}, ASHA pruning from epoch "
                f"{settings.grace_period}")
    said = ", ".join(f"{key} ({mode})" for key, mode in targets) + subject
    return (f"optimising {said} as a Pareto front, each read at the epoch {targets[0][0]} selects; no pruning "
            "(Tune's ASHA compares one metric; --grace-period is not used)")


def pruning_key(settings: RunSettings) -> str:
    """What ASHA compares at each rung: the fold mean of the epoch just run, the cross-validated curve itself."""
    return f"{settings.config.train.metric}_mean"


def trainable(settings: RunSettings, checked: CheckedData | None = None) -> tune.Trainable:
    """The trainable with its resources: one bundle, or (--fold-parallel) a driver bundle plus one per fold;
    `checked`: the data the driver validated, handed to every trial (tune/engine/trainable.py)."""
    gpus = settings.gpus_per_trial or 0.0
    with_base = tune.with_parameters(cross_validate, base=settings.base, cpus=settings.cpus_per_trial,
                                     fold_parallel=settings.fold_parallel, checked=checked)
    resources = trial_resources(settings.cpus_per_trial, gpus, settings.config.data.k_fold, settings.fold_parallel)
    return tune.with_resources(with_base, resources)


def trial_dirname(trial: Trial) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(settings: RunSettings, space: SearchSpace, store: RunStore, checked: CheckedData | None = None
                ) -> tune.Tuner:
    print(objectives_line(settings), flush=True)
    print(f"sampler: {sampler_used(settings, PinnedSpace(settings.space, settings.pinned, settings.demo))} "
          f"(--sampler {settings.sampler})", flush=True)
    searcher, scheduler = build_searcher(settings), build_scheduler(settings)
    return tune.Tuner(
        trainable(settings, checked),
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
                   LiveStudy(store.storage, settings.name, objectives(settings), settings.space, settings.pinned,
                             settings.demo, settings.config.train.epochs),
                   *tracker_callbacks(settings.trackers, settings.name, store.path, is_uri(store.storage),
                                      settings.mlflow_uri)])


def restore_tuner(settings: RunSettings, store: RunStore, checked: CheckedData | None = None) -> tune.Tuner:
    """Continue a stopped or killed search: finished trials kept, unfinished ones resumed from checkpoints (a trial
    stopped by a full disk is unfinished: see StopWhenStorageFull)."""
    check_trackers(settings.trackers)  # Tune unpickles the run's logger callbacks: their packages must be here
    return tune.Tuner.restore(store.location, trainable=trainable(settings, checked), resume_unfinished=True,
                              resume_errored=False, restart_errored=False,
                              storage_filesystem=storage_filesystem(store.storage))
