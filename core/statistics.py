"""Per-fold statistics, computed from that fold's training rows only (never the whole set: that would leak
validation labels into the loss)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.data.dataset import AudioData


@dataclass(frozen=True)
class FoldStatistics:
    class_counts: np.ndarray  # [classes]
    word_label_counts: np.ndarray  # [words, classes]
    age_min: float = math.nan  # age range of the training rows (NaN: no ages), normalises age conditioning
    age_max: float = math.nan
    target_mean: float = math.nan  # regression: mean and std of the training targets (NaN for classification)
    target_std: float = math.nan
    words: tuple[str, ...] = ()  # names by word id (empty when built from bare arrays); the difficulty CSV needs them
    classes: tuple[str, ...] = ()  # names by class id; the positive class is named (data.positive_class)

    @property
    def num_words(self) -> int:
        """Size of the word table (every word of the data, so that word ids of validation rows index it too)."""
        return int(self.word_label_counts.shape[0])

    @classmethod
    def from_rows(cls, targets: np.ndarray, word_ids: np.ndarray, num_classes: int, num_words: int,
                  rows: np.ndarray, ages: np.ndarray | None = None) -> FoldStatistics:
        counts = np.zeros((num_words, num_classes), dtype=np.int64)
        if num_classes:
            np.add.at(counts, (word_ids[rows], targets[rows].astype(np.int64)), 1)
        known = ages[rows][np.isfinite(ages[rows])] if ages is not None else np.zeros(0)
        age_min, age_max = (float(known.min()), float(known.max())) if len(known) else (math.nan, math.nan)
        values = targets[rows].astype(np.float64) if not num_classes and len(rows) else None
        mean, std = (float(values.mean()), float(values.std())) if values is not None else (math.nan, math.nan)
        return cls(class_counts=counts.sum(axis=0), word_label_counts=counts, age_min=age_min, age_max=age_max,
                   target_mean=mean, target_std=std)

    @classmethod
    def from_data(cls, data: AudioData, rows: np.ndarray) -> FoldStatistics:
        """Statistics of `rows` (a fold's training rows) of `data`: the one place that maps data to statistics,
        so training, final training and checkpoint loading see the same numbers."""
        stats = cls.from_rows(data.targets, data.word_ids, len(data.classes), len(data.words), rows, ages=data.ages)
        return replace(stats, words=tuple(data.words), classes=tuple(data.classes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists, floats; NaN as NaN, for `write_json` to turn into null)."""
        return {"class_counts": self.class_counts.tolist(), "word_label_counts": self.word_label_counts.tolist(),
                "age_min": self.age_min, "age_max": self.age_max, "target_mean": self.target_mean,
                "target_std": self.target_std, "words": list(self.words), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FoldStatistics:
        """Inverse of `to_dict`; a null (a NaN written as JSON) reads back as NaN."""
        def number(key: str) -> float:
            value = raw.get(key)
            return math.nan if value is None else float(value)
        classes = tuple(str(name) for name in raw.get("classes", ()))
        words = tuple(str(word) for word in raw.get("words", ()))
        rows = raw["word_label_counts"]  # [words][classes]; a regressor's rows are empty lists
        counts = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(raw["class_counts"]))
        return cls(class_counts=np.asarray(raw["class_counts"], dtype=np.int64), word_label_counts=counts,
                   age_min=number("age_min"), age_max=number("age_max"), target_mean=number("target_mean"),
                   target_std=number("target_std"), words=words, classes=classes)

    def label_given_word(self, smoothing: float) -> np.ndarray:
        """P(label | word) with add-`smoothing` counts, shape [words, classes]."""
        counts = self.word_label_counts + smoothing
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.full(counts.shape, 1.0 / counts.shape[1]), where=totals > 0)

    def positive_class(self, wanted: str) -> int:
        """Id of the positive class (`data.positive_class`, else the class named `abnormal`): see `positive_class`."""
        return positive_class(list(self.classes), wanted)

    def positive_rate(self, positive: int) -> np.ndarray:
        """[words] share of each word's training rows in class `positive`; 0 for a word without training rows,
        which no training row can then use anyway."""
        counts = self.word_label_counts
        totals = counts.sum(axis=1)
        return np.divide(counts[:, positive], totals, out=np.zeros(counts.shape[0]), where=totals > 0)


def positive_class(classes: list[str], wanted: str) -> int:
    """Id of the positive (screen-positive) class: `data.positive_class`, else a class named `abnormal`."""
    if wanted:
        if wanted not in classes:
            raise ConfigError(f"data.positive_class={wanted!r}: not a class of the data ({', '.join(classes)})")
        return classes.index(wanted)
    lowered = [name.lower() for name in classes]
    if "abnormal" in lowered:
        return lowered.index("abnormal")
    raise ConfigError(f"data.positive_class is not set and no class is named 'abnormal' (classes: "
                      f"{', '.join(classes)}): name the positive class, e.g. --set data.positive_class={classes[-1]}")
