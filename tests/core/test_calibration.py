"""Temperature scaling, calibration scores, the operating point and its speaker-bootstrap report (core/calibration.py,
core/report.py) on synthetic predictions whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss

from core.calibration import (
    OperatingRule,
    apply_temperature,
    calibration_scores,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    parse_operating_point,
    rates,
)
from core.errors import UserError
from core.report import operating_point_report


def overconfident(n: int = 4000, true_temperature: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z / T0), reported as softmax(z): a model T0 times too sure of itself."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 2))
    truth = np.exp(logits / true_temperature)
    truth /= truth.sum(axis=1, keepdims=True)
    labels = (rng.random(n) < truth[:, 1]).astype(int)
    said = np.exp(logits)
    return said / said.sum(axis=1, keepdims=True), labels


def test_temperature_recovers_how_overconfident_the_model_is() -> None:
    probabilities, labels = overconfident()
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    calibrated = apply_temperature(probabilities, temperature)
    assert (calibrated.argmax(axis=1) == probabilities.argmax(axis=1)).all()  # decisions at argmax unchanged
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-9)
    before, after = calibration_scores(probabilities, labels), calibration_scores(calibrated, labels)
    assert after["log_loss"] < before["log_loss"] and after["ece"] < before["ece"] / 2
    assert after["brier"] < before["brier"]
    assert after["log_loss"] == pytest.approx(log_loss(labels, calibrated))


def test_a_calibrated_model_keeps_temperature_one() -> None:
    probabilities, labels = overconfident(true_temperature=1.0, seed=1)
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, abs=0.1)
    assert expected_calibration_error(probabilities, labels) < 0.03
    assert apply_temperature(probabilities, 1.0) is probabilities


def test_ece_is_the_weighted_gap_per_bin() -> None:
    # 10 clips all said 0.95 sure, 6 right: one bin, gap |0.95 - 0.6|
    probabilities = np.tile([0.05, 0.95], (10, 1))
    labels = np.array([1] * 6 + [0] * 4)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.35)


@pytest.mark.parametrize("wanted", [0.8, 0.9, 0.95])
def test_sensitivity_rule_reaches_the_sensitivity_within_one_clip(wanted: float) -> None:
    probabilities, labels = overconfident(n=301, seed=2)
    is_positive = labels == 1
    threshold = choose_threshold(is_positive, probabilities[:, 1], OperatingRule("sensitivity", wanted))
    caught = int((probabilities[is_positive, 1] >= threshold).sum())
    assert caught >= math.ceil(wanted * is_positive.sum() - 1e-9) and caught - wanted * is_positive.sum() <= 1
    got = rates(is_positive, probabilities[:, 1], threshold)
    # the most specific such threshold: the next higher one loses the sensitivity
    higher = np.sort(np.unique(probabilities[:, 1]))
    higher = higher[higher > threshold]
    if len(higher):
        assert rates(is_positive, probabilities[:, 1], higher[0])["sensitivity"] < wanted <= got["sensitivity"]


def test_specificity_and_youden_rules() -> None:
    probabilities, labels = overconfident(n=500, seed=3)
    is_positive = labels == 1
    cut = choose_threshold(is_positive, probabilities[:, 1], OperatingRule("specificity", 0.9))
    assert rates(is_positive, probabilities[:, 1], cut)["specificity"] >= 0.9
    youden = choose_threshold(is_positive, probabilities[:, 1], OperatingRule("youden"))
    j = {t: sum(rates(is_positive, probabilities[:, 1], t).values()) for t in np.unique(probabilities[:, 1])}
    assert sum(rates(is_positive, probabilities[:, 1], youden).values()) == pytest.approx(max(j.values()))
    assert choose_threshold(is_positive, probabilities[:, 1], OperatingRule("fixed", 0.5)) == 0.5


def test_operating_point_flag() -> None:
    assert parse_operating_point("youden") == OperatingRule("youden")
    assert parse_operating_point("sensitivity=0.90") == OperatingRule("sensitivity", 0.9)
    assert parse_operating_point("specificity = 0.8") == OperatingRule("specificity", 0.8)
    assert parse_operating_point("0.5") == OperatingRule("fixed", 0.5)
    for bad in ("sensitivity", "sensitivity=1.5", "recall=0.9", "2", "x"):
        with pytest.raises(UserError, match="--operating-point"):
            parse_operating_point(bad)


def test_operating_point_report_counts_and_speaker_intervals() -> None:
    rng = np.random.default_rng(4)
    speakers = np.repeat(np.arange(20), 10)
    is_positive = rng.random(200) < 0.4
    probability = np.clip(is_positive * 0.3 + rng.random(200) * 0.7, 0, 1)
    block = operating_point_report(is_positive, probability, 0.5, speakers, np.random.default_rng(0))
    said = probability >= 0.5
    tp, fn = (is_positive & said).sum(), (is_positive & ~said).sum()
    fp, tn = (~is_positive & said).sum(), (~is_positive & ~said).sum()
    assert block["sensitivity"] == pytest.approx(tp / (tp + fn)) and block["npv"] == pytest.approx(tn / (tn + fn))
    assert block["specificity"] == pytest.approx(tn / (tn + fp)) and block["ppv"] == pytest.approx(tp / (tp + fp))
    assert block["uar"] == pytest.approx((block["sensitivity"] + block["specificity"]) / 2)
    for name in ("sensitivity", "specificity", "ppv", "npv", "uar"):
        low, high = block[f"{name}_ci"]
        assert low <= block[name] <= high and high - low > 0
    assert block["counts"] == {"true_positive": tp, "false_negative": fn, "false_positive": fp, "true_negative": tn}
