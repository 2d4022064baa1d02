"""Held-out test set + k (train, valid) folds as index arrays: label-stratified, speaker-grouped, seeded.

Grouping by speaker matters: a random split leaks each speaker's severity into validation and inflates scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from core.errors import DataError


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Splits:
    test: np.ndarray
    folds: list[Fold]

    @property
    def development(self) -> np.ndarray:
        """Everything that is not test: what final training trains on."""
        return np.sort(np.concatenate([self.folds[0].train, self.folds[0].valid]))


def _splitter(n_splits: int, stratify: bool, grouped: bool, shuffle: bool, seed: int):
    state = seed if shuffle else None
    kinds = {(True, True): StratifiedGroupKFold, (True, False): StratifiedKFold,
             (False, True): GroupKFold, (False, False): KFold}
    return kinds[(stratify, grouped)](n_splits=n_splits, shuffle=shuffle, random_state=state)


def _partition(labels: np.ndarray, groups: np.ndarray | None, n_splits: int, stratify: bool, shuffle: bool,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = _splitter(n_splits, stratify, groups is not None, shuffle, seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(labels)), labels, groups)]


def check_groups_per_class(labels: np.ndarray, groups: np.ndarray, needed: int, what: str) -> None:
    """Every class must be spoken by at least `needed` speakers, or some fold would lack it."""
    for label in np.unique(labels):
        speakers = len(np.unique(groups[labels == label]))
        if speakers < needed:
            raise DataError(f"class {str(label)!r} has only {speakers} speaker(s); {what} needs at least {needed} "
                            "(lower data.k_fold, or add speakers)")


def make_splits(labels: np.ndarray, groups: np.ndarray | None, *, k_fold: int, test_size: float,
                valid_size: float, seed: int, shuffle: bool = True, stratify: bool = True) -> Splits:
    """Split rows into test and k folds of the rest. Same arguments -> identical arrays.

    `k_fold == 1` makes a single hold-out fold of `valid_size`. Test is taken as one part of a
    `round(1 / test_size)`-way split, so its size is approximately `test_size`.
    """
    labels = np.asarray(labels)
    test_parts = max(2, round(1 / test_size))
    if groups is not None and stratify:
        check_groups_per_class(labels, groups, max(k_fold, 2) + 1, f"a test split plus data.k_fold={k_fold}")
    rest, test = _partition(labels, groups, test_parts, stratify, shuffle, seed)[0]
    rest_groups = groups[rest] if groups is not None else None
    parts = (_partition(labels[rest], rest_groups, k_fold, stratify, shuffle, seed) if k_fold >= 2 else
             _partition(labels[rest], rest_groups, max(2, round(1 / valid_size)), stratify, shuffle, seed)[:1])
    folds = [Fold(index=i, train=rest[train], valid=rest[valid]) for i, (train, valid) in enumerate(parts)]
    return Splits(test=test, folds=folds)
