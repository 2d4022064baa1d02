"""The real `tune.run` CLI on a real local Ray (tiny budget), then `tune.final` on its export."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from core.config import load_config_file
from core.data.dataset import prepare_data
from core.train import train_fold

pytestmark = pytest.mark.timeout(900)


def run_cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def search(ray_address: str, ray_env: dict[str, str], toy_dataset: Path, toy_cache_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    storage = tmp_path_factory.mktemp("runs")
    done = run_cli("tune.run", "--space", "whisper_balancing", "--demo", "--data", str(toy_dataset),
                   "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}",
                   "--set", "train.batch_size=8", "--set", "train.device=cpu",
                   "--num-samples", "3", "--epochs", "2", "--storage", str(storage), "--name", "it",
                   "--address", ray_address, env=ray_env)
    return storage / "it", done


def test_search_runs_and_prints_progress(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, done = search
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert sum(" epoch 1/2 " in line for line in lines) == 3  # one line per trial per epoch
    assert any(line.startswith("leaderboard") for line in lines)
    assert "Number of trials" not in done.stdout  # Ray's own tables are silenced


def test_leaderboard_holds_every_trial_with_fold_scores(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    table = pd.read_csv(folder / "leaderboard.csv")
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert set(table["status"]) <= {"finished", "stopped (ASHA)"}
    for _, row in table.iterrows():
        folds = [float(v) for v in row["uar_folds"].split()]
        assert len(folds) == 3
        assert row["uar_mean"] == pytest.approx(np.mean(folds), abs=1e-4)
        assert row["uar_std"] == pytest.approx(np.std(folds), abs=1e-4)
    assert list(table["uar_mean"]) == sorted(table["uar_mean"], reverse=True)
    parquet = pd.read_parquet(folder / "leaderboard.parquet")
    assert list(parquet["trial_id"]) == list(table["trial_id"])


def test_optuna_study_saved_to_sqlite(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    table = pd.read_csv(folder / "leaderboard.csv")
    study = optuna.load_study(study_name="it", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 3
    values = sorted(t.value for t in study.trials)
    assert values == pytest.approx(sorted(table["uar_mean"]), abs=1e-9)
    assert {"optim.lr", "optim.warmup_ratio", "augment.time_mask"} <= set(study.trials[0].params)


def test_export_is_the_winner_and_reproduces_on_core(search: tuple[Path, subprocess.CompletedProcess[str]],
                                                     toy_cache_dir: Path) -> None:
    """best_config.json holds the winner's full config; re-running it with core alone gives its fold scores."""
    folder, _ = search
    export = json.loads((folder / "best_config.json").read_text())
    table = pd.read_csv(folder / "leaderboard.csv")
    winner = table[table["status"] == "finished"].iloc[0] if (table["status"] == "finished").any() else table.iloc[0]
    assert export["trial_id"] == winner["trial_id"]
    assert export["score"]["mean"] == pytest.approx(winner["uar_mean"])
    assert len(export["score"]["folds"]) == 3
    assert export["config"]["train"]["epochs"] == max(1, round(statistics.median(export["fold_best_epochs"])))
    config = load_config_file(folder / "best_config.json")
    assert config.optim.lr == pytest.approx(export["params"]["optim.lr"])
    assert config.loss.name == "balancing" and config.model.size == "micro"
    assert export["search"]["num_samples"] == 3 and export["search"]["space"] == "whisper_balancing"
    # The same config trained by core alone (no Ray) gives the same per-fold scores on CPU.
    rerun = config.with_overrides({"train.epochs": export["score"]["epoch"]})
    data = prepare_data(rerun)
    scores = [list(train_fold(rerun, data, fold))[-1].metrics["uar"] for fold in data.splits.folds]
    assert scores == pytest.approx(export["score"]["folds"], abs=1e-9)


def test_final_training_writes_test_report(search: tuple[Path, subprocess.CompletedProcess[str]],
                                           tmp_path: Path) -> None:
    folder, _ = search
    done = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(tmp_path / "final"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "final" / "report.json").read_text())
    config = load_config_file(folder / "best_config.json")
    test_rows = prepare_data(config).splits.test
    assert report["test_clips"] == len(test_rows)
    assert np.sum(report["confusion_matrix"]) == len(test_rows)
    assert report["classes"] == ["abnormal", "normal"]
    assert 0.0 <= report["metrics"]["uar"] <= 1.0
    assert sum(entry["clips"] for entry in report["per_word"].values()) == len(test_rows)
    assert sum(entry["clips"] for entry in report["per_speaker"].values()) == len(test_rows)
    assert report["positive_class"] == "abnormal" and 0 <= report["metrics"]["sensitivity"] <= 1
    assert (tmp_path / "final" / "model.safetensors").stat().st_size > 0
    again = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(tmp_path / "final"))
    assert again.returncode == 2
    assert "already holds MODEL_CARD.md, config.json, model.json, model.safetensors ..." in again.stderr
    evaluated = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(tmp_path / "final"),
                        "--eval-only", "--checkpoint", str(tmp_path / "final"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "final" / "eval_report.json").read_text())["metrics"] == report["metrics"]


def test_the_search_records_its_split_and_everything_after_uses_it(
        search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    recorded = json.loads((folder / "splits.json").read_text())
    assert recorded["version"] == 2 and len(recorded["folds"]) == 3 and recorded["manifest_hash"]
    assert json.loads((folder / "run.json").read_text())["base"]["data"]["splits_file"] == str(folder / "splits.json")
    config = load_config_file(folder / "best_config.json")
    assert config.data.splits_file == str(folder / "splits.json")
    data = prepare_data(config)
    assert sorted(Path(data.manifest.paths[row]).relative_to(data.manifest.source.parent).as_posix()
                  for row in data.splits.test) == sorted(recorded["test"])


def test_resume_refuses_flags_it_would_ignore(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    common = ["--space", "whisper_balancing", "--name", "it", "--storage", str(folder.parent), "--resume"]
    done = run_cli("tune.run", *common, "--data", "/nonexistent.csv", "--epochs", "9")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --resume continues 'it' with its stored settings (run.json); --data, --epochs cannot change them: "
        "drop it, or start a new search under another --name"]
    other = run_cli("tune.run", *common[:1], "whisper_losses", *common[2:])
    assert other.returncode == 2 and "searches space 'whisper_balancing', not 'whisper_losses'" in other.stderr
