"""A config's cross-validated score, defined once for the search, `core.train` and the export.

From each fold's validation metric after every epoch: the fold-mean curve (a fold that stopped early keeps its
last value in the epochs after), then one epoch e* for all folds, as `xgboost.cv` / `lightgbm.cv` choose rounds
from the mean curve: `train.select=best` reads the curve at its best epoch, `last` at its last one. The score is
the curve at e*, with each fold's value there and their sample standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CrossValidatedScore:
    select: str  # train.select the epoch was chosen by
    curve: list[float]  # fold mean after each epoch (index 0: epoch 1)
    epoch: int  # e*, 1-based; 0 while no epoch has a finite fold mean
    score: float  # the curve at e*
    folds: list[float]  # each fold's value at e*
    std: float  # sample std (ddof=1) of the finite `folds`; NaN with fewer than two

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fold_matrix(per_fold: Sequence[Sequence[float]]) -> np.ndarray:
    """[folds, epochs] of the values; a fold with fewer epochs (it stopped early) repeats its last value."""
    epochs = max((len(values) for values in per_fold), default=0)
    matrix = np.full((len(per_fold), epochs), math.nan)
    for row, values in enumerate(per_fold):
        if len(values):
            matrix[row, :len(values)] = values
            matrix[row, len(values):] = values[-1]
    return matrix


def finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def sample_std(values: Sequence[float] | np.ndarray) -> float:
    """Standard deviation with ddof=1 of the finite values (NaN with fewer than two): the folds are a sample."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return float(finite.std(ddof=1)) if len(finite) >= 2 else math.nan


def cross_validated_score(per_fold: Sequence[Sequence[float]], mode: str, select: str) -> CrossValidatedScore:
    """The score of one config from `per_fold[i][e - 1]`, fold i's metric after epoch e. `mode`: max or min (the
    metric's direction); `select`: best (the curve's best epoch, the first of ties) or last."""
    matrix = fold_matrix(per_fold)
    curve = np.array([finite_mean(matrix[:, e]) for e in range(matrix.shape[1])])
    finite = np.isfinite(curve)
    if not finite.any():
        return CrossValidatedScore(select, curve.tolist(), 0, math.nan, [math.nan] * len(per_fold), math.nan)
    if select == "last":
        index = len(curve) - 1
    else:
        ranked = np.where(finite, curve if mode == "max" else -curve, -math.inf)
        index = int(np.argmax(ranked))  # the first of equal maxima
    folds = matrix[:, index]
    return CrossValidatedScore(select, curve.tolist(), index + 1, float(curve[index]), folds.tolist(),
                               sample_std(folds))
