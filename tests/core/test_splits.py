"""Splits: speaker-grouped, label-stratified, seeded; folds partition the development rows."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.dataset import AudioData
from core.data.splits import Splits, make_splits
from core.errors import DataError


def clinic_like(speakers: int = 30, disordered: int = 10, words: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Speakers whose clips all share one label (severity is per speaker): stratification has to work for it."""
    groups = np.repeat([f"s{i:02d}" for i in range(speakers)], words)
    labels = np.where(np.repeat(np.arange(speakers) < disordered, words), "abnormal", "normal")
    return labels, groups


def assert_speaker_disjoint(splits: Splits, groups: np.ndarray) -> None:
    test_speakers = set(groups[splits.test])
    for fold in splits.folds:
        train, valid = set(groups[fold.train]), set(groups[fold.valid])
        assert not train & valid, f"fold {fold.index}: speakers in train and valid: {train & valid}"
        assert not test_speakers & (train | valid), f"fold {fold.index}: test speakers leak"


def assert_partition(splits: Splits, n: int) -> None:
    """Test + development = all rows, once; valid parts partition development; train = development - valid."""
    development = np.setdiff1d(np.arange(n), splits.test)
    assert len(np.intersect1d(splits.test, development)) == 0
    np.testing.assert_array_equal(splits.development, development)
    valids = np.concatenate([f.valid for f in splits.folds])
    np.testing.assert_array_equal(np.sort(valids), development)  # each development row validated exactly once
    for fold in splits.folds:
        np.testing.assert_array_equal(np.sort(np.concatenate([fold.train, fold.valid])), development)
        assert len(np.intersect1d(fold.train, fold.valid)) == 0


def test_toy_splits_group_speakers_and_partition(toy_data: AudioData) -> None:
    splits, groups = toy_data.splits, toy_data.speakers
    assert groups is not None and len(splits.folds) == 3
    assert_speaker_disjoint(splits, groups)
    assert_partition(splits, len(toy_data.targets))
    for fold in splits.folds:
        assert set(toy_data.targets[fold.valid]) == {0, 1}
        assert set(toy_data.targets[fold.train]) == {0, 1}
    assert set(toy_data.targets[splits.test]) == {0, 1}


def test_stratified_when_speakers_have_one_label() -> None:
    labels, groups = clinic_like()
    splits = make_splits(labels, groups, k_fold=5, test_size=0.2, valid_size=0.2, seed=3)
    assert_speaker_disjoint(splits, groups)
    assert_partition(splits, len(labels))
    overall = np.mean(labels == "abnormal")  # 1/3
    for part in [splits.test] + [f.valid for f in splits.folds]:
        share = np.mean(labels[part] == "abnormal")
        assert set(labels[part]) == {"abnormal", "normal"}
        assert abs(share - overall) <= 0.15, f"abnormal share {share:.2f} vs {overall:.2f}"


def test_unstratified_split_only_groups() -> None:
    """`stratify=False` (regression targets) still never splits a speaker."""
    labels, groups = clinic_like()
    splits = make_splits(np.arange(len(labels)).astype(float), groups, k_fold=4, test_size=0.25, valid_size=0.2,
                         seed=0, stratify=False)
    assert_speaker_disjoint(splits, groups)
    assert_partition(splits, len(labels))


def test_without_speakers_rows_are_stratified() -> None:
    labels = np.array(["a"] * 20 + ["b"] * 40)
    splits = make_splits(labels, None, k_fold=4, test_size=0.2, valid_size=0.2, seed=0)
    assert_partition(splits, len(labels))
    assert np.sum(labels[splits.test] == "a") == 4 and len(splits.test) == 12
    for fold in splits.folds:
        assert np.sum(labels[fold.valid] == "a") in (4, 5)


def test_same_seed_same_arrays_different_seed_different() -> None:
    labels, groups = clinic_like()
    kwargs = {"k_fold": 5, "test_size": 0.2, "valid_size": 0.2}
    first = make_splits(labels, groups, seed=7, **kwargs)
    again = make_splits(labels.copy(), groups.copy(), seed=7, **kwargs)
    other = make_splits(labels, groups, seed=8, **kwargs)
    np.testing.assert_array_equal(first.test, again.test)
    for a, b in zip(first.folds, again.folds, strict=True):
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.valid, b.valid)
    differs = not np.array_equal(first.test, other.test) or any(
        not np.array_equal(a.valid, b.valid) for a, b in zip(first.folds, other.folds, strict=True))
    assert differs


def test_no_shuffle_is_deterministic_and_ignores_seed() -> None:
    labels, groups = clinic_like()
    kwargs = {"k_fold": 3, "test_size": 0.2, "valid_size": 0.2, "shuffle": False}
    a = make_splits(labels, groups, seed=1, **kwargs)
    b = make_splits(labels, groups, seed=99, **kwargs)
    np.testing.assert_array_equal(a.test, b.test)
    for x, y in zip(a.folds, b.folds, strict=True):
        np.testing.assert_array_equal(x.valid, y.valid)
    assert_speaker_disjoint(a, groups)
    assert_partition(a, len(labels))


def test_single_holdout_fold() -> None:
    """`k_fold == 1`: one (train, valid) fold of about `valid_size` of the development rows."""
    labels, groups = clinic_like(speakers=40, disordered=12)
    splits = make_splits(labels, groups, k_fold=1, test_size=0.2, valid_size=0.25, seed=0)
    assert len(splits.folds) == 1
    fold = splits.folds[0]
    assert_speaker_disjoint(splits, groups)
    np.testing.assert_array_equal(np.sort(np.concatenate([fold.train, fold.valid])), splits.development)
    assert abs(len(fold.valid) / len(splits.development) - 0.25) < 0.1


def test_class_with_too_few_speakers() -> None:
    labels, groups = clinic_like(speakers=20, disordered=3)  # 3 speakers with "abnormal"; 5 folds + test need 6
    with pytest.raises(DataError, match=r"class 'abnormal' has only 3 speaker\(s\).*at least 6"):
        make_splits(labels, groups, k_fold=5, test_size=0.2, valid_size=0.2, seed=0)
    splits = make_splits(labels, groups, k_fold=2, test_size=0.2, valid_size=0.2, seed=0)  # 3 is enough for 2
    assert len(splits.folds) == 2
