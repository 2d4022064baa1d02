"""A report group that holds one class has no UAR (issue 21, item 7): it used to report that class's recall as its
"uar" ({'uar': 0.875, 'per_class': [24, 0]}); now NaN, flagged in the table, the page and the plot. Bootstrap draws
that lose a class are dropped (and counted) instead of averaging the class that is left."""

from __future__ import annotations

import math

import numpy as np

from core.plots import group_figure
from core.report import classification_report


def clinic() -> dict[str, np.ndarray]:
    """Word 'ball': 24 normal clips (21 right); word 'bed': both classes. Class 1 (abnormal) is in one speaker."""
    targets = np.array([0] * 24 + [0] * 18 + [1] * 2)
    predictions = np.array([0] * 21 + [1] * 3 + [0] * 18 + [0] * 2)  # the two abnormal clips are missed
    words = np.array(["ball"] * 24 + ["bed"] * 20)
    speakers = np.array([i % 9 for i in range(42)] + [9, 9])
    probabilities = np.stack([predictions == 0, predictions == 1], axis=1).astype(float) * 0.8 + 0.1
    return {"targets": targets, "probabilities": probabilities, "words": words, "speakers": speakers}


def test_a_group_of_one_class_has_no_uar_and_is_flagged() -> None:
    c = clinic()
    report = classification_report(c["targets"], c["probabilities"], ["normal", "abnormal"], 1,
                                   {"word": c["words"]}, c["speakers"], seed=0)
    ball = report["per_word"]["ball"]
    assert ball["per_class"] == [24, 0]
    assert math.isnan(ball["uar"]) and math.isnan(ball["ci_low"]) and math.isnan(ball["ci_high"])
    assert ball["flag"] == "one class"
    assert report["per_word"]["bed"]["uar"] == 0.5 and "flag" not in report["per_word"]["bed"]
    figure = group_figure(report["per_word"], "word", "uar", report["metrics"]["uar"])
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any("one class" in text for text in texts), texts


def test_bootstrap_draws_that_lose_a_class_are_dropped_and_counted() -> None:
    """Every draw that keeps speaker 9 (the only abnormal one) has UAR (18/18 + 0/2) / 2 = 0.5; a draw without
    him holds one class: dropped (about 1000 x 0.9^10 = 349 of them), not scored as the normal clips' recall 1.0."""
    c = clinic()
    bed = c["words"] == "bed"
    report = classification_report(c["targets"][bed], c["probabilities"][bed], ["normal", "abnormal"], 1, {},
                                   c["speakers"][bed], seed=0)
    assert report["uar_ci"] == [0.5, 0.5]
    dropped = report["bootstrap"]["dropped"]
    assert 250 < dropped < 450, dropped
