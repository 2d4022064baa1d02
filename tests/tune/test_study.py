"""optuna.db is written while the search runs (tune/engine/study.py): read mid-run, then checked against the leaderboard
and the trials' own results after it ends. A real `tune.run` on its own local Ray (as a user runs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TRIALS, EPOCHS = 6, 4


def read_study(db: Path, name: str, copy_to: Path) -> list[optuna.trial.FrozenTrial]:
    """The study as a dashboard reads it: a copy of the file as it is now (the search replaces it whole)."""
    shutil.copyfile(db, copy_to)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{copy_to}").get_trials()


def test_study_is_live_ordered_and_faithful(ray_env: dict[str, str], toy_dataset: Path, toy_cache_dir: Path,
                                            tmp_path: Path) -> None:
    env = {key: value for key, value in ray_env.items() if key != "RAY_AUTH_MODE"}  # as a user runs it
    storage = tmp_path / "runs"
    args = [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", str(toy_dataset),
            "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}", "--set", "train.batch_size=8",
            "--set", "train.device=cpu", "--num-samples", str(TRIALS), "--epochs", str(EPOCHS), "--grace-period", "1",
            "--max-concurrent", "1", "--storage", str(storage), "--name", "live"]
    db = storage / "live" / "optuna.db"
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        search = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=REPO)
        mid_search: list[optuna.trial.FrozenTrial] = []
        try:
            deadline = time.monotonic() + 600
            while search.poll() is None and time.monotonic() < deadline:
                if db.exists():
                    trials = read_study(db, "live", tmp_path / "snapshot.db")
                    if any(t.state.is_finished() for t in trials) and search.poll() is None:
                        mid_search = trials
                        break
                time.sleep(0.5)
            assert search.wait(timeout=600) == 0, (tmp_path / "err.txt").read_text()[-3000:]
        finally:
            if search.poll() is None:
                search.kill()
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()

    # read while the search still ran: finished trials with real times, later ones still waiting or running
    assert mid_search, "optuna.db never held a finished trial while the search ran"
    done = [t for t in mid_search if t.state.is_finished()]
    assert len(done) < TRIALS
    assert all(t.datetime_start < t.datetime_complete for t in done)
    assert all(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mid_search if t not in done)

    trials = read_study(db, "live", tmp_path / "final.db")
    assert [t.number for t in trials] == list(range(TRIALS))
    ray_ids = [t.user_attrs["ray_trial_id"] for t in trials]
    started = re.findall(r"^trial (\w+) start ", stdout, flags=re.MULTILINE)
    assert ray_ids == started  # numbered in the order Tune sampled (and, one at a time, started) them
    # one trial at a time: each starts after the one before it ended
    for before, after in zip(trials, trials[1:], strict=False):
        assert before.datetime_start < before.datetime_complete <= after.datetime_start

    table = pd.read_csv(storage / "live" / "leaderboard.csv", dtype={"trial_id": str}).set_index("trial_id")
    for trial in trials:  # ASHA-stopped trials too are COMPLETE, with their score and `stopped: asha`
        row = table.loc[trial.user_attrs["ray_trial_id"]]
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["status"] == row["status"]
        assert (trial.user_attrs.get("stopped") == "asha") == (row["status"] == "stopped (ASHA)")
        assert trial.user_attrs["uar_score"] == pytest.approx(row["uar_score"], abs=1e-12)
        assert trial.user_attrs["uar_std"] == pytest.approx(row["uar_std"], abs=1e-12)
        assert " ".join(f"{v:.4f}" for v in trial.user_attrs["uar_folds"]) == row["uar_folds"]
        assert trial.value == pytest.approx(row["uar_score"], abs=1e-12)
        results = [json.loads(line) for line in
                   (storage / "live" / f"trial_{row.name}" / "result.json").read_text().splitlines()]
        assert trial.intermediate_values == {r["training_iteration"]: pytest.approx(r["uar_mean"], abs=1e-12)
                                             for r in results}  # every epoch's fold mean
        assert len(results) == row["epochs"]
        assert {"optim.lr", "optim.warmup_ratio", "augment.time_masks"} <= set(trial.params)
    assert sum(t.user_attrs.get("stopped") == "asha" for t in trials) >= 1  # ASHA stopped some before epoch 4
    assert sum(t.user_attrs["status"] == "finished" for t in trials) >= 1

    # the progress summary after every trial, and no Ray token-authentication warning in a local run
    summaries = re.findall(r"^(\d+)/6 done, \d+ running, 0 errored · best uar \d\.\d{3} ± \d\.\d{3} \(trial \w+\) · "
                           r"\d+ (?:s|min) elapsed, (?:~\d+ (?:s|min) left|nothing left)$", stdout, flags=re.MULTILINE)
    assert summaries == [str(n) for n in range(1, TRIALS + 1)], stdout[-3000:]
    assert "Token authentication" not in stdout + stderr
