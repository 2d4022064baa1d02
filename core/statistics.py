"""Per-fold statistics, computed from that fold's training rows only (never the whole set: that would leak
validation labels into the loss)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoldStatistics:
    class_counts: np.ndarray  # [classes]
    word_label_counts: np.ndarray  # [words, classes]

    @classmethod
    def from_rows(cls, targets: np.ndarray, word_ids: np.ndarray, num_classes: int, num_words: int,
                  rows: np.ndarray) -> FoldStatistics:
        counts = np.zeros((num_words, num_classes), dtype=np.int64)
        if num_classes:
            np.add.at(counts, (word_ids[rows], targets[rows].astype(np.int64)), 1)
        return cls(class_counts=counts.sum(axis=0), word_label_counts=counts)

    def label_given_word(self, smoothing: float) -> np.ndarray:
        """P(label | word) with add-`smoothing` counts, shape [words, classes]."""
        counts = self.word_label_counts + smoothing
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.full(counts.shape, 1.0 / counts.shape[1]), where=totals > 0)
