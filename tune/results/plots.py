"""The search's figures (PNG, `plots/` in the run folder): the optimisation history (each trial's score in the
order the trials were sampled, with the best so far), parameter importances, slice plots of the searched
parameters, and the fold-mean learning curves (± the folds' sample std) of the top trials.

The importances and slices are Optuna's matplotlib figures of an in-memory study built here from the ResultGrid
(the trials' sampled parameters, re-run through the space so each keeps its distribution, and their scores), so
they do not depend on how `optuna.db` is written.
"""

from __future__ import annotations

import io
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: Optuna's figures go through pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own PNG reader and writer)

from core.plots import any_script, png_bytes  # noqa: E402
from search_spaces.pinning import PinnedSpace  # noqa: E402
from tune.results.leaderboard import ASHA, ERROR  # noqa: E402
from tune.results.leaderboard import sampling_order as tag_number  # noqa: E402

if TYPE_CHECKING:  # results take Ray's ResultGrid from the engine; they never import Ray
    from ray.tune import ResultGrid

PLOTS = "plots"
SKIPPED = "skipped.json"  # {file: why it was not drawn}
TOP_CURVES = 5  # learning curves of this many best trials
# The slice plot: one panel per parameter, at most this many side by side (the page shows a figure at most 34em wide;
# Optuna's own layout is one 3.2-inch column per parameter in a single row, unreadable beyond three or four).
SLICE_COLUMNS = 2
SLICE_PANEL_INCHES = (3.6, 2.8)


@dataclass
class SearchPlots:
    files: dict[str, bytes] = field(default_factory=dict)  # file name in plots/ -> PNG
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why it was not drawn
    history: pd.DataFrame | None = None  # what the optimisation history shows (see `history_table`)


def sampling_order(grid: ResultGrid, trials: Sequence[Any] = ()) -> dict[str, int]:
    """{trial id: 1-based number in the order the searcher sampled the trials}. Tune's trial ids are random hex;
    the order is the counter Tune puts at the front of each of its `trials`' experiment tag (`3_augment...`), kept
    across --resume; the engine hands the Trial objects in (tune/engine/private_api.py `grid_trials`). Without them,
    the grid's own order (Tune's trial list, also creation order) stands."""
    order = {trial.trial_id: tag_number(trial) for trial in trials}
    order = {trial_id: number for trial_id, number in order.items() if number != sys.maxsize}
    ids = [_trial_id(result) for result in grid]
    if len(order) == len(ids) and set(order) == set(ids):
        return order
    return {trial_id: number for number, trial_id in enumerate(ids, start=1)}


def history_table(table: pd.DataFrame, order: dict[str, int], metric: str, mode: str) -> pd.DataFrame:
    """number (sampling order), trial_id, status, score and best_so_far (of the scores up to it; errored trials
    have no score and keep the best so far), one row per leaderboard trial, in sampling order."""
    rows = table[["trial_id", "status", f"{metric}_score"]].rename(columns={f"{metric}_score": "score"}).copy()
    rows["number"] = [order[trial_id] for trial_id in rows["trial_id"]]
    rows = rows.sort_values("number").reset_index(drop=True)
    finite = rows["score"].where(np.isfinite(rows["score"].astype(float)))
    rows["best_so_far"] = (finite.cummax() if mode == "max" else finite.cummin()).ffill()
    return rows[["number", "trial_id", "status", "score", "best_so_far"]]


def history_figure(history: pd.DataFrame, metric: str) -> Figure:
    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.subplots()
    for status, marker, colour in ((None, "o", "tab:blue"), (ASHA, "v", "tab:gray")):
        shown = history[history["status"] == status] if status else history[~history["status"].isin([ASHA])]
        label = "stopped by ASHA (score of the epochs it ran)" if status else "trial"
        axes.scatter(shown["number"], shown["score"], marker=marker, color=colour, label=label, zorder=3)
    axes.step(history["number"], history["best_so_far"], where="post", color="tab:red", label="best so far")
    failed = history[history["status"] == ERROR]
    for number in failed["number"]:
        axes.axvline(number, color="tab:red", alpha=0.2, linewidth=4)
    axes.set_xlabel("trial (in sampling order)")
    axes.set_ylabel(f"cross-validated {metric} (score)")
    axes.set_title("optimisation history" + (f" ({len(failed)} errored: shaded)" if len(failed) else ""))
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure


def trial_histories(grid: ResultGrid, metric: str) -> dict[str, pd.DataFrame]:
    """{trial id: epoch, mean, std}: each trial's per-epoch fold mean and sample std of `metric`."""
    histories = {}
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or f"{metric}_mean" not in frame:
            continue
        curve = frame[["epoch", f"{metric}_mean", f"{metric}_std"]].dropna(subset=["epoch"])
        curve.columns = ["epoch", "mean", "std"]
        histories[_trial_id(result)] = curve.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return histories


def curves_figure(table: pd.DataFrame, histories: dict[str, pd.DataFrame], metric: str,
                  top: int = TOP_CURVES) -> Figure | None:
    """The fold-mean curve (± std band) of the `top` best-ranked trials that have one, e* marked."""
    ranked = [row for _, row in table.iterrows() if row["status"] != ERROR and row["trial_id"] in histories][:top]
    if not ranked:
        return None
    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.subplots()
    for row in ranked:
        curve = histories[row["trial_id"]]
        line, = axes.plot(curve["epoch"], curve["mean"], marker=".",
                          label=f"#{row['rank']} {row['trial_id']} ({row[f'{metric}_score']:.3f})")
        std = curve["std"].fillna(0)
        axes.fill_between(curve["epoch"], curve["mean"] - std, curve["mean"] + std, color=line.get_color(),
                          alpha=0.15)
        chosen = curve[curve["epoch"] == row["score_epoch"]]
        axes.scatter(chosen["epoch"], chosen["mean"], marker="*", s=90, color=line.get_color(), zorder=3)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"valid {metric}, fold mean ± std")
    axes.set_title(f"learning curves of the top {len(ranked)} trials (★: the score's epoch e*)")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure


def search_study(grid: ResultGrid, order: dict[str, int], space: str, metric: str, mode: str,
                 pinned: dict[str, Any] | None = None, demo: bool = False) -> optuna.Study:
    """An in-memory study of the trials in sampling order: sampled parameters (pins are constants, left out) with
    their distributions, and the score; errored trials are FAIL."""
    pinned = pinned or {}
    define = PinnedSpace(space, pinned, demo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for result in sorted(grid, key=lambda r: order[_trial_id(r)]):
        study.enqueue_trial({k: v for k, v in result.config.items() if k not in pinned}, skip_if_exists=False)
        trial = study.ask()
        define(trial)
        value = (result.metrics or {}).get(f"{metric}_score", math.nan)
        if result.error or (result.metrics or {}).get("error") or not math.isfinite(value):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, float(value))
    return study


def optuna_figure(draw: Any, study: optuna.Study, **options: Any) -> bytes:
    """PNG of one of optuna.visualization.matplotlib's figures (they draw with pyplot: closed after)."""
    with warnings.catch_warnings(), plt.rc_context():  # Optuna sets a pyplot style: kept to this figure
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        drawn = draw(study, **options)
    figure = np.asarray(drawn).flat[0].figure
    try:
        return png_bytes(figure)
    finally:
        plt.close(figure)


def slice_grid(study: optuna.Study, params: list[str]) -> bytes:
    """Optuna's slice plot of each parameter, one small figure each, tiled into a grid of `SLICE_COLUMNS` columns
    (white where a row is short)."""
    from optuna.visualization import matplotlib as optuna_plots

    def panel(name: str) -> np.ndarray:
        png = optuna_figure(optuna_plots.plot_slice, study, params=[name], target_name="score")
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    with plt.rc_context({"figure.figsize": SLICE_PANEL_INCHES}):
        panels = [panel(name) for name in params]
    height, width = max(panel.shape[0] for panel in panels), max(panel.shape[1] for panel in panels)
    rows = -(-len(panels) // SLICE_COLUMNS)
    grid = np.full((rows * height, min(len(panels), SLICE_COLUMNS) * width, 3), 255, dtype=np.uint8)
    for index, panel in enumerate(panels):
        top, left = (index // SLICE_COLUMNS) * height, (index % SLICE_COLUMNS) * width
        grid[top:top + panel.shape[0], left:left + panel.shape[1]] = panel
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    return buffer.getvalue()


def study_plots(study: optuna.Study, plots: SearchPlots) -> None:
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    searched = sorted({key for trial in complete for key in trial.params})
    # A parameter every trial drew the same value of has no slice to show (and Optuna's would warn of identical
    # x limits into the search's output).
    varied = [key for key in searched if len({repr(t.params[key]) for t in complete if key in t.params}) > 1]
    if not varied:
        plots.skipped["slice.png"] = ("no completed trial has searched parameters" if not searched else
                                      "every searched parameter has one value in all completed trials")
    else:
        plots.files["slice.png"] = slice_grid(study, varied)
    common = optuna.search_space.intersection_search_space(complete) if complete else {}
    if len(complete) < 2:
        plots.skipped["param_importances.png"] = f"{len(complete)} completed trial(s); importances need 2 or more"
    elif len(common) < 2:
        plots.skipped["param_importances.png"] = (f"{len(common)} parameter(s) common to every completed trial; "
                                                  "importances compare 2 or more")
    elif len({trial.value for trial in complete}) < 2:  # fANOVA has no variance to split (it raises)
        plots.skipped["param_importances.png"] = (f"all {len(complete)} completed trials have the same score; "
                                                  "nothing for a parameter to explain")
    else:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # the same trials draw the same figure
        plots.files["param_importances.png"] = optuna_figure(optuna_plots.plot_param_importances, study,
                                                             evaluator=evaluator)


def search_plots(table: pd.DataFrame, grid: ResultGrid, space: str, metric: str, mode: str,
                 pinned: dict[str, Any] | None = None, demo: bool = False, trials: Sequence[Any] = ()) -> SearchPlots:
    """Every search figure of a finished (or stopped) search; `table` is its leaderboard (results/leaderboard.py).
    Labels in any script (a class or word in Hangul) draw with their glyphs (core.plots.any_script)."""
    with any_script():
        return _search_plots(table, grid, space, metric, mode, pinned, demo, trials)


def _search_plots(table: pd.DataFrame, grid: ResultGrid, space: str, metric: str, mode: str,
                  pinned: dict[str, Any] | None, demo: bool, trials: Sequence[Any]) -> SearchPlots:
    plots = SearchPlots()
    if table.empty:
        plots.skipped["optimisation_history.png"] = "no trials"
        return plots
    order = sampling_order(grid, trials)
    plots.history = history_table(table, order, metric, mode)
    plots.files["optimisation_history.png"] = png_bytes(history_figure(plots.history, metric))
    curves = curves_figure(table, trial_histories(grid, metric), metric)
    if curves is None:
        plots.skipped["learning_curves.png"] = "no trial reported an epoch"
    else:
        plots.files["learning_curves.png"] = png_bytes(curves)
    study_plots(search_study(grid, order, space, metric, mode, pinned, demo), plots)
    return plots


def write_search_plots(store: Any, table: pd.DataFrame, grid: ResultGrid, space: str, metric: str, mode: str,
                       pinned: dict[str, Any] | None = None, demo: bool = False,
                       trials: Sequence[Any] = ()) -> list[str]:
    """Draw the search's figures into `plots/` of the run folder (a tune/results/storage.py RunStore); returns what was
    written, and says what was not drawn and why (also in plots/skipped.json, which the HTML report shows)."""
    plots = search_plots(table, grid, space, metric, mode, pinned, demo, trials)
    store.fs.create_dir(f"{store.path}/{PLOTS}", recursive=True)  # a file:// URI's files need their folder
    written = [store.write_bytes(f"{PLOTS}/{name}", data) for name, data in plots.files.items()]
    written.append(store.write_bytes(f"{PLOTS}/{SKIPPED}", (json.dumps(plots.skipped, indent=2) + "\n").encode()))
    for name, why in plots.skipped.items():
        print(f"note: no {PLOTS}/{name}: {why}")
    return written


def _trial_id(result: Any) -> str:
    return (result.metrics or {}).get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1]
