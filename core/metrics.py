"""Validation metrics. UAR (unweighted average recall = balanced accuracy) is primary: the classes are
imbalanced and a screening tool must recognise both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from core.registry import CLASSIFICATION, REGRESSION, Registry


@dataclass(frozen=True)
class MetricSpec:
    mode: str  # "max" or "min": which direction is better
    task: str  # CLASSIFICATION or REGRESSION: the head it scores


METRICS: Registry[MetricSpec] = Registry("metric")
for _name in ("uar", "f1", "accuracy", "auroc"):
    METRICS.register(_name)(MetricSpec("max", CLASSIFICATION))
for _name, _mode in (("mae", "min"), ("rmse", "min"), ("pearson", "max")):
    METRICS.register(_name)(MetricSpec(_mode, REGRESSION))
# Bias metrics (core/bias.py), classification only: searchable as objectives (--objective uar,uar_age_gap).
for _name, _mode in (("uar_age_gap", "min"), ("uar_age_worst", "max"), ("uar_speaker_p10", "max")):
    METRICS.register(_name)(MetricSpec(_mode, CLASSIFICATION))


def classification_metrics(targets: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """UAR, macro-F1, accuracy and AUROC (one-vs-rest macro; NaN when a class is absent from `targets`)."""
    predictions = probabilities.argmax(axis=1)
    labels = np.arange(probabilities.shape[1])
    return {
        "uar": float(balanced_accuracy_score(targets, predictions)),
        "f1": float(f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(targets, predictions)),
        "auroc": _auroc(targets, probabilities),
    }


def _auroc(targets: np.ndarray, probabilities: np.ndarray) -> float:
    if len(np.unique(targets)) < probabilities.shape[1]:
        return float("nan")
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(targets, probabilities[:, 1]))
    return float(roc_auc_score(targets, probabilities, multi_class="ovr", average="macro"))


def recall_average(targets: np.ndarray, predictions: np.ndarray) -> float:
    """UAR over the classes present in `targets` (no warning when a group holds one class only)."""
    return float(np.mean([np.mean(predictions[targets == c] == c) for c in np.unique(targets)]))


def regression_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and Pearson r (NaN when targets or predictions are constant: correlation is undefined then)."""
    error = predictions.astype(np.float64) - targets.astype(np.float64)
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "pearson": _pearson(targets.astype(np.float64), predictions.astype(np.float64))}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    scale = np.sqrt(np.sum(dx ** 2) * np.sum(dy ** 2))
    return float(np.sum(dx * dy) / scale) if scale > 0 else float("nan")
