"""Bias metrics (core/bias.py): per-age-band UAR, its gap and per-speaker UAR, recomputed here independently with
sklearn's balanced_accuracy_score; in every fold's epoch results; and read at the first objective's e*."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from core.bias import age_band_metrics, band_key, bias_metrics, speaker_metrics
from core.config import Config
from core.data.dataset import AudioData
from core.metrics import METRICS
from core.train import train_fold
from tune.results.aggregate import aggregate, bias_scores, scores_at


def uar(targets: np.ndarray, predictions: np.ndarray) -> float:
    with warnings.catch_warnings():  # a group with one class: sklearn warns, and scores the classes present
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(targets, predictions))


def test_band_keys() -> None:
    assert [band_key(b) for b in ("[3, 4)", "<4", ">=6", "[3.5, 4)")] == [
        "uar_age_band_3_4", "uar_age_band_lt4", "uar_age_band_ge6", "uar_age_band_3p5_4"]


def test_age_bands_scored_left_out_and_the_gap() -> None:
    rng = np.random.default_rng(0)
    ages = np.repeat([3.2, 4.5, 5.1, 6.9, np.nan], [40, 40, 40, 6, 5])
    targets = rng.integers(0, 2, len(ages))
    targets[120:126] = [0, 0, 0, 0, 0, 1]  # age 6: one clip of class 1, below min_clips
    predictions = np.where(rng.random(len(ages)) < 0.7, targets, 1 - targets)
    metrics = age_band_metrics(targets, predictions, ages, [], min_clips=3)
    expected = {f"uar_age_band_{y}_{y + 1}": uar(targets[(ages >= y) & (ages < y + 1)],
                                                 predictions[(ages >= y) & (ages < y + 1)]) for y in (3, 4, 5)}
    assert {k: v for k, v in metrics.items() if k.startswith("uar_age_band_")} == pytest.approx(expected)
    assert metrics["uar_age_gap"] == pytest.approx(max(expected.values()) - min(expected.values()))
    assert metrics["uar_age_worst"] == pytest.approx(min(expected.values()))
    assert (metrics["uar_age_bands"], metrics["uar_age_bands_left_out"]) == (3, 1)  # the NaN ages: no band
    # edges: two bands, <5 and >=5 (which now has enough clips of each class)
    wide = age_band_metrics(targets, predictions, ages, [5.0], min_clips=3)
    low, high = ages < 5, ages >= 5
    assert wide["uar_age_band_lt5"] == pytest.approx(uar(targets[low], predictions[low]))
    assert wide["uar_age_band_ge5"] == pytest.approx(uar(targets[high], predictions[high]))
    # fewer than two bands scored: the gap is NaN, not 0
    one = age_band_metrics(targets, predictions, ages, [], min_clips=30)
    assert math.isnan(one["uar_age_gap"]) and one["uar_age_bands"] == 0 and one["uar_age_bands_left_out"] == 4


def test_speaker_worst_decile() -> None:
    rng = np.random.default_rng(1)
    speakers = np.repeat([f"s{i}" for i in range(23)], rng.integers(2, 12, 23))
    targets = rng.integers(0, 2, len(speakers))
    predictions = np.where(rng.random(len(speakers)) < 0.6, targets, 1 - targets)
    metrics = speaker_metrics(targets, predictions, speakers, min_clips=4)
    kept = [s for s in np.unique(speakers) if np.sum(speakers == s) >= 4]
    per_speaker = [uar(targets[speakers == s], predictions[speakers == s]) for s in kept]
    assert metrics["uar_speakers"] == len(kept) < 23
    assert metrics["uar_speaker_p10"] == pytest.approx(np.percentile(per_speaker, 10))
    assert metrics["uar_speaker_min"] == pytest.approx(min(per_speaker))


def test_bias_metrics_need_the_columns() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]] * 5)
    targets = np.array([0, 1] * 5)
    assert bias_metrics(targets, probabilities, np.full(10, np.nan), None, [], 1) == {}
    assert "uar_speaker_p10" in bias_metrics(targets, probabilities, np.full(10, np.nan), np.array(["a"] * 10), [], 1)
    # one band scored: no gap (left out, not NaN), the counts say why
    one = bias_metrics(targets, probabilities, np.full(10, 4.2), None, [], 1)
    assert one == {"uar_age_band_4_5": 1.0, "uar_age_worst": 1.0, "uar_age_bands": 1.0, "uar_age_bands_left_out": 0.0}


def test_registered_with_their_direction() -> None:
    assert {n: METRICS.get(n).mode for n in ("uar_age_gap", "uar_age_worst", "uar_speaker_p10")} == {
        "uar_age_gap": "min", "uar_age_worst": "max", "uar_speaker_p10": "max"}


def test_every_epoch_of_a_fold_has_the_bias_metrics(toy_config: Config, toy_data: AudioData) -> None:
    """train_fold's validation metrics, recomputed from the epoch's own predictions on the fold's valid rows."""
    config = toy_config.with_overrides({"train.epochs": 2, "data.bias_min_clips": 1})
    fold = toy_data.splits.folds[0]
    results = list(train_fold(config, toy_data, fold))
    assert len(results) == 2
    targets, ages, speakers = toy_data.targets[fold.valid], toy_data.ages[fold.valid], toy_data.speakers[fold.valid]
    for result in results:
        predictions = result.outputs.argmax(axis=1)
        years = np.floor(ages).astype(int)
        bands = {y: uar(targets[years == y], predictions[years == y]) for y in np.unique(years)
                 if len(np.unique(targets[years == y])) == len(np.unique(targets))}
        assert len(bands) >= 2
        for year, value in bands.items():
            assert result.metrics[f"uar_age_band_{year}_{year + 1}"] == pytest.approx(value)
        assert result.metrics["uar_age_gap"] == pytest.approx(max(bands.values()) - min(bands.values()))
        per_speaker = [uar(targets[speakers == s], predictions[speakers == s]) for s in np.unique(speakers)]
        assert result.metrics["uar_speaker_p10"] == pytest.approx(np.percentile(per_speaker, 10))
        assert result.metrics["uar_speakers"] == len(per_speaker)


@dataclass
class Epoch:
    fold: int
    train_loss: float
    metrics: dict[str, float]
    best_epoch: int


def test_other_metrics_read_at_the_first_objectives_epoch() -> None:
    """uar peaks (fold mean) at epoch 2: the gap's score is its fold mean at epoch 2, not its own best epoch; a fold
    that stopped after epoch 1 keeps its last value."""
    histories = {0: [{"uar": 0.6, "uar_age_gap": 0.10}, {"uar": 0.8, "uar_age_gap": 0.30},
                     {"uar": 0.7, "uar_age_gap": 0.05}],
                 1: [{"uar": 0.7, "uar_age_gap": 0.20}],
                 2: [{"uar": 0.5, "uar_age_gap": math.nan}, {"uar": 0.9, "uar_age_gap": 0.40},
                     {"uar": 0.5, "uar_age_gap": 0.00}]}
    row = scores_at(histories, 2, skip="uar")
    assert "uar_score" not in row
    assert row["uar_age_gap_score"] == pytest.approx((0.30 + 0.20 + 0.40) / 3)
    assert [row[f"uar_age_gap_score_fold{i}"] for i in range(3)] == pytest.approx([0.30, 0.20, 0.40])
    assert row["uar_age_gap_score_std"] == pytest.approx(np.std([0.30, 0.20, 0.40], ddof=1))
    assert math.isnan(scores_at(histories, 0, skip="uar")["uar_age_gap_score"])  # no epoch selected yet
    assert bias_scores(row) == {"uar_age_gap_score": pytest.approx(0.3)}
    # the per-epoch row has the fold mean of each fold's gap (NaN folds left out)
    epoch = aggregate([Epoch(i, 0.1, h[0], 1) for i, h in histories.items()], 1)
    assert epoch["uar_age_gap_mean"] == pytest.approx(0.15) and math.isnan(epoch["uar_age_gap_fold2"])
