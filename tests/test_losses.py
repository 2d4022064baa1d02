"""Losses: plain CE, and the per-word balancing loss whose weights come from the fold's training rows only."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import Config
from core.data.batches import Batch
from core.data.dataset import AudioData
from core.losses import LOSSES
from core.statistics import FoldStatistics

# A small training table: (word, label) -> count. Word 2 is never said wrong (label 1) in training.
TABLE = {(0, 0): 6, (0, 1): 2, (1, 0): 1, (1, 1): 3, (2, 0): 4, (2, 1): 0}


def batch_of(targets: list[int], words: list[int]) -> Batch:
    n = len(targets)
    return Batch(rows=np.arange(n), waveforms=torch.zeros(n, 8), lengths=torch.full((n,), 8),
                 targets=torch.tensor(targets), word_ids=torch.tensor(words), ages=torch.full((n,), math.nan))


def hand_cross_entropy(logits: np.ndarray, targets: list[int]) -> np.ndarray:
    """-log softmax(logits)[target], per row, in float64."""
    out = []
    for row, target in zip(logits.astype(np.float64), targets, strict=True):
        log_norm = math.log(sum(math.exp(v) for v in row))
        out.append(log_norm - row[target])
    return np.array(out)


def table_rows() -> tuple[np.ndarray, np.ndarray]:
    words, targets = [], []
    for (word, label), count in TABLE.items():
        words += [word] * count
        targets += [label] * count
    return np.array(targets), np.array(words)


def hand_weights(smoothing: Fraction) -> dict[tuple[int, int], float]:
    """1 / P(label | word) with add-k smoothing, scaled so the mean over the training rows is exactly 1."""
    totals = {w: sum(c for (ww, _), c in TABLE.items() if ww == w) for w in range(3)}
    raw = {}
    for (word, label), count in TABLE.items():
        probability = (count + smoothing) / (totals[word] + 2 * smoothing)
        raw[(word, label)] = 1 / probability if probability else Fraction(0)
    mean = sum(raw[key] * count for key, count in TABLE.items()) / sum(TABLE.values())
    return {key: float(value / mean) for key, value in raw.items()}


def test_cross_entropy_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [0.0, 4.0]])
    targets = [0, 1, 0, 1]
    stats = FoldStatistics.from_rows(np.array(targets), np.zeros(4, int), 2, 1, np.arange(4))
    loss = LOSSES.get("ce")(Config(), stats)({"logits": logits}, batch_of(targets, [0] * 4))
    assert loss.item() == pytest.approx(hand_cross_entropy(logits.numpy(), targets).mean(), rel=1e-6)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor(targets)).item())


def test_fold_statistics_count_only_the_given_rows() -> None:
    targets, words = table_rows()
    extra_targets, extra_words = np.array([1, 1, 1]), np.array([2, 2, 2])  # rows outside the training split
    all_targets, all_words = np.concatenate([targets, extra_targets]), np.concatenate([words, extra_words])
    stats = FoldStatistics.from_rows(all_targets, all_words, 2, 3, np.arange(len(targets)))
    for (word, label), count in TABLE.items():
        assert stats.word_label_counts[word, label] == count
    assert stats.class_counts.tolist() == [11, 5]


@pytest.mark.parametrize("smoothing", [Fraction(1), Fraction(1, 2), Fraction(0)])
def test_balancing_loss_matches_hand_computation(smoothing: Fraction) -> None:
    targets, words = table_rows()
    stats = FoldStatistics.from_rows(targets, words, 2, 3, np.arange(len(targets)))
    config = Config().with_overrides({"loss.name": "balancing", "loss.smoothing": float(smoothing)})
    loss_fn = LOSSES.get("balancing")(config, stats)
    expected_weights = hand_weights(smoothing)
    for (word, label), weight in expected_weights.items():
        assert loss_fn.weights[word, label].item() == pytest.approx(weight, rel=1e-6), (word, label)
    # Mean weight over the training rows is 1.
    assert np.mean([expected_weights[(w, t)] for w, t in zip(words, targets, strict=True)]) == pytest.approx(1.0)
    assert float(loss_fn.weights[torch.tensor(words), torch.tensor(targets)].mean()) == pytest.approx(1.0)
    # The loss of a batch is the mean of CE x weight.
    batch_targets, batch_words = [0, 1, 1, 0, 0], [0, 0, 1, 1, 2]
    logits = torch.tensor([[1.0, 0.0], [0.2, -0.3], [-1.0, 2.0], [0.0, 0.0], [3.0, -2.0]])
    ce = hand_cross_entropy(logits.numpy(), batch_targets)
    weights = np.array([expected_weights[(w, t)] for w, t in zip(batch_words, batch_targets, strict=True)])
    loss = loss_fn({"logits": logits}, batch_of(batch_targets, batch_words))
    assert loss.item() == pytest.approx(float(np.mean(ce * weights)), rel=1e-6)
    assert math.isfinite(loss.item())


def test_rare_label_of_a_word_weighs_more() -> None:
    """The point of the loss: an error on a word that is usually said right counts more than a common one."""
    targets, words = table_rows()
    stats = FoldStatistics.from_rows(targets, words, 2, 3, np.arange(len(targets)))
    weights = LOSSES.get("balancing")(Config().with_overrides({"loss.name": "balancing"}), stats).weights
    assert weights[0, 1] > weights[0, 0]  # word 0: label 1 is rarer
    assert weights[1, 0] > weights[1, 1]  # word 1: label 0 is rarer


def fold_weights_by_hand(data: AudioData, rows: np.ndarray, smoothing: float) -> np.ndarray:
    """Balancing weights from the manifest's strings (pandas), independent of FoldStatistics."""
    table = data.manifest.table.iloc[rows]
    counts = pd.crosstab(table["word"], table["label"]).reindex(index=data.words, columns=data.classes,
                                                                fill_value=0).to_numpy(float)
    probability = (counts + smoothing) / (counts + smoothing).sum(axis=1, keepdims=True)
    raw = 1 / probability
    return raw / ((raw * counts).sum() / counts.sum())


def test_balancing_weights_follow_the_training_split(toy_data: AudioData) -> None:
    """Weights are computed per fold from its training rows: different folds, different weights."""
    config = Config().with_overrides({"loss.name": "balancing", "loss.smoothing": 1.0})
    built = []
    for fold in toy_data.splits.folds[:2]:
        stats = FoldStatistics.from_rows(toy_data.targets, toy_data.word_ids, len(toy_data.classes),
                                         len(toy_data.words), fold.train)
        weights = LOSSES.get("balancing")(config, stats).weights.numpy()
        np.testing.assert_allclose(weights, fold_weights_by_hand(toy_data, fold.train, 1.0), rtol=1e-6)
        built.append(weights)
    assert not np.allclose(built[0], built[1])
    everything = fold_weights_by_hand(toy_data, np.arange(len(toy_data.targets)), 1.0)
    assert not np.allclose(built[0], everything)  # not computed from the whole set either
