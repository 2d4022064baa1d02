"""The clinical report: explicit positive class, sensitivity/specificity, AUROC of the positive class, per-group UAR
and speaker-bootstrap intervals equal to a plain re-computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.errors import ConfigError
from core.report import (
    BOOTSTRAP,
    LEVEL,
    age_bands,
    classification_report,
    per_group_uar,
    regression_report,
)
from core.statistics import positive_class


def test_positive_class_is_named_never_guessed_by_id() -> None:
    assert positive_class(["abnormal", "normal"], "") == 0
    assert positive_class(["Normal", "ABNORMAL"], "") == 1
    assert positive_class(["ssd", "typical"], "ssd") == 0
    with pytest.raises(ConfigError, match=r"data\.positive_class is not set and no class is named 'abnormal'"):
        positive_class(["ssd", "typical"], "")
    with pytest.raises(ConfigError, match=r"data\.positive_class='x': not a class"):
        positive_class(["ssd", "typical"], "x")


def example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    speakers = np.repeat(np.arange(12), 10)
    targets = rng.integers(0, 2, len(speakers))
    noisy = np.clip(targets * 0.6 + 0.2 + rng.normal(0, 0.25, len(targets)), 0.01, 0.99)
    probabilities = np.stack([noisy, 1 - noisy], axis=1)  # class 0 ("abnormal") gets `noisy`
    words = np.array(["cat", "dog", "sun", "red"] * 30)
    return targets, probabilities, speakers.astype(str), words


def test_sensitivity_specificity_and_auroc_follow_the_positive_class() -> None:
    targets, probabilities, speakers, words = example()
    report = classification_report(targets, probabilities, ["abnormal", "normal"], 0, {"word": words}, speakers, 0)
    predictions = probabilities.argmax(axis=1)
    assert report["positive_class"] == "abnormal"
    assert report["metrics"]["sensitivity"] == pytest.approx(np.mean(predictions[targets == 0] == 0))
    assert report["metrics"]["specificity"] == pytest.approx(np.mean(predictions[targets == 1] == 1))
    assert report["metrics"]["auroc"] == pytest.approx(roc_auc_score(targets == 0, probabilities[:, 0]))
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == len(targets) and matrix[0, 0] == np.sum((targets == 0) & (predictions == 0))
    flipped = classification_report(targets, probabilities, ["abnormal", "normal"], 1, {}, speakers, 0)["metrics"]
    assert flipped["sensitivity"] == pytest.approx(report["metrics"]["specificity"])


def naive_interval(targets: np.ndarray, predictions: np.ndarray, units: np.ndarray, seed: int) -> list[float]:
    """The same speaker bootstrap, one draw at a time from the same multinomial weights."""
    rng = np.random.default_rng(seed)
    names, unit = np.unique(units, return_inverse=True)
    weights = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=BOOTSTRAP)
    draws = []
    for w in weights:
        rows = np.concatenate([np.repeat(np.flatnonzero(unit == u), w[u]) for u in range(len(names))])
        t, p = targets[rows], predictions[rows]
        draws.append(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))
    tail = (1 - LEVEL) / 2 * 100
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def test_speaker_bootstrap_equals_resampling_clips_of_whole_speakers() -> None:
    targets, probabilities, speakers, words = example()
    report = classification_report(targets, probabilities, ["abnormal", "normal"], 0, {"word": words}, speakers, 7)
    predictions = probabilities.argmax(axis=1)
    assert report["uar_ci"] == pytest.approx(naive_interval(targets, predictions, speakers, 7))
    low, high = report["uar_ci"]
    assert low < report["metrics"]["uar"] < high
    cat = report["per_word"]["cat"]
    mask = words == "cat"
    assert cat["clips"] == 30 and cat["speakers"] == 12
    assert cat["uar"] == pytest.approx(np.mean([np.mean(predictions[mask & (targets == c)] == c) for c in (0, 1)]))
    again = classification_report(targets, probabilities, ["abnormal", "normal"], 0, {"word": words}, speakers, 7)
    assert again == report  # seeded


def test_age_bands_yearly_and_by_edges() -> None:
    ages = np.array([3.2, 3.9, 4.0, 6.5, np.nan])
    assert age_bands(ages, []).tolist() == ["[3, 4)", "[3, 4)", "[4, 5)", "[6, 7)", "unknown"]
    assert age_bands(ages, [4, 6]).tolist() == ["<4", "<4", "[4, 6)", ">=6", "unknown"]


def test_regression_report_per_group() -> None:
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    predictions = np.array([1.5, 2.0, 2.0, 4.0])
    report = regression_report(targets, predictions, {"word": np.array(["a", "a", "b", "b"])})
    assert report["metrics"]["mae"] == pytest.approx(0.375)
    assert report["per_word"]["a"]["mae"] == pytest.approx(0.25) and report["per_word"]["b"]["clips"] == 2


def test_per_group_uar_counts_the_classes_each_group_holds() -> None:
    targets = np.array([0, 1, 0, 1, 1, 1])
    predictions = np.array([0, 1, 1, 1, 0, 1])
    groups = np.array(["sun", "sun", "cat", "cat", "key", "key"])
    table = per_group_uar(targets, predictions, groups, None, 2, np.random.default_rng(0))
    # "key" holds one class only: no UAR (NaN, flagged), without a warning.
    assert {g: (row["uar"], row["clips"], row["per_class"]) for g, row in table.items() if g != "key"} == {
        "cat": (0.5, 2, [1, 1]), "sun": (1.0, 2, [1, 1])}
    assert math.isnan(table["key"]["uar"]) and table["key"]["flag"] == "one class"
    assert (table["key"]["clips"], table["key"]["per_class"]) == (2, [0, 2])
