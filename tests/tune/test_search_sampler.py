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
from tune.engine.search import build_scheduler, build_searcher, conditional, objective, objectives, startup_trials


def settings(toy_dataset: Path, *flags: str, space: str = "whisper_losses") -> RunSettings:
    args = build_parser().parse_args(["--space", space, "--demo", "--data", str(toy_dataset), *flags])
    return settings_from_args(args, SPACES.get(space))


@pytest.mark.parametrize(("num_samples", "expected"), [(1, 2), (4, 2), (8, 2), (12, 3), (20, 5), (40, 10),
                                                        (400, 10)])
def test_startup_trials_scale_with_the_budget(num_samples: int, expected: int) -> None:
    assert startup_trials(num_samples) == expected


@pytest.mark.parametrize(("num_samples", "startup"), [(4, 2), (20, 5), (80, 10)])
def test_the_searchers_sampler_has_the_settings(toy_dataset: Path, num_samples: int, startup: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # silenced where it is built
        searcher = build_searcher(settings(toy_dataset, "--num-samples", str(num_samples)))
    sampler = searcher._sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._group) == (startup, True, True)
    assert searcher._ot_study.sampler is sampler


def test_group_only_for_conditional_spaces(toy_dataset: Path) -> None:
    assert conditional(PinnedSpace("whisper_losses", {}, True))  # a loss with its own parameters
    assert not conditional(PinnedSpace("whisper_balancing", {}, True))
    # a pinned branch leaves one set of parameters: nothing conditional is left to group
    assert not conditional(PinnedSpace("whisper_sam", {"optim.sam_base": "adamw"}, True))
    assert build_searcher(settings(toy_dataset, "--sampler", "tpe", space="whisper_balancing"))._sampler._group is False


def first_configs(run: RunSettings, trials: int) -> list[dict]:
    """The first `trials` configs the searcher's sampler proposes, each told a value that depends on its params
    (so the TPE trials after the startup ones depend on the history)."""
    searcher = build_searcher(run)
    study = optuna.create_study(direction="maximize", sampler=searcher._sampler)
    proposed = []
    for _ in range(trials):
        trial = study.ask()
        params = searcher._space(trial)
        proposed.append(dict(trial.params))
        lr = trial.params.get("optim.lr", 1e-3)
        study.tell(trial, -abs(lr - 3e-3) + 0.1 * len(str(params)) % 3)
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
    assert len(searcher._ot_study.directions) == 2
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
