"""The figures: real PNG files (signature, readable by PIL) that show the numbers they are given: the search's
optimisation history in sampling order with the best so far, and the final report's per-group UAR with the
report's own confidence intervals (core/report.py), not recomputed ones."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from PIL import Image

from core.plots import final_plots, group_figure
from core.report import classification_report, regression_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        return image.size


def clinic_predictions(seed: int = 0, clips: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, clips)
    probabilities = np.clip(0.5 + 0.3 * (targets == 0) - 0.15 + rng.normal(0, 0.2, clips), 0.01, 0.99)
    return {"targets": targets, "probabilities": np.stack([probabilities, 1 - probabilities], axis=1),
            "words": rng.choice(["ball", "bed", "rabbit"], clips),
            "ages": rng.choice(["[4, 5)", "[5, 6)"], clips), "speakers": rng.integers(0, 12, clips)}


def test_final_plots_of_a_classification_report() -> None:
    clips = clinic_predictions()
    report = classification_report(clips["targets"], clips["probabilities"], ["abnormal", "normal"], 0,
                                   {"word": clips["words"], "age_band": clips["ages"]}, clips["speakers"], seed=0)
    plots = final_plots(report, clips["targets"], clips["probabilities"])
    assert sorted(plots) == ["confusion_matrix.png", "roc_curve.png", "uar_per_age_band.png", "uar_per_word.png"]
    for data in plots.values():
        assert_png(data)


def test_final_plots_of_a_regression_report() -> None:
    rng = np.random.default_rng(1)
    targets = rng.uniform(3, 8, 60)
    predictions = targets + rng.normal(0, 0.5, 60)
    report = regression_report(targets, predictions, {"word": rng.choice(["ball", "bed"], 60)})
    plots = final_plots(report, targets, predictions[:, None], "age")
    assert sorted(plots) == ["mae_per_word.png", "predicted_vs_true.png"]
    for data in plots.values():
        assert_png(data)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_no_roc_curve_for_a_test_set_of_one_class() -> None:
    clips = clinic_predictions()
    targets = np.ones_like(clips["targets"])
    report = classification_report(targets, clips["probabilities"], ["abnormal", "normal"], 0, {}, None, seed=0)
    assert sorted(final_plots(report, targets, clips["probabilities"])) == ["confusion_matrix.png"]


def test_group_figure_draws_the_reports_intervals() -> None:
    clips = clinic_predictions(seed=3)
    report = classification_report(clips["targets"], clips["probabilities"], ["abnormal", "normal"], 0,
                                   {"word": clips["words"]}, clips["speakers"], seed=0)
    table = report["per_word"]
    figure = group_figure(table, "word", "uar", report["metrics"]["uar"])
    axes = figure.axes[0]
    assert [bar.get_width() for bar in axes.patches] == pytest.approx([table[w]["uar"] for w in table])
    errors = next(c for c in axes.collections if isinstance(c, LineCollection))
    spans = np.array([(segment[0][0], segment[1][0]) for segment in errors.get_segments()])
    np.testing.assert_allclose(spans, [(table[w]["ci_low"], table[w]["ci_high"]) for w in table], rtol=1e-12)
    assert [label.get_text() for label in axes.get_yticklabels()] == list(table)


def leaderboard() -> tuple[pd.DataFrame, dict[str, int]]:
    """A leaderboard (ranked, as tune/results/leaderboard.py writes it) and the trials' sampling order."""
    table = pd.DataFrame({
        "rank": [1, 2, 3, 4, 5], "trial_id": ["c3", "a1", "e5", "b2", "d4"],
        "status": ["finished", "finished", "stopped (ASHA)", "stopped (ASHA)", "error"],
        "uar_score": [0.71, 0.66, 0.58, 0.52, np.nan]})
    return table, {"a1": 2, "b2": 1, "c3": 4, "d4": 3, "e5": 5}


def test_history_is_in_sampling_order_with_the_best_so_far() -> None:
    from tune.results.plots import history_figure, history_table

    table, order = leaderboard()
    history = history_table(table, order, "uar", "max")
    assert history["trial_id"].tolist() == ["b2", "a1", "d4", "c3", "e5"]
    scores = history["score"].tolist()
    assert scores[:2] + scores[3:] == [0.52, 0.66, 0.71, 0.58] and np.isnan(scores[2])  # d4 errored: no score
    assert history["best_so_far"].tolist() == [0.52, 0.66, 0.66, 0.71, 0.71]
    minimised = history_table(table, order, "uar", "min")
    assert minimised["best_so_far"].tolist() == [0.52, 0.52, 0.52, 0.52, 0.52]
    axes = history_figure(history, "uar").axes[0]
    points = np.concatenate([c.get_offsets() for c in axes.collections if isinstance(c, PathCollection)])
    drawn = {int(x): y for x, y in points if np.isfinite(y)}
    assert drawn == {1: 0.52, 2: 0.66, 4: 0.71, 5: 0.58}
    best = axes.get_lines()[0]
    assert best.get_xdata().tolist() == [1, 2, 3, 4, 5]
    assert best.get_ydata().tolist() == [0.52, 0.66, 0.66, 0.71, 0.71]


def test_curves_of_the_top_trials() -> None:
    from tune.results.plots import curves_figure

    table, _ = leaderboard()
    table["score_epoch"] = [3, 2, 1, 1, 0]
    curves = {trial: pd.DataFrame({"epoch": [1, 2, 3], "mean": [0.5, 0.6, 0.7], "std": [0.01, 0.02, 0.03]})
              for trial in ("a1", "c3", "d4")}
    axes = curves_figure(table, curves, "uar", top=5).axes[0]
    assert [line.get_label().split()[1] for line in axes.get_lines()] == ["c3", "a1"]  # ranked; d4 errored
    assert curves_figure(table.iloc[4:], curves, "uar") is None


def test_importances_are_skipped_when_every_trial_scores_the_same() -> None:
    """A search whose trials all score alike (a tiny model at chance) made fANOVA raise "zero total variance", and
    that crashed the end of the search; the figure is now left out with the reason."""
    import optuna

    from tune.results.plots import SearchPlots, study_plots

    study = optuna.create_study(direction="maximize")
    for lr, decay in [(1e-3, 0.1), (2e-3, 0.01), (3e-3, 0.001)]:
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": lr, "optim.weight_decay": decay}, value=0.5,
            distributions={"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                           "optim.weight_decay": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}))
    plots = SearchPlots()
    study_plots(study, plots)
    assert "param_importances.png" not in plots.files
    assert plots.skipped["param_importances.png"] == ("all 3 completed trials have the same score; nothing for a "
                                                     "parameter to explain")
    assert_png(plots.files["slice.png"])
