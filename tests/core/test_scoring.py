"""core/scoring.py: one definition of a config's cross-validated score, on hand-made fold curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.scoring import cross_validated_score, fold_matrix, sample_std


def test_best_is_the_maximum_of_the_fold_mean_curve_at_one_epoch_for_all_folds() -> None:
    # Each fold's own best epoch differs (3, 1, 2) and their mean (0.8) is no epoch's fold mean.
    curves = [[0.5, 0.6, 0.9], [0.8, 0.5, 0.5], [0.6, 0.9, 0.6]]
    score = cross_validated_score(curves, "max", "best")
    assert score.curve == pytest.approx([0.6333333333, 0.6666666667, 0.6666666667])
    assert score.epoch == 2  # the first of the two equal maxima
    assert score.score == pytest.approx(2 / 3) and score.folds == [0.6, 0.5, 0.9]
    assert score.std == pytest.approx(np.std([0.6, 0.5, 0.9], ddof=1))


def test_last_reads_the_last_epoch_and_min_mode_picks_the_lowest() -> None:
    curves = [[3.0, 1.0, 2.0], [3.0, 2.0, 2.5]]
    last = cross_validated_score(curves, "min", "last")
    assert (last.epoch, last.score, last.folds) == (3, 2.25, [2.0, 2.5])
    best = cross_validated_score(curves, "min", "best")
    assert (best.epoch, best.score, best.folds) == (2, 1.5, [1.0, 2.0])


def test_a_fold_that_stopped_early_contributes_its_last_value_afterwards() -> None:
    curves = [[0.7, 0.6], [0.5, 0.6, 0.7, 0.8]]  # fold 0 stopped (train.patience) after epoch 2
    assert fold_matrix(curves).tolist() == [[0.7, 0.6, 0.6, 0.6], [0.5, 0.6, 0.7, 0.8]]
    score = cross_validated_score(curves, "max", "best")
    assert score.curve == pytest.approx([0.6, 0.6, 0.65, 0.7])
    assert (score.epoch, score.folds) == (4, [0.6, 0.8]) and score.score == pytest.approx(0.7)


def test_nan_values_are_left_out_of_the_mean_and_an_all_nan_curve_has_no_epoch() -> None:
    score = cross_validated_score([[math.nan, 0.4], [0.6, 0.7]], "max", "best")
    assert score.curve == pytest.approx([0.6, 0.55]) and score.epoch == 1
    assert math.isnan(score.std)  # one finite value at e*: a sample std is undefined
    empty = cross_validated_score([[math.nan], [math.nan]], "max", "best")
    assert empty.epoch == 0 and math.isnan(empty.score) and len(empty.folds) == 2


def test_sample_std_has_ddof_1() -> None:
    assert sample_std([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(sample_std([1.0])) and sample_std([1.0, math.nan, 3.0]) == pytest.approx(math.sqrt(2))
