"""The real `tune.run` CLI on a real local Ray (tiny budget), then `core.train` and `tune.final` on its export: one
score everywhere, the folds' learning-rate trajectory in final training, and the winner's out-of-fold predictions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from core.config import Config, load_config_file
from core.data.dataset import prepare_data
from core.data.splits import Fold
from core.optim import SCHEDULERS
from core.train import train_fold

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # real Ray searches: minutes


def run_cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


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
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert set(table["status"]) <= {"finished", "stopped (ASHA)"}
    for _, row in table.iterrows():
        folds = [float(v) for v in row["uar_folds"].split()]  # each fold at e* (score_epoch)
        assert len(folds) == 3 and 1 <= row["score_epoch"] <= row["epochs"]
        assert row["uar_score"] == pytest.approx(np.mean(folds), abs=1e-4)
        assert row["uar_std"] == pytest.approx(np.std(folds, ddof=1), abs=1e-4)  # the folds' sample std
    assert list(table["uar_score"]) == sorted(table["uar_score"], reverse=True)
    parquet = pd.read_parquet(folder / "leaderboard.parquet")
    assert list(parquet["trial_id"]) == list(table["trial_id"])


def test_optuna_study_saved_to_sqlite(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    study = optuna.load_study(study_name="it", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 3
    values = sorted(t.value for t in study.trials)
    assert values == pytest.approx(sorted(table["uar_score"]), abs=1e-9)  # Optuna was told the score
    assert {"optim.lr", "optim.warmup_ratio", "augment.time_masks"} <= set(study.trials[0].params)


def test_export_is_the_winner_and_its_validated_recipe(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """best_config.json holds the winner's full config with the schedule horizon and e*, and what was validated."""
    folder, _ = search
    export = json.loads((folder / "best_config.json").read_text())
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    winner = table[table["status"] == "finished"].iloc[0] if (table["status"] == "finished").any() else table.iloc[0]
    assert export["trial_id"] == winner["trial_id"]
    validated = export["validated"]
    assert validated["score"] == pytest.approx(winner["uar_score"], abs=1e-9)
    assert validated["epoch"] == winner["score_epoch"] and len(validated["folds"]) == 3
    assert validated["score"] == pytest.approx(np.mean(validated["folds"]), abs=1e-12)
    assert validated["std"] == pytest.approx(np.std(validated["folds"], ddof=1), abs=1e-12)
    assert (validated["metric"], validated["select"], validated["horizon"]) == ("uar", "best", 2)
    train = export["config"]["train"]
    assert train["epochs"] == 2 and train["stop_epoch"] == (validated["epoch"] if validated["epoch"] < 2 else 0)
    config = load_config_file(folder / "best_config.json")
    assert config.optim.lr == pytest.approx(export["params"]["optim.lr"])
    assert config.loss.name == "balancing" and config.model.size == "micro"
    assert export["search"]["num_samples"] == 3 and export["search"]["space"] == "whisper_balancing"


SEARCH_PLOTS = ["optimisation_history.png", "learning_curves.png", "slice.png", "param_importances.png"]


def drawn_search_plots(folder: Path) -> list[str]:
    """The search figures drawn; each one not drawn is in plots/skipped.json with its reason. Only the importances
    may be skipped here: three toy trials of two epochs can all score chance (UAR 0.5), which fANOVA cannot split."""
    skipped = json.loads((folder / "plots" / "skipped.json").read_text())
    assert set(skipped) <= {"param_importances.png"}, skipped
    assert all(skipped.values())
    drawn = [name for name in SEARCH_PLOTS if name not in skipped]
    assert drawn == [name for name in SEARCH_PLOTS if (folder / "plots" / name).is_file()]
    return drawn
FINAL_PLOTS = ["confusion_matrix.png", "roc_curve.png", "reliability_diagram.png", "uar_per_word.png",
               "uar_per_age_band.png"]  # the reliability diagram: calibrated on the out-of-fold predictions


def sampling_order(folder: Path) -> dict[str, int]:
    """{trial id: number} read from Tune's saved trial list (experiment tags start with Tune's counter: `2_...`),
    independently of tune/results/plots.py."""
    state = json.loads(sorted(folder.glob("experiment_state-*.json"))[-1].read_text())
    trials = [json.loads(entry[0]) for entry in state["trial_data"]]
    return {trial["trial_id"]: int(trial["experiment_tag"].split("_", 1)[0]) for trial in trials}


def test_search_plots_show_the_leaderboard_and_the_report_holds_them(
        search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    from test_plots import assert_png

    from core.plots import png_bytes
    from tune.results.plots import history_figure, history_table

    folder, _ = search
    for name in drawn_search_plots(folder):
        assert_png((folder / "plots" / name).read_bytes())
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    order = sampling_order(folder)
    assert sorted(order.values()) == [1, 2, 3] and set(order) == set(table["trial_id"])
    history = history_table(table, order, "uar", "max")
    sampled = sorted(order, key=order.get)
    assert history["trial_id"].tolist() == sampled
    assert history["score"].tolist() == table.set_index("trial_id").loc[sampled, "uar_score"].tolist()
    assert history["best_so_far"].tolist() == np.maximum.accumulate(history["score"]).tolist()
    # the written figure is exactly this one: the leaderboard's scores in Tune's sampling order
    assert png_bytes(history_figure(history, "uar")) == (folder / "plots" / "optimisation_history.png").read_bytes()
    page = (folder / "report.html").read_text()
    assert table["trial_id"][0] in page and page.count("data:image/png;base64,") == len(drawn_search_plots(folder))


@pytest.fixture(scope="module")
def final(search: tuple[Path, subprocess.CompletedProcess[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tune.final's output folder for the search's best_config.json."""
    folder, _ = search
    out = tmp_path_factory.mktemp("final") / "final"
    done = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"epoch {json.loads((folder / 'best_config.json').read_text())['validated']['epoch']}/" \
        in done.stdout.splitlines()[-3]  # the last epoch it trained is e*
    return out


def test_final_training_writes_test_report(search: tuple[Path, subprocess.CompletedProcess[str]], final: Path
                                           ) -> None:
    folder, _ = search
    report = json.loads((final / "report.json").read_text())
    config = load_config_file(folder / "best_config.json")
    test_rows = prepare_data(config).splits.test
    assert report["test_clips"] == len(test_rows)
    assert np.sum(report["confusion_matrix"]) == len(test_rows)
    assert report["classes"] == ["abnormal", "normal"]
    assert 0.0 <= report["metrics"]["uar"] <= 1.0
    assert sum(entry["clips"] for entry in report["per_word"].values()) == len(test_rows)
    assert sum(entry["clips"] for entry in report["per_speaker"].values()) == len(test_rows)
    assert report["positive_class"] == "abnormal" and 0 <= report["metrics"]["sensitivity"] <= 1
    assert (final / "model.safetensors").stat().st_size > 0
    again = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(final))
    assert again.returncode == 2
    assert "already holds MODEL_CARD.md, config.json, model.json, model.safetensors ..." in again.stderr
    evaluated = run_cli("tune.final", "--config", str(folder / "best_config.json"), "--out", str(final),
                        "--eval-only", "--checkpoint", str(final))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((final / "eval_report.json").read_text())["metrics"] == report["metrics"]


def test_final_plots_and_the_run_report_with_the_final_model(
        search: tuple[Path, subprocess.CompletedProcess[str]], final: Path) -> None:
    from test_plots import assert_png

    folder, _ = search
    for name in FINAL_PLOTS:
        assert_png((final / "plots" / name).read_bytes())
    report = json.loads((final / "report.json").read_text())
    page = (folder / "report.html").read_text()  # tune.final refreshed the run's page with its model folder
    assert "Final model: held-out test set" in page and str(final) in page
    assert f"{report['metrics']['uar']:.4f}" in page
    assert page.count("data:image/png;base64,") == len(drawn_search_plots(folder)) + len(FINAL_PLOTS)
    assert pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})["trial_id"][0] in page


def test_one_score_from_the_search_to_the_final_report(search: tuple[Path, subprocess.CompletedProcess[str]],
                                                       final: Path, tmp_path: Path) -> None:
    """Leaderboard score = best_config.json score = `core.train --config best_config.json` score = the final
    report's cv_score: one number, to 1e-9 on CPU."""
    folder, _ = search
    export = json.loads((folder / "best_config.json").read_text())
    validated = export["validated"]
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    leaderboard = float(table.loc[table["trial_id"] == export["trial_id"], "uar_score"].iloc[0])
    done = run_cli("core.train", "--config", str(folder / "best_config.json"), "--out", str(tmp_path / "cv"),
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert f"best epoch {validated['epoch']} of the fold-mean curve: uar {validated['score']:.4f} ± " \
        f"{validated['std']:.4f}" in done.stdout.strip().splitlines()[-1]
    cv_score = json.loads((final / "report.json").read_text())["cv_score"]
    assert cv_score == validated
    for value in (validated["score"], summary["score"]["score"], cv_score["score"]):
        assert value == pytest.approx(leaderboard, abs=1e-9)
    assert summary["score"]["epoch"] == validated["epoch"]
    assert summary["score"]["folds"] == pytest.approx(validated["folds"], abs=1e-9)
    assert summary["score"]["std"] == pytest.approx(validated["std"], abs=1e-9)


def learning_rates(results: list) -> list[float]:
    return [result.state["scheduler"]["_last_lr"][0] for result in results]


def schedule(config: Config, steps_per_epoch: int, epochs: int) -> list[float]:
    """The learning rate after each of `epochs` epochs of the config's schedule over train.epochs (the horizon)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.optim.lr)
    scheduler = SCHEDULERS.get(config.optim.scheduler)(optimizer, config.optim,
                                                       steps_per_epoch * config.train.epochs, "max")
    rates = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            optimizer.step()
            scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


def test_final_training_follows_the_folds_learning_rate_and_stops_at_e_star(
        search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    export = json.loads((folder / "best_config.json").read_text())
    config = load_config_file(folder / "best_config.json")
    data = prepare_data(config)
    fold = data.splits.folds[0]
    development = Fold(index=0, train=data.splits.development, valid=np.zeros(0, dtype=np.int64))  # tune.final's
    validated = list(train_fold(config, data, fold))
    final_run = list(train_fold(config, data, development))
    assert len(final_run) == len(validated) == export["validated"]["epoch"]  # both stop at e*
    assert validated[-1].metrics["uar"] == pytest.approx(export["validated"]["folds"][0], abs=1e-9)
    steps = [math.ceil(len(rows) / config.train.batch_size) for rows in (fold.train, development.train)]
    assert steps[1] > steps[0]  # more clips per epoch: the same epoch fraction is a later step
    assert learning_rates(validated) == pytest.approx(schedule(config, steps[0], len(validated)), rel=1e-12)
    assert learning_rates(final_run) == pytest.approx(schedule(config, steps[1], len(final_run)), rel=1e-12)
    # Equal at each epoch up to where the warm-up's rounding to whole steps puts the curve (one fold step).
    step = config.optim.lr * math.pi / (steps[0] * config.train.epochs)
    assert learning_rates(final_run) == pytest.approx(learning_rates(validated), abs=step)


def test_out_of_fold_predictions_of_the_winner(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = search
    export = json.loads((folder / "best_config.json").read_text())
    config = load_config_file(folder / "best_config.json")
    data = prepare_data(config)
    table = pd.read_parquet(folder / "oof_predictions.parquet")
    assert pd.read_csv(folder / "oof_predictions.csv")["path"].tolist() == table["path"].tolist()
    assert len(table) == len(data.splits.development) and table["path"].is_unique
    assert list(table.columns) == ["path", "speaker", "word", "age", "label", "fold", "predicted", "p_abnormal",
                                   "p_normal"]
    probabilities = table[["p_abnormal", "p_normal"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    for index, expected in enumerate(export["validated"]["folds"]):  # each fold's UAR at e* is the export's
        rows = table[table["fold"] == index]
        assert len(rows) == len(data.splits.folds[index].valid)
        uar = balanced_accuracy_score(rows["label"], rows["predicted"])
        assert uar == pytest.approx(expected, abs=1e-9)
    report = json.loads((folder / "report.json").read_text())
    assert report["clips"] == len(table) and report["epoch"] == export["validated"]["epoch"]
    assert sum(entry["clips"] for entry in report["per_word"].values()) == len(table)
    assert report["metrics"]["uar"] == pytest.approx(balanced_accuracy_score(table["label"], table["predicted"]))


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
        "error: --resume continues 'it' with its stored settings (run.json); --data (stored: data.manifest="
        f"{json.loads((folder / 'run.json').read_text())['base']['data']['manifest']}), --epochs (stored: "
        "train.epochs=2) cannot change them: drop it, or start a new search under another --name"]
    other = run_cli("tune.run", *common[:1], "whisper_losses", *common[2:])
    assert other.returncode == 2 and "searches space 'whisper_balancing', not 'whisper_losses'" in other.stderr
