"""`--log-to`: flag checks before Ray starts (fast), and one real search logging to MLflow, W&B (offline) and
TensorBoard (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tune.engine import trackers
from tune.engine.arguments import RunSettings
from tune.engine.experiment import main as run_experiment
from tune.engine.trackers import parse_trackers

REPO = Path(__file__).resolve().parents[2]


def test_parse_trackers_orders_and_dedups() -> None:
    assert parse_trackers(" wandb,MLflow , tensorboard,mlflow") == ["tensorboard", "mlflow", "wandb"]
    assert parse_trackers(None) == [] and parse_trackers("") == []


@pytest.mark.parametrize(("flags", "message"), [
    (["--log-to", "mlflow,neptune,comet"],
     "error: --log-to: unknown tracker(s) comet, neptune; choose from tensorboard, mlflow, wandb"),
    (["--mlflow-uri", "sqlite:///x.db"], "error: --mlflow-uri is read only with --log-to mlflow"),
    (["--log-to", "mlflow", "--storage", "s3://bucket/runs"],
     "error: --log-to mlflow with a --storage URI: give --mlflow-uri"),
])
def test_bad_log_to_is_one_line_exit_2(flags: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = run_experiment(["--space", "whisper_balancing", "--demo", "--storage", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # refused before anything was made


def test_missing_tracker_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # a module name that really is not installed: the same lookup a missing mlflow goes through
    monkeypatch.setitem(trackers.PACKAGES, "mlflow", ("audiotune_absent_tracker", "pip install 'audiotune[mlflow]'"))
    code = run_experiment(["--space", "whisper_balancing", "--demo", "--storage", str(tmp_path), "--log-to", "mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: --log-to mlflow: the audiotune_absent_tracker package is not installed "
                                 "(pip install 'audiotune[mlflow]')")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_search_logs_every_trial_to_mlflow_wandb_and_tensorboard(ray_address: str, ray_env: dict[str, str],
                                                                 toy_dataset: Path, toy_cache_dir: Path,
                                                                 tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = {key: value for key, value in ray_env.items() if not key.startswith("WANDB_")}
    done = subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", str(toy_dataset),
         "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}", "--set", "train.batch_size=8",
         "--set", "train.device=cpu", "--num-samples", "2", "--epochs", "2", "--grace-period", "2",
         "--storage", str(tmp_path), "--name", "tracked", "--address", ray_address,
         "--log-to", "mlflow,wandb,tensorboard"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "tracked"
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert len(table) == 2
    assert RunSettings.from_json((folder / "run.json").read_bytes()).log_to == "tensorboard,mlflow,wandb"

    # MLflow: one run per trial in the run folder's database, with each epoch's fold mean and the final score
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    by_trial = {trial: run for run in runs for trial in table.index if trial in run.info.run_name}
    assert len(runs) == 2 and set(by_trial) == set(table.index)
    for trial, run in by_trial.items():
        results = [json.loads(line) for line in (folder / f"trial_{trial}" / "result.json").read_text().splitlines()]
        history = client.get_metric_history(run.info.run_id, "uar_mean")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [r["uar_mean"] for r in results], abs=1e-9)
        assert run.data.metrics["uar_score"] == pytest.approx(table.loc[trial, "uar_score"], abs=1e-9)
        assert float(run.data.params["optim.lr"]) == pytest.approx(float(table.loc[trial, "optim.lr"]), rel=1e-6)

    # W&B, offline: one run per trial (its id is the trial id) in wandb/ of the run folder, holding the metrics
    offline = sorted((folder / "wandb").glob("offline-run-*"))
    assert sorted(path.name.rsplit("-", 1)[1] for path in offline) == sorted(table.index)
    for path in offline:
        (log,) = path.glob("run-*.wandb")
        assert b"uar_mean" in log.read_bytes() and b"uar_score" in log.read_bytes()

    # TensorBoard: Tune's event files in every trial folder
    for trial in table.index:
        assert list((folder / f"trial_{trial}").glob("events.out.tfevents.*"))
