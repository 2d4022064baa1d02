"""The search's slice plot on the page (issue 21, item 10): one readable panel per searched parameter in a grid of
at most two columns (not one 3.2-inch-wide column per parameter in a single row, shrunk to the page's 34em), and no
matplotlib warning leaking into the search's output, even for a parameter every trial drew the same value of."""

from __future__ import annotations

import io
import warnings

import optuna
from PIL import Image

from tune.results.plots import SLICE_COLUMNS, SearchPlots, study_plots


def study_of_seven_parameters() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        score = trial.suggest_float("optim.lr", 1e-5, 1e-2, log=True) * 10
        for name in ("optim.weight_decay", "optim.warmup_ratio", "model.dropout", "loss.gamma"):
            score += trial.suggest_float(name, 0.0, 0.5)
        trial.suggest_categorical("model.pooling", ["mean", "audio", "max"])
        trial.suggest_categorical("features.conditioning", ["rows"])  # one value in every trial: identical xlims
        study.tell(trial, score)
    return study


def test_slice_plot_is_a_readable_grid_without_warnings() -> None:
    plots = SearchPlots()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study_plots(study_of_seven_parameters(), plots)
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not leaked, leaked
    with Image.open(io.BytesIO(plots.files["slice.png"])) as image:
        width, height = image.size
    # The page shows a figure at most 34em (~544 px) wide: two panels of ~400 px scale by ~0.7, readable; the old
    # single row of 7 panels was ~2,300 px wide (scale ~0.24).
    assert width <= SLICE_COLUMNS * 420, (width, height)
    assert height >= 3 * 250  # six parameters with more than one value: three rows of two panels
