"""Validation metrics, checked against hand computations on small examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import METRICS, classification_metrics


def one_hot_probabilities(predictions: list[int], classes: int = 2) -> np.ndarray:
    return np.eye(classes)[predictions] * 0.8 + 0.1  # rows sum to 1 for 2 classes when spread evenly


def test_binary_metrics_by_hand() -> None:
    # 6 class-0 rows (4 right), 2 class-1 rows (1 right).
    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    predictions = [0, 0, 0, 0, 1, 1, 1, 0]
    metrics = classification_metrics(targets, one_hot_probabilities(predictions))
    recall0, recall1 = 4 / 6, 1 / 2
    assert metrics["uar"] == pytest.approx((recall0 + recall1) / 2)  # balanced accuracy
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    precision0, precision1 = 4 / 5, 1 / 3
    f1_0 = 2 * precision0 * recall0 / (precision0 + recall0)
    f1_1 = 2 * precision1 * recall1 / (precision1 + recall1)
    assert metrics["f1"] == pytest.approx((f1_0 + f1_1) / 2)
    assert metrics["uar"] != pytest.approx(metrics["accuracy"])  # imbalance: UAR is not accuracy


def test_auroc_by_pair_counting() -> None:
    """AUROC = P(score of a random positive > score of a random negative), ties counted half."""
    targets = np.array([0, 0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.7, 0.9])
    probabilities = np.stack([1 - scores, scores], axis=1)
    positives, negatives = scores[targets == 1], scores[targets == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    expected = wins / (len(positives) * len(negatives))
    assert classification_metrics(targets, probabilities)["auroc"] == pytest.approx(expected)
    assert expected == pytest.approx((4 + 2.5 + 4) / 12)  # 0.4 ties one negative and loses to 0.7


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_auroc_is_nan_when_a_class_is_absent() -> None:
    metrics = classification_metrics(np.array([1, 1, 1]), np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]))
    assert math.isnan(metrics["auroc"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["uar"] == pytest.approx(2 / 3)  # only the present class's recall counts


def test_three_class_metrics() -> None:
    targets = np.array([0, 0, 1, 1, 2, 2])
    predictions = [0, 1, 1, 1, 2, 0]
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predictions] = 0.8
    metrics = classification_metrics(targets, probabilities)
    assert metrics["uar"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert 0.0 <= metrics["auroc"] <= 1.0 and not math.isnan(metrics["auroc"])


def test_perfect_and_inverted_predictions() -> None:
    targets = np.array([0, 1, 0, 1])
    perfect = classification_metrics(targets, one_hot_probabilities([0, 1, 0, 1]))
    assert perfect == {"uar": 1.0, "f1": 1.0, "accuracy": 1.0, "auroc": 1.0}
    inverted = classification_metrics(targets, one_hot_probabilities([1, 0, 1, 0]))
    assert inverted == {"uar": 0.0, "f1": 0.0, "accuracy": 0.0, "auroc": 0.0}


def test_metric_registry_modes() -> None:
    assert set(METRICS.names()) >= {"uar", "f1", "accuracy", "auroc"}
    assert all(METRICS.get(name).mode == "max" for name in ("uar", "f1", "accuracy", "auroc"))
