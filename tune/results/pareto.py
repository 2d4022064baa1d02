"""The Pareto front of a multi-objective search (`--objective uar,uar_age_gap`): the trials no other trial beats on
every objective at once. Written as `pareto.csv` (leaderboard columns of the front), `pareto.png` (every trial on
the first two objectives, the front highlighted) and `pareto/<trial>.json`, one best_config.json per front trial,
which `tune.final --config` trains like the winner's.

A trial's objective values are its cross-validated scores (core/scoring.py) all read at the epoch e* that the first
objective's fold-mean curve selects. Trials that errored or have a NaN objective (e.g. no fold with two age bands
scored) are not on the front.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: Ray workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.command_line import plain_json  # noqa: E402
from tune.results.export import trial_export  # noqa: E402
from tune.results.leaderboard import ERROR, to_csv_bytes  # noqa: E402
from tune.results.storage import RunStore  # noqa: E402

if TYPE_CHECKING:  # results take Ray's ResultGrid from the engine; they never import Ray
    from ray.tune import ResultGrid

FOLDER = "pareto"


def non_dominated(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Mask of the rows of `values` [trials, objectives] that no other row dominates (at least as good on every
    objective and better on one). Rows with a NaN are never on the front."""
    signed = values * np.array([1.0 if mode == "max" else -1.0 for mode in modes])  # larger is better everywhere
    finite = np.isfinite(signed).all(axis=1)
    front = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(finite):
        others = signed[finite]
        dominated = np.any(np.all(others >= signed[i], axis=1) & np.any(others > signed[i], axis=1))
        front[i] = not dominated
    return front


def mark_pareto(table: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The leaderboard with a `pareto` column (True for front trials) when the search has several objectives."""
    if len(objectives) < 2 or table.empty:
        return table
    values = np.array(table[[key for key, _ in objectives]], dtype=np.float64)  # a copy: columns = result keys
    values[(table["status"] == ERROR).to_numpy()] = np.nan
    return table.assign(pareto=non_dominated(values, [mode for _, mode in objectives]))


def pareto_plot(table: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> bytes:
    """PNG: every trial on the first two objectives, the front as a line through its trials, labelled by id."""
    (x_key, x_mode), (y_key, y_mode) = objectives[:2]
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=100)
    rest = table[~table["pareto"]]
    front = table[table["pareto"]].sort_values(x_key)
    axes.scatter(rest[x_key], rest[y_key], color="0.6", label="other trials")
    axes.plot(front[x_key], front[y_key], "o-", color="C3", label="Pareto front")
    for _, row in front.iterrows():
        axes.annotate(str(row["trial_id"]), (row[x_key], row[y_key]), textcoords="offset points", xytext=(4, 4),
                      fontsize=7)
    axes.set_xlabel(f"{x_key} ({'higher' if x_mode == 'max' else 'lower'} is better)")
    axes.set_ylabel(f"{y_key} ({'higher' if y_mode == 'max' else 'lower'} is better)")
    axes.set_title("cross-validated scores at each trial's selected epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_pareto(store: RunStore, table: pd.DataFrame, grid: ResultGrid, base: dict[str, Any],
                 objectives: Sequence[tuple[str, str]], metadata: dict[str, Any]) -> list[str]:
    """pareto.csv, pareto.png and pareto/<trial>.json for a leaderboard marked by `mark_pareto`; [] for a single
    objective."""
    if "pareto" not in table.columns:
        return []
    metric = objectives[0][0].removesuffix("_score")
    others = [key.removesuffix("_score") for key, _ in objectives[1:]]
    front = table[table["pareto"]].drop(columns=["pareto"]).reset_index(drop=True)
    front.insert(1, "config", [f"{FOLDER}/{trial}.json" for trial in front["trial_id"]])
    written = [store.write_bytes("pareto.csv", to_csv_bytes(front)),
               store.write_bytes("pareto.png", pareto_plot(table, objectives))]
    for _, row in front.iterrows():
        export = trial_export(row, grid, base, metric, metadata, others)
        text = json.dumps(plain_json(export), indent=2, allow_nan=False) + "\n"
        written.append(store.write_bytes(f"{FOLDER}/{row['trial_id']}.json", text.encode()))
    return written


def describe_front(table: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> str:
    """One line per front trial, for the command line."""
    if "pareto" not in table.columns:
        return ""
    keys = [key for key, _ in objectives]
    lines = [f"Pareto front ({int(table['pareto'].sum())} of {len(table)} trials; "
             + ", ".join(f"{key} {mode}" for key, mode in objectives) + "):"]
    for _, row in table[table["pareto"]].iterrows():
        lines.append(f"  trial {row['trial_id']}  " + "  ".join(f"{key} {row[key]:.4f}" for key in keys)
                     + f"  -> {FOLDER}/{row['trial_id']}.json")
    return "\n".join(lines)
