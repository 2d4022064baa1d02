"""Held-out test set + k (train, valid) folds as index arrays: label-stratified, speaker-grouped, seeded.

Grouping by speaker matters: a random split leaks each speaker's severity into validation and inflates scores.
Pre-split manifests (`data.train_file`, `data.valid_file`, `data.test_file`) fix some parts; whatever part is not
given is split from the training file the same way.
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

# Where a row of a pre-split data set came from (see `make_presplit`).
TRAIN, VALID, TEST = 0, 1, 2


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


def _hold_out(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, share: float, stratify: bool,
              shuffle: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out) of `rows`: the held-out part is one part of a `round(1 / share)`-way split, so its size is
    approximately `share` (exactly so when 1 / share is a whole number and speakers are even)."""
    parts = max(2, round(1 / share))
    rest, held = _partition(labels[rows], groups[rows] if groups is not None else None, parts, stratify, shuffle,
                            seed)[0]
    return rows[rest], rows[held]


def _folds(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, k_fold: int, valid_size: float,
           stratify: bool, shuffle: bool, seed: int) -> list[Fold]:
    """k folds of `rows` (each row validated once), or one hold-out fold of `valid_size` when k_fold == 1."""
    if k_fold == 1:
        train, valid = _hold_out(rows, labels, groups, valid_size, stratify, shuffle, seed)
        return [Fold(index=0, train=train, valid=valid)]
    parts = _partition(labels[rows], groups[rows] if groups is not None else None, k_fold, stratify, shuffle, seed)
    return [Fold(index=i, train=rows[train], valid=rows[valid]) for i, (train, valid) in enumerate(parts)]


def make_splits(labels: np.ndarray, groups: np.ndarray | None, *, k_fold: int, test_size: float,
                valid_size: float, seed: int, shuffle: bool = True, stratify: bool = True) -> Splits:
    """Split rows into test and k folds of the rest. Same arguments -> identical arrays.

    `k_fold == 1` makes a single hold-out fold of `valid_size`. Test is taken as one part of a
    `round(1 / test_size)`-way split, so its size is approximately `test_size`. `shuffle=False` splits in row order
    (then `seed` does not matter).
    """
    labels = np.asarray(labels)
    if groups is not None and stratify:
        check_groups_per_class(labels, groups, max(k_fold, 2) + 1, f"a test split plus data.k_fold={k_fold}")
    rest, test = _hold_out(np.arange(len(labels)), labels, groups, test_size, stratify, shuffle, seed)
    return Splits(test=test, folds=_folds(rest, labels, groups, k_fold, valid_size, stratify, shuffle, seed))


def make_presplit(labels: np.ndarray, groups: np.ndarray | None, origin: np.ndarray, *, k_fold: int,
                  test_size: float, valid_size: float, seed: int, shuffle: bool = True,
                  stratify: bool = True) -> Splits:
    """Splits of a data set concatenated from pre-split files; `origin[i]` is TRAIN, VALID or TEST.

    Given test rows are the test set, else test is split from the training rows as in `make_splits`. Given valid
    rows make the one fold (train = all remaining training rows), else the remaining training rows are split into
    k folds (or one hold-out fold of `valid_size` when k_fold == 1).
    """
    labels, origin = np.asarray(labels), np.asarray(origin)
    train = np.flatnonzero(origin == TRAIN)
    valid, test = np.flatnonzero(origin == VALID), np.flatnonzero(origin == TEST)
    if groups is not None and stratify:
        needed = (1 if len(valid) else max(k_fold, 2)) + (0 if len(test) else 1)
        what = " plus ".join(part for part, missing in (("a test split", not len(test)),
                                                        (f"data.k_fold={k_fold}", not len(valid))) if missing)
        if what:
            check_groups_per_class(labels[train], groups[train], needed, f"splitting the training file into {what}")
    if not len(test):
        train, test = _hold_out(train, labels, groups, test_size, stratify, shuffle, seed)
    folds = ([Fold(index=0, train=train, valid=valid)] if len(valid) else
             _folds(train, labels, groups, k_fold, valid_size, stratify, shuffle, seed))
    return Splits(test=test, folds=folds)
