"""Each private Ray, Optuna or CPython API the engine still uses (tune/engine/private_api.py) behaves as it did when
checked; these fail when a pinned version moves or changes one, which is the moment to re-check that module."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from ray.tune import ResultGrid
from ray.tune.experiment import Trial

from tune.engine import private_api

ROOT = Path(__file__).resolve().parents[2]


def test_the_pinned_versions_are_the_checked_ones() -> None:
    pins = dict(line.split("==") for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for package in ("ray", "optuna"):
        assert pins[package] == private_api.CHECKED[package], f"re-check tune/engine/private_api.py for {package}"
        assert importlib.metadata.version(package) == private_api.CHECKED[package]


def test_exit_now_runs_the_exit_hooks_then_ends_with_the_code(tmp_path: Path) -> None:
    marker = tmp_path / "hook.txt"
    code = (f"import atexit\nfrom tune.engine.private_api import exit_now\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\nexit_now(7)\nprint('not reached')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stdout, marker.read_text()) == (7, "", "ran")


def test_ray_init_still_takes_the_node_address() -> None:
    """ray.init reads `_node_ip_address` from its **kwargs (an unknown keyword would raise there)."""
    import ray

    source = inspect.getsource(ray.init)
    for option in private_api.loopback_init_options():
        assert f'kwargs.pop("{option}", None)' in source


def test_a_forgiven_failure_is_not_counted() -> None:
    trial = Trial("cross_validate", trial_id="abc", stub=True)
    trial.run_metadata.num_failures = 2
    private_api.forgive_failure(trial)
    assert trial.num_failures == 1  # the public count Tune compares with max_failures


def test_the_syncer_logger_is_ray_s_own() -> None:
    module = importlib.import_module(private_api.RAY_SYNCER_LOGGER)
    assert module.logger is logging.getLogger(private_api.RAY_SYNCER_LOGGER)


def test_a_frozen_trial_is_validated_as_add_trial_does() -> None:
    good = optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, params={"lr": 0.1},
                                     distributions={"lr": FloatDistribution(0.01, 1.0)})
    private_api.validate_frozen_trial(good)
    good.values = None  # a COMPLETE trial needs a value
    with pytest.raises(ValueError, match="values should be set"):
        private_api.validate_frozen_trial(good)


def test_a_result_grid_keeps_its_trials() -> None:
    """ResultGrid(analysis) keeps the analysis whose `trials` are Tune's Trial objects."""
    assert "experiment_analysis" in inspect.signature(ResultGrid.__init__).parameters

    class Analysis:  # the one attribute grid_trials reads; a real ExperimentAnalysis needs a finished run folder
        trials = [Trial("cross_validate", trial_id="t1", stub=True)]

    assert "self._experiment_analysis = experiment_analysis" in inspect.getsource(ResultGrid.__init__)
    grid = ResultGrid.__new__(ResultGrid)
    grid._experiment_analysis = Analysis()  # what __init__ stores, as its source (above) shows
    assert [t.trial_id for t in private_api.grid_trials(grid)] == ["t1"]


def test_optuna_search_keeps_its_asked_trials_until_told() -> None:
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space=lambda trial: {"x": trial.suggest_float("x", 0, 1)}, metric="m", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    assert searcher.suggest("a") is not None
    asked = private_api.open_optuna_trial(searcher, "a")
    assert isinstance(asked, optuna.Trial) and asked.params.keys() == {"x"}
    searcher.on_trial_complete("a", {"m": 1.0})
    assert private_api.open_optuna_trial(searcher, "a") is None
    assert private_api.open_optuna_trial(searcher, "never-asked") is None
