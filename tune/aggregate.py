"""Folds of one config -> one row of numbers: fold mean, std and per-fold values of every metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class FoldResult(Protocol):
    """What aggregation reads of a fold's epoch (`core.train.EpochResult` and `tune.folds.FoldReport` have it)."""

    fold: int
    train_loss: float
    metrics: dict[str, float]
    best_epoch: int


def aggregate(results: Sequence[FoldResult], epoch: int) -> dict[str, float]:
    """`{metric}_mean`, `{metric}_std`, `{metric}_fold{i}` for each validation metric, plus training loss and the
    folds' best epochs. Folds that stopped early contribute their last result."""
    row: dict[str, float] = {"epoch": epoch}
    names = sorted({name for result in results for name in result.metrics})
    for name in [*names, "train_loss", "best_epoch"]:
        values = np.array([_value(result, name) for result in results], dtype=np.float64)
        finite = values[np.isfinite(values)]
        row[f"{name}_mean"] = float(finite.mean()) if len(finite) else math.nan
        row[f"{name}_std"] = float(finite.std()) if len(finite) else math.nan
        for result, value in zip(results, values, strict=True):
            row[f"{name}_fold{result.fold}"] = float(value)
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
