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

    @property
    def valid_share(self) -> float:
        """Share of the fold's rows that are validation rows (`data.valid_size` as obtained, when k_fold == 1)."""
        rows = len(self.train) + len(self.valid)
        return len(self.valid) / rows if rows else 0.0


@dataclass(frozen=True)
class Splits:
    test: np.ndarray
    folds: list[Fold]

    @property
    def development(self) -> np.ndarray:
        """Everything that is not test: what final training trains on."""
        return np.sort(np.concatenate([self.folds[0].train, self.folds[0].valid]))

    @property
    def test_share(self) -> float:
        """Share of all rows held out for test: `data.test_size` as whole speakers allowed it."""
        rows = len(self.test) + (len(self.development) if self.folds else 0)
        return len(self.test) / rows if rows else 0.0


def _splitter(n_splits: int, stratify: bool, grouped: bool, shuffle: bool, seed: int):
    state = seed if shuffle else None
    kinds = {(True, True): StratifiedGroupKFold, (True, False): StratifiedKFold,
             (False, True): GroupKFold, (False, False): KFold}
    return kinds[(stratify, grouped)](n_splits=n_splits, shuffle=shuffle, random_state=state)


def _partition(labels: np.ndarray, groups: np.ndarray | None, n_splits: int, stratify: bool, shuffle: bool,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = _splitter(n_splits, stratify, groups is not None, shuffle, seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(labels)), labels, groups)]


def check_groups_per_class(labels: np.ndarray, groups: np.ndarray, needed: int, what: str, unit: str = "speaker",
                           lower: str = "data.k_fold") -> None:
    """Every class must be spoken by at least `needed` speakers (clips, without a speaker column), or some fold would
    lack it."""
    for label in np.unique(labels):
        speakers = len(np.unique(groups[labels == label]))
        if speakers < needed:
            raise DataError(f"class {str(label)!r} has only {speakers} {unit}(s); {what} needs at least {needed} "
                            f"(lower {lower}, or add {unit}s)")


def _units(groups: np.ndarray | None, rows: int) -> tuple[np.ndarray, str]:
    """What is split whole: speakers, or single clips without a speaker column."""
    return (groups, "speaker") if groups is not None else (np.arange(rows), "clip")


def _check_folds_possible(labels: np.ndarray, units: np.ndarray, unit: str, k_fold: int, stratify: bool,
                          after: str) -> None:
    """What is left for the folds (after the test split) must give every fold every class: k units of each (a
    hold-out fold: 2); unstratified, k units in all. sklearn's splitters raise or leave a fold without a class."""
    needed = max(k_fold, 2)
    what = f"data.k_fold={k_fold} after {after}"
    if stratify:
        check_groups_per_class(labels, units, needed, what, unit, "data.test_size or data.k_fold")
    elif len(np.unique(units)) < needed:
        raise DataError(f"only {len(np.unique(units))} {unit}(s) are left for {what}, which needs at least {needed} "
                        f"(lower data.test_size or data.k_fold, or add {unit}s)")


def _hold_out(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, share: float, stratify: bool,
              shuffle: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out) of `rows`: whole speakers (single rows without a speaker column) are held out until the
    held-out part is as close to `share` of the rows as whole speakers allow.

    Stratified: speakers are taken label by label (a speaker's label: its most frequent one), at least one and at
    most all but one per label, so both parts keep every label; each label's target carries the rounding left by
    the labels before it, so the total misses `share` by at most about half a speaker's clips. Speakers are taken
    in a seeded random order (`shuffle`), else in the order they first appear. A k-fold split cannot do this: its
    held-out part is 1/k of the rows, and `round(1 / share)` folds held out 50 % for every share from 0.4 up.
    """
    units = groups[rows] if groups is not None else np.arange(len(rows))
    _, first, unit_of_row = np.unique(units, return_index=True, return_inverse=True)
    unit_order = np.argsort(first, kind="stable")  # units in the order they first appear
    if shuffle:
        unit_order = np.random.default_rng(seed).permutation(unit_order)
    sizes = np.bincount(unit_of_row, minlength=len(first))
    label_of_unit = np.zeros(len(first), dtype=np.int64)
    if stratify:
        label_codes = np.unique(labels[rows], return_inverse=True)[1]
        label_counts = np.zeros((len(first), int(label_codes.max()) + 1), dtype=np.int64)
        np.add.at(label_counts, (unit_of_row, label_codes), 1)
        label_of_unit = label_counts.argmax(axis=1)  # the unit's most frequent label (ties: the first)
    held_units: list[np.ndarray] = []
    seen_rows = held_rows = 0
    for code in np.unique(label_of_unit):
        ranked = unit_order[label_of_unit[unit_order] == code]
        seen_rows += int(sizes[ranked].sum())
        taken = np.concatenate([[0], np.cumsum(sizes[ranked])])  # rows held out when the first m are taken
        low, high = (1, len(ranked) - 1) if len(ranked) >= 2 else (0, len(ranked))
        target = share * seen_rows - held_rows
        m = low + int(np.argmin(np.abs(taken[low:high + 1] - target)))
        held_units.append(ranked[:m])
        held_rows += int(taken[m])
    held = np.isin(unit_of_row, np.concatenate(held_units))
    return rows[~held], rows[held]


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

    `k_fold == 1` makes a single hold-out fold of `valid_size`. Test is `test_size` of the rows, as closely as whole
    speakers allow (`Splits.test_share` says what it came to). `shuffle=False` splits in row order (then `seed` does
    not matter).
    """
    labels = np.asarray(labels)
    units, unit = _units(groups, len(labels))
    if stratify:
        check_groups_per_class(labels, units, max(k_fold, 2) + 1, f"a test split plus data.k_fold={k_fold}", unit)
    rest, test = _hold_out(np.arange(len(labels)), labels, groups, test_size, stratify, shuffle, seed)
    _check_folds_possible(labels[rest], units[rest], unit, k_fold, stratify, f"the test split (data.test_size="
                                                                             f"{test_size:g})")
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
    units, unit = _units(groups, len(labels))
    if stratify:
        needed = (1 if len(valid) else max(k_fold, 2)) + (0 if len(test) else 1)
        what = " plus ".join(part for part, missing in (("a test split", not len(test)),
                                                        (f"data.k_fold={k_fold}", not len(valid))) if missing)
        if what:
            check_groups_per_class(labels[train], units[train], needed, f"splitting the training file into {what}",
                                   unit)
    split_test = not len(test)
    if split_test:
        train, test = _hold_out(train, labels, groups, test_size, stratify, shuffle, seed)
    if not len(valid):
        _check_folds_possible(labels[train], units[train], unit, k_fold, stratify,
                              f"the test split of the training file (data.test_size={test_size:g})" if split_test
                              else "data.test_file (the training file is split into the folds)")
    folds = ([Fold(index=0, train=train, valid=valid)] if len(valid) else
             _folds(train, labels, groups, k_fold, valid_size, stratify, shuffle, seed))
    return Splits(test=test, folds=folds)
