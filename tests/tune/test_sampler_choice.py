"""`--sampler tpe | gp | random`: the named Optuna sampler (gp only where the space is not conditional), the default
for small budgets the measured one (bench/README.md), stored in run.json and read back."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from search_spaces import SPACES
from search_spaces.pinning import PinnedSpace
from tune.engine.arguments import (
    SMALL_BUDGET,
    SMALL_BUDGET_SAMPLER,
    RunSettings,
    build_parser,
    default_sampler,
    settings_from_args,
)
from tune.engine.search import build_sampler, sampler_used

UNCONDITIONAL = ("--set", "loss.name=ce")  # whisper_probe with its loss pinned: one fixed set of parameters


def settings(toy_dataset: Path, *flags: str, space: str = "whisper_probe") -> RunSettings:
    args = build_parser().parse_args(["--space", space, "--demo", "--data", str(toy_dataset), *flags])
    return settings_from_args(args, SPACES.get(space))


def space_of(run: RunSettings) -> PinnedSpace:
    return PinnedSpace(run.space, run.pinned, run.demo)


@pytest.mark.parametrize(("flag", "kind"), [("tpe", optuna.samplers.TPESampler),
                                            ("gp", optuna.samplers.GPSampler),
                                            ("random", optuna.samplers.RandomSampler)])
def test_the_flag_names_the_sampler(toy_dataset: Path, flag: str, kind: type) -> None:
    run = settings(toy_dataset, "--sampler", flag, "--seed", "3", *UNCONDITIONAL)
    assert run.sampler == flag
    sampler = build_sampler(run, space_of(run))
    assert type(sampler) is kind
    assert RunSettings.from_json(run.to_json()).sampler == flag  # run.json keeps it for --resume


def test_gp_falls_back_to_tpe_in_a_conditional_space(toy_dataset: Path) -> None:
    run = settings(toy_dataset, "--sampler", "gp")  # the loss's own parameters come and go
    assert sampler_used(run, space_of(run)) == "tpe"
    assert isinstance(build_sampler(run, space_of(run)), optuna.samplers.TPESampler)


def test_gp_searches_the_probe_space_and_is_reproducible(toy_dataset: Path) -> None:
    run = settings(toy_dataset, "--sampler", "gp", "--num-samples", "8", *UNCONDITIONAL)

    def proposals() -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=build_sampler(run, space_of(run)))
        seen = []
        for _ in range(6):
            trial = study.ask()
            space_of(run)(trial)
            seen.append(dict(trial.params))
            study.tell(trial, -abs(trial.params["optim.lr"] - 3e-3) - 0.1 * trial.params["model.dropout"])
        return seen

    first = proposals()
    assert first == proposals()  # same --seed, same configs
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 6
    assert {"model.layers", "optim.lr", "model.pooling"} <= set(first[-1])


@pytest.mark.parametrize(("num_samples", "expected"), [(8, SMALL_BUDGET_SAMPLER), (SMALL_BUDGET, SMALL_BUDGET_SAMPLER),
                                                        (SMALL_BUDGET + 1, "tpe"), (200, "tpe")])
def test_the_default_follows_the_budget(toy_dataset: Path, num_samples: int, expected: str) -> None:
    assert default_sampler(num_samples) == expected
    assert settings(toy_dataset, "--num-samples", str(num_samples)).sampler == expected


def test_an_old_run_json_without_a_sampler_reads_as_tpe(toy_dataset: Path) -> None:
    raw = json.loads(settings(toy_dataset).to_json())
    del raw["sampler"]
    assert RunSettings.from_json(json.dumps(raw).encode()).sampler == "tpe"


def test_an_unknown_sampler_is_refused_in_one_line(toy_dataset: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--space", "whisper_probe", "--sampler", "bayes"])
    assert stopped.value.code == 2
    assert "--sampler: invalid choice: 'bayes'" in capsys.readouterr().err
