"""Training batch samplers: `word_pairs` uses every training row exactly once per epoch, is seeded by the rng it
is given, reads only labels and word ids, and puts same-word pairs of both labels in its batches."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from core.checks import check_config
from core.config import Config
from core.data.dataset import AudioData
from core.data.samplers import SAMPLERS


def epochs(data: AudioData, rows: np.ndarray, batch_size: int, seed: int, count: int,
           name: str = "word_pairs") -> list[list[np.ndarray]]:
    """`count` consecutive epochs drawn from one generator, as train_fold does."""
    rng = np.random.default_rng(seed)
    return [list(SAMPLERS.get(name)(data, rows, batch_size, rng)) for _ in range(count)]


def labels_only(data: AudioData, targets: np.ndarray, word_ids: np.ndarray, words: int) -> AudioData:
    """The real toy AudioData with hand-made labels and words and no waveforms: a sampler must need nothing else."""
    return dataclasses.replace(data, targets=targets, word_ids=word_ids, words=[f"w{i}" for i in range(words)],
                               waveforms=None, manifest=None)


def same_word_pairs(data: AudioData, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Per row of the batch: has it a same-word, same-label partner? And how many same-word pairs of two labels?"""
    words, labels = data.word_ids[rows], data.targets[rows]
    same_word = (words[:, None] == words[None, :]) & ~np.eye(len(rows), dtype=bool)
    same_label = labels[:, None] == labels[None, :]
    return (same_word & same_label).any(axis=1), int((same_word & ~same_label).sum() // 2)


@pytest.mark.parametrize("batch_size", [1, 3, 5, 8, 16, 100])
def test_every_training_row_exactly_once_per_epoch(toy_data: AudioData, batch_size: int) -> None:
    for fold in toy_data.splits.folds:
        for batches in epochs(toy_data, fold.train, batch_size, seed=fold.index, count=3):
            used = np.concatenate(batches)
            assert len(used) == len(fold.train)
            np.testing.assert_array_equal(np.sort(used), np.sort(fold.train))
            # Same batch count and sizes as `random`: the scheduler's step count relies on it.
            assert len(batches) == math.ceil(len(fold.train) / batch_size)
            assert all(len(rows) == batch_size for rows in batches[:-1])


def test_seeded_by_the_given_generator(toy_data: AudioData) -> None:
    rows = toy_data.splits.folds[0].train
    first, again, other = (epochs(toy_data, rows, 4, seed, 2) for seed in (7, 7, 8))
    flat = [[b.tolist() for b in epoch] for epoch in first]
    assert flat == [[b.tolist() for b in epoch] for epoch in again]
    assert flat != [[b.tolist() for b in epoch] for epoch in other]
    assert flat[0] != flat[1]  # a new order every epoch


def test_batches_hold_same_word_pairs_of_both_labels(toy_data: AudioData) -> None:
    """12 words x (8 normal + 4 abnormal): with batches of 8, every clip has a same-word, same-label partner in its
    batch, and each word's clips meet clips of the other label (at least 2 quads x 4 pairs per word)."""
    words, per_word = 12, np.array([0] * 8 + [1] * 4)
    data = labels_only(toy_data, np.tile(per_word, words), np.repeat(np.arange(words), len(per_word)), words)
    rows = np.random.default_rng(3).permutation(len(data.targets))
    for seed in range(5):
        for batches in epochs(data, rows, 8, seed, 2):
            partnered = [same_word_pairs(data, batch) for batch in batches]
            assert all(has.all() for has, _ in partnered)
            assert sum(cross for _, cross in partnered) >= words * 2 * 4
    # Without the sampler, random batches of 8 from 12 words leave clips without a partner.
    random_batches = epochs(data, rows, 8, 0, 3, name="random")
    assert not all(same_word_pairs(data, batch)[0].all() for epoch in random_batches for batch in epoch)


def test_a_subset_of_rows_with_leftovers(toy_data: AudioData) -> None:
    """Odd counts per word and label leave rows outside whole quads; they still come exactly once, and only the
    given rows are used."""
    targets = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 2, 2, 0, 1])  # three classes
    word_ids = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 1, 1])
    data = dataclasses.replace(labels_only(toy_data, targets, word_ids, 3), classes=["a", "b", "c"])
    rows = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16])  # rows 5 and 15 are not training rows
    for batches in epochs(data, rows, 4, 11, 4):
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), rows)
        whole = [b for b in batches if len(b) == 4]
        assert same_word_pairs(data, whole[0])[0].any()  # the first batch is a whole quad: it has a pair


def test_regression_targets_group_by_word_only(toy_data: AudioData) -> None:
    targets = np.linspace(0.0, 1.0, 10, dtype=np.float32)
    data = dataclasses.replace(labels_only(toy_data, targets, np.array([0, 1] * 5), 2), classes=[])
    batches = list(SAMPLERS.get("word_pairs")(data, np.arange(10), 4, np.random.default_rng(0)))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert len(set(data.word_ids[batches[0]].tolist())) == 1  # a whole quad of one word


def test_word_pairs_is_a_valid_config_choice() -> None:
    assert "word_pairs" in SAMPLERS
    check_config(Config().with_overrides({"loss.name": "contrastive", "train.sampler": "word_pairs"}))
