"""Regression: losses, metrics and their search direction, config agreement of head/loss/metric, scoring, the
target-scaled regressor head, learning a numeric target, and the final report."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.toy_audio import make_toy_config

from core.checks import check_config
from core.config import Config
from core.data.batches import Batch, make_batch
from core.data.dataset import AudioData, prepare_data
from core.errors import ConfigError
from core.evaluate import score
from core.losses import LOSSES
from core.metrics import METRICS, regression_metrics
from core.models import MODELS
from core.statistics import FoldStatistics
from core.train import train_fold
from tune.final import test_report as final_report

ConfigFactory = Callable[..., Config]
REGRESSOR = {"data.target": "age", "model.head": "regressor", "loss.name": "mse", "train.metric": "mae"}


@pytest.fixture(scope="module")
def age_data(toy_dataset: Path, toy_cache_dir: Path) -> AudioData:
    return prepare_data(make_toy_config(toy_dataset, toy_cache_dir, **REGRESSOR))


def batch_with(targets: list[float]) -> Batch:
    n = len(targets)
    return Batch(rows=np.arange(n), waveforms=torch.zeros(n, 8), lengths=torch.full((n,), 8),
                 targets=torch.tensor(targets), word_ids=torch.zeros(n, dtype=torch.int64),
                 ages=torch.full((n,), math.nan))


PREDICTIONS = [2.0, 3.5, 7.0, 4.0]
TARGETS = [2.5, 3.0, 4.0, 4.0]  # errors 0.5, 0.5, 3.0, 0.0


def hand_huber(error: float, delta: float) -> float:
    return 0.5 * error ** 2 if abs(error) <= delta else delta * (abs(error) - 0.5 * delta)


@pytest.mark.parametrize(("name", "delta", "expected"), [
    ("mse", 1.0, (0.25 + 0.25 + 9.0 + 0.0) / 4),
    ("l1", 1.0, (0.5 + 0.5 + 3.0 + 0.0) / 4),
    ("huber", 1.0, sum(hand_huber(e, 1.0) for e in (0.5, 0.5, 3.0, 0.0)) / 4),
    ("huber", 0.4, sum(hand_huber(e, 0.4) for e in (0.5, 0.5, 3.0, 0.0)) / 4),
])
def test_regression_losses_by_hand(name: str, delta: float, expected: float) -> None:
    config = Config().with_overrides({**REGRESSOR, "loss.name": name, "loss.huber_delta": delta})
    loss = LOSSES.get(name)(config, FoldStatistics.from_rows(np.zeros(1), np.zeros(1, int), 0, 1, np.arange(1)))
    value = loss({"logits": torch.tensor(PREDICTIONS)[:, None]}, batch_with(TARGETS))
    assert value.item() == pytest.approx(expected)


def test_regression_metrics_by_hand() -> None:
    metrics = regression_metrics(np.array(TARGETS), np.array(PREDICTIONS))
    assert metrics["mae"] == pytest.approx(4.0 / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt(9.5 / 4))
    assert metrics["pearson"] == pytest.approx(statistics.correlation(TARGETS, PREDICTIONS))
    assert math.isnan(regression_metrics(np.array(TARGETS), np.full(4, 3.0))["pearson"])  # constant predictions
    assert regression_metrics(np.array(TARGETS), np.array(TARGETS)) == {"mae": 0.0, "rmse": 0.0, "pearson": 1.0}


def test_regression_metrics_are_registered_with_their_direction() -> None:
    """The search minimises errors and maximises correlation (tune.engine.search reads the mode from METRICS)."""
    assert {n: (METRICS.get(n).mode, METRICS.get(n).task) for n in ("mae", "rmse", "pearson")} == {
        "mae": ("min", "regression"), "rmse": ("min", "regression"), "pearson": ("max", "regression")}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"loss.name": "mse"}, r"loss\.name='mse': model\.head='classifier' needs a classification loss"),
    ({"model.head": "regressor", "train.metric": "mae"}, r"loss\.name='ce': model\.head='regressor' needs one of"),
    ({"model.head": "regressor", "loss.name": "huber"}, r"train\.metric='uar': model\.head='regressor'.*mae"),
    ({"train.metric": "pearson"}, r"train\.metric='pearson': model\.head='classifier'.*uar"),
    ({**REGRESSOR, "loss.name": "huber", "loss.huber_delta": 0.0}, r"loss\.huber_delta=0\.0"),
])
def test_head_loss_and_metric_must_agree(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        check_config(Config().with_overrides(overrides))


def test_score_gives_regression_metrics_for_numeric_targets(age_data: AudioData) -> None:
    assert age_data.regression and age_data.num_outputs == 1
    rows = age_data.splits.folds[0].valid
    ages = pd.read_csv(age_data.manifest.source)["age"].to_numpy()[rows]  # the manifest itself, not AudioData
    predictions = ages + np.linspace(-1, 1, len(rows))
    metrics = score(age_data, rows, predictions[:, None].astype(np.float32))
    errors = [abs(p - t) for p, t in zip(predictions, ages, strict=True)]
    assert metrics["mae"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)
    assert metrics["pearson"] == pytest.approx(statistics.correlation(ages.tolist(), predictions.tolist()), rel=1e-5)


def test_fold_statistics_target_scale_from_training_rows_only() -> None:
    targets = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    stats = FoldStatistics.from_rows(targets, np.zeros(5, int), 0, 1, np.array([0, 1, 2]))
    assert stats.target_mean == pytest.approx(2.0) and stats.target_std == pytest.approx(statistics.pstdev([1, 2, 3]))
    classes = FoldStatistics.from_rows(np.array([0, 1, 1]), np.zeros(3, int), 2, 1, np.arange(3))
    assert math.isnan(classes.target_mean)


def test_regressor_head_predicts_mean_plus_std_times_raw_output(age_data: AudioData,
                                                                toy_config_factory: ConfigFactory) -> None:
    """An untrained regressor predicts the training mean; its raw output counts in training standard deviations."""
    config = toy_config_factory(**REGRESSOR)
    train = age_data.splits.folds[0].train
    ages = pd.read_csv(age_data.manifest.source)["age"].to_numpy()[train]
    stats = FoldStatistics.from_data(age_data, train)
    model = MODELS.get("whisper").build(config, 1, stats).eval()
    featurizer = MODELS.get("whisper").featurizer(config, stats).eval()
    batch = make_batch(age_data, age_data.splits.folds[0].valid[:3], torch.device("cpu"))
    with torch.no_grad():
        model.head.head.weight.zero_()
        model.head.head.bias.fill_(0.0)
        at_zero = model(featurizer(batch), batch)["logits"]
        model.head.head.bias.fill_(2.0)
        at_two = model(featurizer(batch), batch)["logits"]
    assert torch.allclose(at_zero, torch.full((3, 1), ages.mean(), dtype=torch.float32))
    assert torch.allclose(at_two, torch.full((3, 1), ages.mean() + 2 * ages.std(), dtype=torch.float32))


def test_regressor_learns_age(age_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """The toy voices' pitch rises with the speaker number and so does age: 8 epochs of a micro Whisper beat
    predicting the training mean on every fold, and correlate with the truth."""
    config = toy_config_factory(**{**REGRESSOR, "train.epochs": 8, "train.select": "last"})
    for fold in age_data.splits.folds:
        baseline = np.mean(np.abs(age_data.targets[fold.valid] - age_data.targets[fold.train].mean()))
        last = list(train_fold(config, age_data, fold))[-1]
        assert last.metrics["mae"] < 0.75 * baseline, (fold.index, last.metrics, baseline)
        assert last.metrics["pearson"] > 0.6, (fold.index, last.metrics)


def test_final_report_for_regression(age_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """No classes, so no confusion matrix: metrics and per-word MAE on the test rows, by hand."""
    config = toy_config_factory(**REGRESSOR)
    stats = FoldStatistics.from_data(age_data, age_data.splits.development)
    torch.manual_seed(0)
    model = MODELS.get("whisper").build(config, 1, stats)
    featurizer = MODELS.get("whisper").featurizer(config, stats)
    report = final_report(config, age_data, model, featurizer)
    assert "confusion_matrix" not in report and set(report["metrics"]) == {"mae", "rmse", "pearson"}
    table = pd.read_csv(age_data.manifest.source).iloc[age_data.splits.test]
    batch = make_batch(age_data, age_data.splits.test, torch.device("cpu"))  # test rows are sorted
    with torch.no_grad():
        predicted = model.eval()(featurizer.eval()(batch), batch)["logits"][:, 0].numpy()
    table = table.assign(error=np.abs(predicted - table["age"].to_numpy()))
    assert report["test_clips"] == len(table)
    for word, group in table.groupby("word"):
        assert report["per_word"][word]["mae"] == pytest.approx(group["error"].mean(), rel=1e-5)
        assert report["per_word"][word]["clips"] == len(group)


def test_final_cli_trains_reports_and_reloads_a_regressor(tmp_path: Path,
                                                          toy_config_factory: ConfigFactory) -> None:
    """`python -m tune.final` end to end on a regressor: report without classes, and --eval-only on the saved
    model reproduces the test metrics (the checkpoint is rebuilt with its training statistics)."""
    toy_config_factory(**{**REGRESSOR, "train.epochs": 1}).to_json(tmp_path / "config.json")
    out = tmp_path / "final"

    def final(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tune.final", "--config", str(tmp_path / "config.json"),
                               "--out", str(out), *extra], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parents[2])

    trained = final()
    assert trained.returncode == 0, trained.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"mae", "rmse", "pearson"} and "confusion_matrix" not in report
    assert set(report["per_word"]) == {"rabbit", "sun", "cat"}
    assert sorted(path.name for path in (out / "plots").iterdir()) == ["mae_per_age_band.png", "mae_per_word.png",
                                                                  "predicted_vs_true.png"]
    page = (out / "report.html").read_text()  # a config outside a run folder: the model folder's own page
    assert "Final model: held-out test set" in page and f"{report['metrics']['mae']:.4f}" in page
    evaluated = final("--eval-only", "--checkpoint", str(out))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((out / "eval_report.json").read_text())["metrics"] == report["metrics"]
