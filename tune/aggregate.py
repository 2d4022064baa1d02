"""Folds of one config -> one row of numbers: fold mean, sample std and per-fold values of every metric, and the
config's cross-validated score (core/scoring.py) under the keys the searcher, leaderboard and export read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from core.scoring import CrossValidatedScore, finite_mean, sample_std


class FoldResult(Protocol):
    """What aggregation reads of a fold's epoch (`core.train.EpochResult` and `tune.folds.FoldReport` have it)."""

    fold: int
    train_loss: float
    metrics: dict[str, float]
    best_epoch: int


def aggregate(results: Sequence[FoldResult], epoch: int) -> dict[str, float]:
    """`{metric}_mean`, `{metric}_std` (sample std), `{metric}_fold{i}` for each validation metric at this epoch,
    plus training loss and the folds' own best epochs. Folds that stopped early contribute their last result."""
    row: dict[str, float] = {"epoch": epoch}
    names = sorted({name for result in results for name in result.metrics})
    for name in [*names, "train_loss", "best_epoch"]:
        values = np.array([_value(result, name) for result in results], dtype=np.float64)
        row[f"{name}_mean"] = finite_mean(values)  # the point of the fold-mean curve the score is read from
        row[f"{name}_std"] = sample_std(values)
        for result, value in zip(results, values, strict=True):
            row[f"{name}_fold{result.fold}"] = float(value)
    return row


def score_row(metric: str, folds: Sequence[int], score: CrossValidatedScore) -> dict[str, float]:
    """`{metric}_score` (what Optuna is told and the leaderboard ranks), `score_epoch` (e*), `{metric}_score_std`
    and `{metric}_score_fold{i}` (each fold at e*)."""
    row = {f"{metric}_score": score.score, "score_epoch": float(score.epoch), f"{metric}_score_std": score.std}
    row.update({f"{metric}_score_fold{fold}": value for fold, value in zip(folds, score.folds, strict=True)})
    return row


def _value(result: FoldResult, name: str) -> float:
    if name == "train_loss":
        return result.train_loss
    if name == "best_epoch":
        return float(result.best_epoch)
    return result.metrics.get(name, math.nan)


def fold_values(row: dict[str, float], name: str) -> list[float]:
    """Per-fold values of `name` from an aggregated row, in fold order."""
    keys = sorted((k for k in row if k.startswith(f"{name}_fold")), key=lambda k: int(k.rsplit("fold", 1)[1]))
    return [float(row[k]) for k in keys]
