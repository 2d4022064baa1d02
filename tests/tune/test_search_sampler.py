"""The search's sampler fits small budgets (startup trials scaled to --num-samples, multivariate TPE, group=True for
conditional spaces), is reproducible from --seed, and --objective builds a single- or multi-objective search."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from core.errors import UserError
from search_spaces import SPACES
from search_spaces.pinning import PinnedSpace
from tune.engine.arguments import RunSettings, build_parser, settings_from_args
from tune.engine.search import (
    build_sampler,
    build_scheduler,
    build_searcher,
    conditional,
    objective,
    objectives,
    startup_trials,
    tpe_options,
)


def settings(toy_dataset: Path, *flags: str, space: str = "whisper_losses") -> RunSettings:
    args = build_parser().parse_args(["--space", space, "--demo", "--data", str(toy_dataset), *flags])
    return settings_from_args(args, SPACES.get(space))


@pytest.mark.parametrize(("num_samples", "expected"), [(1, 2), (4, 2), (8, 2), (12, 3), (20, 5), (40, 10),
                                                        (400, 10)])
def test_startup_trials_scale_with_the_budget(num_samples: int, expected: int) -> None:
    assert startup_trials(num_samples) == expected


@pytest.mark.parametrize(("num_samples", "startup"), [(4, 2), (20, 5), (80, 10)])
def test_the_searchers_sampler_has_the_settings(toy_dataset: Path, num_samples: int, startup: int) -> None:
    run = settings(toy_dataset, "--num-samples", str(num_samples), "--sampler", "tpe")
    space = PinnedSpace(run.space, run.pinned, run.demo)
    assert tpe_options(run, space) == {"seed": 0, "n_startup_trials": startup, "multivariate": True, "group": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # silenced where it is built
        sampler = build_sampler(run, space)
    assert isinstance(sampler, optuna.samplers.TPESampler)


def test_startup_trials_are_random_then_tpe(toy_dataset: Path) -> None:
    """What `n_startup_trials` means: the first trials are the seeded random sampler's own draws, the next is not."""
    run = settings(toy_dataset, "--num-samples", "8", "--sampler", "tpe")  # 2 startup trials
    space = PinnedSpace(run.space, run.pinned, run.demo)

    def draws(sampler: optuna.samplers.BaseSampler) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        found = []
        for number in range(3):
            trial = study.ask()
            space(trial)
            found.append(dict(trial.params))
            study.tell(trial, float(number % 2))
        return found

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe = draws(build_sampler(run, space))
    random = draws(optuna.samplers.RandomSampler(seed=run.seed))
    assert tpe[:2] == random[:2] and tpe[2] != random[2]


def test_group_only_for_conditional_spaces(toy_dataset: Path) -> None:
    assert conditional(PinnedSpace("whisper_losses", {}, True))  # a loss with its own parameters
    assert conditional(PinnedSpace("whisper_balancing", {}, True))  # a SpecAugment width only with its count > 0
    assert not conditional(PinnedSpace("wav2vec2_contrastive", {}, True))  # no branch at all
    # pinned branches leave one set of parameters: nothing conditional is left to group
    pins = {"augment.time_masks": 1, "augment.freq_masks": 1}
    assert not conditional(PinnedSpace("whisper_balancing", pins, True))
    run = settings(toy_dataset, "--sampler", "tpe", space="wav2vec2_contrastive")
    assert tpe_options(run, PinnedSpace(run.space, run.pinned, run.demo))["group"] is False


def first_configs(run: RunSettings, trials: int) -> list[dict]:
    """The first `trials` configs the searcher proposes (Ray's Searcher API: suggest, on_trial_complete), each told
    a value that depends on its params (so the TPE trials after the startup ones depend on the history)."""
    searcher = build_searcher(run)
    proposed = []
    for number in range(trials):
        config = searcher.suggest(f"t{number}")
        proposed.append(config)
        lr = config.get("optim.lr", 1e-3)
        searcher.on_trial_complete(f"t{number}", {"uar_score": -abs(lr - 3e-3) + 0.1 * len(str(config)) % 3})
    return proposed


def test_same_seed_same_configs(toy_dataset: Path) -> None:
    run = settings(toy_dataset, "--num-samples", "8")  # 2 startup trials, then 6 from TPE
    first, again = first_configs(run, 8), first_configs(run, 8)
    assert first == again
    other = first_configs(settings(toy_dataset, "--num-samples", "8", "--seed", "1"), 8)
    assert other != first


def test_objective_flag(toy_dataset: Path) -> None:
    single = settings(toy_dataset)
    assert objectives(single) == [("uar_score", "max")] and objective(single) == ("uar_score", "max")
    assert single.objectives == []
    two = settings(toy_dataset, "--objective", "uar,uar_age_gap")
    assert objectives(two) == [("uar_score", "max"), ("uar_age_gap_score", "min")]
    assert two.config.train.metric == "uar" and two.objectives == ["uar", "uar_age_gap"]
    searcher = build_searcher(two)
    assert searcher.metric == ["uar_score", "uar_age_gap_score"] and searcher.mode == ["max", "min"]
    assert isinstance(build_scheduler(two), FIFOScheduler) and not isinstance(build_scheduler(two), ASHAScheduler)
    assert isinstance(build_scheduler(single), ASHAScheduler)
    first = settings(toy_dataset, "--objective", "uar_speaker_p10")  # one metric: train.metric, single objective
    assert first.config.train.metric == "uar_speaker_p10" and objectives(first) == [("uar_speaker_p10_score", "max")]
    assert RunSettings.from_json(two.to_json()).objectives == ["uar", "uar_age_gap"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--objective", "uar,bogus"], "--objective: unknown metric 'bogus'; choose from "),
    (["--objective", "uar,uar"], "--objective 'uar,uar': a metric is named twice"),
    (["--objective", "uar,"], "--objective 'uar,': empty metric name"),
    (["--objective", "uar,f1", "--set", "train.metric=f1"],
     "--objective uar,f1: its first metric is train.metric, but --set train.metric=f1"),
    (["--objective", "mae,uar_age_gap", "--set", "model.head=regressor", "--set", "loss.name=mse",
      "--target", "age"],
     "--objective uar_age_gap: model.head='regressor' is scored by regression metrics (a regression target has no "
     "per-age-band or per-speaker UAR); choose from mae, pearson, rmse"),
])
def test_objective_errors_name_the_flag(toy_dataset: Path, flags: list[str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        settings(toy_dataset, *flags)
    assert str(caught.value).startswith(message), str(caught.value)


def test_run_json_objectives_must_be_a_list_of_text(toy_dataset: Path) -> None:
    text = settings(toy_dataset).to_json().decode().replace('"objectives": []', '"objectives": [1]')
    with pytest.raises(UserError, match="field 'objectives' is .*, not a list of text"):
        RunSettings.from_json(text.encode())
