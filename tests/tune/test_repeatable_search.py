"""With --max-concurrent 1 a whole search repeats (issue 21, item 8): the same configs, the same ASHA stops at the
same epochs, the same scores and the same winner, twice on the same seed. And the study a dashboard reads (item 11)
carries every ASHA-stopped trial's score as Optuna's own value, so `study.best_trial` and Optuna's importance
evaluator agree with the leaderboard. Real Ray (the session cluster), real toy audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["rank", "status", "epochs", "score_epoch", "uar_score", "uar_std", "uar_folds"]


def search(data: Path, cache: Path, storage: Path, name: str, address: str, env: dict[str, str]) -> Path:
    """5 trials of 3 epochs, ASHA stopping from epoch 1, one trial at a time."""
    args = [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", str(data),
            "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={cache}", "--set", "train.batch_size=8",
            "--set", "train.device=cpu", "--num-samples", "5", "--epochs", "3", "--grace-period", "1",
            "--max-concurrent", "1", "--storage", str(storage), "--name", name, "--address", address]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=800)
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / name


def leaderboard(folder: Path) -> pd.DataFrame:
    """The leaderboard without what differs by design (Ray's random trial ids, times), in rank order."""
    table = pd.read_csv(folder / "leaderboard.csv")
    params = sorted(column for column in table.columns if "." in column)  # the sampled parameters
    return table[[*COLUMNS, *params]].sort_values("rank").reset_index(drop=True)


def test_one_trial_at_a_time_repeats_the_whole_search(ray_address: str, ray_env: dict[str, str],
                                                      toy_dataset: Path, toy_cache_dir: Path,
                                                      tmp_path: Path) -> None:
    first = search(toy_dataset, toy_cache_dir, tmp_path, "first", ray_address, ray_env)
    second = search(toy_dataset, toy_cache_dir, tmp_path, "second", ray_address, ray_env)
    one, two = leaderboard(first), leaderboard(second)
    pd.testing.assert_frame_equal(one, two)  # configs, stops, scores, ranks: the winner too
    assert (one["status"] == "stopped (ASHA)").any(), one  # ASHA did stop some, so the stops were compared

    # the study through Optuna's public API: stopped trials are COMPLETE with their score and `stopped: asha`
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{first / 'optuna.db'}")
    table = pd.read_csv(first / "leaderboard.csv", dtype={"trial_id": str}).set_index("trial_id")
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        row = table.loc[trial.user_attrs["ray_trial_id"]]
        assert trial.value == pytest.approx(row["uar_score"], abs=1e-12)
        assert (trial.user_attrs.get("stopped") == "asha") == (row["status"] == "stopped (ASHA)")
    assert study.best_trial.user_attrs["ray_trial_id"] == table["rank"].idxmin()
    importances = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
        seed=0))
    assert importances and set(importances) <= set(study.best_trial.params) | {
        key for t in trials for key in t.params}
