"""Searches that survive failures, on real Ray: a killed trial worker, a SIGKILLed driver (local mode), Ctrl-C, a
diverging config; and the same --seed giving the same search.

Every search here uses the same tiny budget and seed, so each one is compared with one uninterrupted reference
search: a resumed search must give exactly the reference's configs and fold scores (CPU training is deterministic
and resumes exactly from fold states), which is what "continues from the checkpoint" means.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from support.ray_cluster import CliProcess, ray_dashboard  # noqa: F401  (fixture)

from core.config import load_config_file
from core.data.dataset import prepare_data
from core.data.recorded import clip_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # real Ray searches: minutes

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
PARAMS = ["optim.lr", "optim.warmup_ratio", "optim.weight_decay", "augment.time_mask", "augment.time_masks",
          "augment.freq_mask", "augment.freq_masks"]


def search_args(data: Path, cache: Path, storage: Path, name: str, samples: int, *extra: str,
                epochs: int = EPOCHS) -> list[str]:
    """tune.run on the toy set; --grace-period = --epochs: no ASHA pruning, so results do not depend on timing."""
    return ["tune.run", "--space", "whisper_balancing", "--demo", "--data", str(data),
            "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={cache}", "--set", "train.batch_size=8",
            "--set", "train.device=cpu", "--num-samples", str(samples), "--epochs", str(epochs),
            "--grace-period", str(epochs), "--max-concurrent", "1", "--storage", str(storage), "--name", name, *extra]


def run(args: list[str], env: dict[str, str], timeout: int = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout)


def trials_by_params(folder: Path) -> dict[tuple, pd.Series]:
    """Leaderboard rows keyed by their sampled parameters (trial ids are random, parameters are not)."""
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    # a mask width is searched only with masks (conditional): absent -> None, so equal keys compare equal
    return {tuple(None if pd.isna(row.get(p)) else row[p] for p in PARAMS): row for _, row in table.iterrows()}


def assert_same_trials(folder: Path, reference: Path, subset: bool = False) -> None:
    got, want = trials_by_params(folder), trials_by_params(reference)
    assert set(got) <= set(want) if subset else set(got) == set(want), (sorted(got), sorted(want))
    for key, row in got.items():
        assert row["status"] == want[key]["status"] == "finished"
        assert row["uar_score"] == want[key]["uar_score"] and row["uar_folds"] == want[key]["uar_folds"]
        assert row["uar_std"] == want[key]["uar_std"]


def epochs_of(lines: list[str], trial: str) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(rf"trial {trial} epoch (\d+)/", line))]


@pytest.fixture(scope="module")
def reference(ray_address: str, ray_env: dict[str, str], toy_dataset: Path, toy_cache_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-trial search on the session cluster."""
    storage = tmp_path_factory.mktemp("reference")
    done = run(search_args(toy_dataset, toy_cache_dir, storage, "ref", 3, "--address", ray_address), ray_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "ref"


def test_same_seed_same_folds_configs_and_scores(reference: Path, ray_address: str, ray_env: dict[str, str],
                                                 toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> None:
    done = run(search_args(toy_dataset, toy_cache_dir, tmp_path, "again", 2, "--address", ray_address), ray_env)
    assert done.returncode == 0, done.stderr[-3000:]
    again = tmp_path / "again"
    # the same folds: as saved by both searches, and as core makes them from the exported config
    splits = json.loads((again / "splits.json").read_text())
    assert splits == json.loads((reference / "splits.json").read_text())
    config = load_config_file(again / "best_config.json")
    data = prepare_data(config)
    keys = np.asarray(clip_keys(data.manifest, config.data.audio_root))  # splits.json names clips by path
    assert splits["test"] == keys[data.splits.test].tolist()
    assert [(f["train"], f["valid"]) for f in splits["folds"]] == [
        (keys[f.train].tolist(), keys[f.valid].tolist()) for f in data.splits.folds]
    # the same configs (the reference's first two draws) and exactly the same scores
    assert len(trials_by_params(again)) == 2
    assert_same_trials(again, reference, subset=True)


def test_killed_worker_restarts_trial_from_checkpoint(reference: Path, ray_address: str, ray_dashboard: str,  # noqa: F811
                                                      ray_env: dict[str, str], toy_dataset: Path,
                                                      toy_cache_dir: Path, tmp_path: Path) -> None:
    from ray.util.state import list_actors

    search = CliProcess(search_args(toy_dataset, toy_cache_dir, tmp_path, "kill", 1, "--address", ray_address),
                        ray_env, REPO)
    trial = search.wait_for(r"trial (\w+) start").group(1)
    workers = list_actors(address=ray_dashboard, filters=[("class_name", "=", "ImplicitFunc"),
                                                           ("state", "=", "ALIVE")])
    assert len(workers) == 1  # the one trial; nothing else runs on the session cluster now
    killed = workers[0].pid
    search.wait_for(rf"trial {trial} epoch 2/")  # epoch 1's checkpoint is registered by now
    os.kill(killed, signal.SIGKILL)
    assert search.finish() == 0, search.stderr[-3000:]
    recovered = search.wait_for(rf"trial {trial} lost its worker; restarting from its checkpoint after epoch (\d+)")
    checkpointed = int(recovered.group(1))
    cut = search.lines.index(recovered.string)
    before, after = epochs_of(search.lines[:cut], trial), epochs_of(search.lines[cut:], trial)
    assert before == list(range(1, before[-1] + 1)) and before[-1] >= 2
    assert 1 <= checkpointed <= before[-1]
    assert after == list(range(checkpointed + 1, EPOCHS + 1))  # continued from the checkpoint, not from epoch 1
    results = [json.loads(line) for line in (tmp_path / "kill" / f"trial_{trial}" / "result.json").read_text()
               .splitlines()]
    assert killed in {r["pid"] for r in results} and results[-1]["pid"] != killed  # really another process
    table = pd.read_csv(tmp_path / "kill" / "leaderboard.csv", dtype={"trial_id": str})
    assert list(table["trial_id"]) == [trial]  # counted once
    assert_same_trials(tmp_path / "kill", reference, subset=True)  # resumed exactly: the reference's scores


def test_sigkilled_local_driver_resumes(reference: Path, ray_env: dict[str, str], toy_dataset: Path,
                                        toy_cache_dir: Path, tmp_path: Path) -> None:
    """Default local mode (its own Ray): kill -9 the driver with one trial finished and one mid-way, resume."""
    args = search_args(toy_dataset, toy_cache_dir, tmp_path, "local", 3)
    search = CliProcess(args, ray_env, REPO)
    try:
        first = search.wait_for(r"trial (\w+) finished at epoch").group(1)
        second = search.wait_for(rf"trial ((?!{first})\w+) epoch 2/").group(1)
        os.kill(search.process.pid, signal.SIGKILL)
        assert search.finish() == -signal.SIGKILL
    finally:
        search.end_leftovers()
    before = epochs_of(search.lines, second)
    assert not (tmp_path / "local" / "leaderboard.csv").exists()

    resumed = run(["tune.run", "--space", "whisper_balancing", "--name", "local", "--storage", str(tmp_path),
                   "--resume"], ray_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = resumed.stdout.splitlines()
    assert not epochs_of(lines, first)  # the finished trial is kept, not run again
    again = epochs_of(lines, second)
    assert 2 <= again[0] <= before[-1] + 1 and again[-1] == EPOCHS  # resumed from its checkpoint
    table = pd.read_csv(tmp_path / "local" / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 3 and table["trial_id"].is_unique
    study = optuna.load_study(study_name="local", storage=f"sqlite:///{tmp_path / 'local' / 'optuna.db'}")
    ray_ids = [t.user_attrs["ray_trial_id"] for t in study.trials]  # the live study, continued by the resume
    assert len(set(ray_ids)) == len(ray_ids) and set(table["trial_id"]) <= set(ray_ids), ray_ids
    assert all(t.state.is_finished() for t in study.trials)
    # The third trial's config is the reference's third: the sampler kept its history (a fresh sampler with the
    # same seed would have proposed the first trial's config again), and every score is the reference's.
    assert_same_trials(tmp_path / "local", reference)


def test_ctrl_c_saves_state_and_prints_a_working_resume_command(reference: Path, ray_address: str,
                                                                ray_env: dict[str, str], toy_dataset: Path,
                                                                toy_cache_dir: Path, tmp_path: Path) -> None:
    search = CliProcess(search_args(toy_dataset, toy_cache_dir, tmp_path, "ctrlc", 1, "--address", ray_address),
                        ray_env, REPO)
    trial = search.wait_for(r"trial (\w+) epoch 1/").group(1)
    os.kill(search.process.pid, signal.SIGINT)
    assert search.finish() == 130, search.stderr[-3000:]
    assert "Traceback" not in search.stderr
    lines = search.stderr.splitlines()
    command = lines[lines.index("interrupted; the search state is saved. Resume with:") + 1].strip()
    assert not (tmp_path / "ctrlc" / "leaderboard.csv").exists()  # no partial results passed off as final

    resumed = subprocess.run(shlex.split(command), capture_output=True, text=True, env=ray_env, cwd=REPO,
                             timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 2 <= epochs_of(resumed.stdout.splitlines(), trial)[0] <= EPOCHS
    table = pd.read_csv(tmp_path / "ctrlc" / "leaderboard.csv", dtype={"trial_id": str})
    assert list(table["trial_id"]) == [trial]
    assert_same_trials(tmp_path / "ctrlc", reference, subset=True)


def test_diverging_config_errors_once_and_the_search_goes_on(ray_address: str, ray_env: dict[str, str],
                                                             toy_dataset: Path, toy_cache_dir: Path,
                                                             tmp_path: Path) -> None:
    """lr=1e6 without clipping (lr pinned with --set although the space searches it) makes the loss non-finite in
    every trial (lr=1e3 with clipping stays finite for some sampled warmups)."""
    done = run(search_args(toy_dataset, toy_cache_dir, tmp_path, "nan", 2, "--address", ray_address,
                           "--set", "optim.lr=1e6", "--set", "optim.grad_clip=0", epochs=2), ray_env)
    assert done.returncode == 1 and "every trial failed" in done.stderr, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "nan" / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 2 and set(table["status"]) == {"error"}
    assert table["error"].str.match(r"diverged: fold \d epoch \d: .*(loss is|not finite)").all(), table["error"]
    assert (table["optim.lr"] == 1e6).all() and table["uar_score"].isna().all()
    lines = done.stdout.splitlines()
    for trial in table["trial_id"]:  # each trial ran once: not retried like a lost worker
        assert sum(line.startswith(f"trial {trial} start") for line in lines) == 1
    assert "lost its worker" not in done.stdout
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'nan' / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "optim.lr" not in study.trials[0].params and study.user_attrs["pinned"]["optim.lr"] == 1e6
    assert not (tmp_path / "nan" / "best_config.json").exists()
