"""Folds of one config -> one row of numbers: fold mean, sample std and per-fold values of every metric, and the
config's cross-validated score (core/scoring.py) under the keys the searcher, leaderboard and export read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from core.scoring import CrossValidatedScore, finite_mean, fold_matrix, sample_std


class FoldResult(Protocol):
    """What aggregation reads of a fold's epoch (core.train.EpochResult, tune.engine.folds.FoldReport)."""

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


def scores_at(histories: dict[int, list[dict[str, float]]], epoch: int, skip: str) -> dict[str, float]:
    """Every validation metric but `skip` (the one whose curve chose e*) read as a score at the same epoch e* (1-based;
    0: none yet, NaN): `{name}_score` (the fold mean there), `{name}_score_std` and `{name}_score_fold{i}`.
    `histories[i][e - 1]` holds fold i's metrics after epoch e; a fold that stopped early keeps its last values. A
    multi-objective search tells Optuna these for its other objectives, so all of a trial's values come from one
    epoch, the one its first objective selected (core/scoring.py)."""
    folds = sorted(histories)
    names = sorted({name for i in folds for metrics in histories[i] for name in metrics} - {skip})
    row: dict[str, float] = {}
    for name in names:
        matrix = fold_matrix([[metrics.get(name, math.nan) for metrics in histories[i]] for i in folds])
        values = matrix[:, epoch - 1] if 0 < epoch <= matrix.shape[1] else np.full(len(folds), math.nan)
        row[f"{name}_score"] = finite_mean(values)
        row[f"{name}_score_std"] = sample_std(values)
        row.update({f"{name}_score_fold{i}": float(value) for i, value in zip(folds, values, strict=True)})
    return row


BIAS_PREFIXES = ("uar_age", "uar_speaker")  # the keys of core/bias.py


def bias_scores(row: dict[str, float]) -> dict[str, float]:
    """A trial's bias metrics at e* (`uar_age_gap_score`, `uar_age_band_3_4_score`, `uar_speaker_p10_score`, the
    band and speaker counts ...) from its last result: leaderboard columns and the study's user attributes."""
    return {key: float(value) for key, value in sorted(row.items())
            if key.startswith(BIAS_PREFIXES) and key.endswith("_score")}


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
