"""`tune.run --constraint`: bounds parsed and checked before Ray, Optuna told each trial's constraint values through
`Trial.set_constraint` (so TPE sees infeasible trials), the leaderboard's `feasible` column, the export of the best
feasible trial, and a real tiny constrained search that exports a feasible trial or says none was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from core.errors import UserError
from tune.engine.search import DivergenceAwareOptunaSearch
from tune.results.constraints import Constraint, feasible, parse_constraint
from tune.results.export import select_winner
from tune.results.leaderboard import ASHA, ERROR, FINISHED

ROOT = Path(__file__).resolve().parents[2]


def test_parse_constraints() -> None:
    assert parse_constraint("uar_age_gap<=0.10") == Constraint("uar_age_gap", "<=", 0.1)
    assert parse_constraint(" uar_speaker_p10 >= 0.5 ") == Constraint("uar_speaker_p10", ">=", 0.5)
    for bad in ("uar_age_gap<0.1", "uar_age_gap", "<=0.1", "uar_age_gap<=x"):
        with pytest.raises(UserError, match="--constraint"):
            parse_constraint(bad)
    gap = parse_constraint("uar_age_gap<=0.10")
    assert gap.violation({"uar_age_gap_score": 0.25}) == pytest.approx(0.15)
    assert gap.violation({"uar_age_gap_score": 0.05}) <= 0
    assert gap.violation({"uar_age_gap_score": float("nan")}) > 0 and gap.violation({}) > 0  # unknown: infeasible
    assert feasible({"uar_age_gap_score": 0.1, "uar_speaker_p10_score": 0.6},
                    [gap, parse_constraint("uar_speaker_p10>=0.5")])


def test_optuna_is_told_each_trials_constraints(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    searcher = DivergenceAwareOptunaSearch(space=lambda trial: {"x": trial.suggest_float("x", 0, 1)},
                                           metric="uar_score", mode="max",
                                           sampler=optuna.samplers.TPESampler(seed=0), study_name="constrained",
                                           storage=storage, constraints=[parse_constraint("uar_age_gap<=0.10")])
    for trial_id, gap in (("a", 0.3), ("b", 0.05)):
        assert searcher.suggest(trial_id) is not None
        searcher.on_trial_complete(trial_id, {"uar_score": 0.7, "uar_age_gap_score": gap})
    trials = optuna.load_study(study_name="constrained", storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.constraints for t in trials] == [{"uar_age_gap<=0.1": pytest.approx(0.2)},
                                               {"uar_age_gap<=0.1": pytest.approx(-0.05)}]


def test_the_export_is_the_best_feasible_trial() -> None:
    table = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "status": [FINISHED, FINISHED, ERROR, ASHA],
                          "uar_score": [0.9, 0.8, 0.95, 0.7], "feasible": [False, True, False, True]})
    assert select_winner(table)["trial_id"] == "b"
    assert select_winner(table.assign(feasible=False)) is None
    assert select_winner(table.drop(columns="feasible"))["trial_id"] == "a"


@pytest.mark.parametrize("flag, says", [("uar_age_gap<0.1", "write METRIC<=X or METRIC>=X"),
                                        ("nonsense<=0.1", "unknown metric 'nonsense'"),
                                        ("mae<=0.1", "is not scored by mae")])
def test_a_bad_constraint_is_one_line_before_ray(flag: str, says: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo",
                           "--constraint", flag, "--storage", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("bound, met", [("uar_speaker_p10>=0", True), ("uar_age_gap<=-1", False)])
def test_a_constrained_search_exports_a_feasible_trial_or_says_none_was(
        bound: str, met: bool, ray_address: str, ray_env: dict[str, str], toy_dataset: Path, toy_cache_dir: Path,
        tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", str(toy_dataset),
         "--constraint", bound, "--constraint", "uar_age_gap<=1", "--set", "data.bias_min_clips=1",
         "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}", "--set", "train.batch_size=8",
         "--set", "train.device=cpu", "--num-samples", "3", "--epochs", "2", "--storage", str(tmp_path),
         "--name", "c", "--address", ray_address], capture_output=True, text=True, env=ray_env, cwd=ROOT,
        timeout=800)
    folder = tmp_path / "c"
    assert "subject to " in done.stdout and "ASHA pruning" in done.stdout  # one objective, pruned, constrained
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    assert "feasible" in table.columns and len(table) == 3
    if met:
        assert done.returncode == 0, done.stderr[-3000:]
        export = json.loads((folder / "best_config.json").read_text())
        row = table[table["trial_id"] == export["trial_id"]].iloc[0]
        assert bool(row["feasible"]) and row["uar_speaker_p10_score"] >= 0 and row["uar_age_gap_score"] <= 1
        assert json.loads((folder / "run.json").read_text())["constraints"] == [bound, "uar_age_gap<=1"]
        assert "feasible" in (folder / "report.html").read_text()
    else:
        assert done.returncode == 1
        assert f"no trial met --constraint {bound} uar_age_gap<=1" in done.stderr
        assert not table["feasible"].any() and not (folder / "best_config.json").exists()


def test_the_bundled_demo_is_found_in_a_checkout() -> None:
    """--demo without --data reads the checkout's data/demo (tune/engine/ is two folders below the root)."""
    from tune.engine.arguments import bundled_demo

    assert bundled_demo() == ROOT / "data" / "demo" / "manifest.csv" and bundled_demo().is_file()


def test_constraints_come_back_from_a_settings_file(tmp_path: Path) -> None:
    """A run.json holds `constraints` (a list); a YAML file may give one `constraint`: both are --constraint."""
    from tune.engine.arguments import parse_args

    (tmp_path / "run.json").write_text(json.dumps({"constraints": ["uar_age_gap<=0.1", "uar_speaker_p10>=0.5"]}))
    assert parse_args(["--config", str(tmp_path / "run.json")]).constraints == ["uar_age_gap<=0.1",
                                                                                "uar_speaker_p10>=0.5"]
    (tmp_path / "search.yaml").write_text("constraint: uar_age_gap<=0.2\n")
    assert parse_args(["--config", str(tmp_path / "search.yaml")]).constraints == ["uar_age_gap<=0.2"]
    assert parse_args(["--config", str(tmp_path / "search.yaml"), "--constraint", "uar_age_gap<=0.3"]
                      ).constraints == ["uar_age_gap<=0.3"]  # the command line wins, as for every flag
    (tmp_path / "bad.json").write_text(json.dumps({"constraints": [1]}))
    with pytest.raises(UserError, match="constraints must be a bound"):
        parse_args(["--config", str(tmp_path / "bad.json")])
