"""The leaderboard: one row per trial, best score first: `{metric}_score` (core/scoring.py: the fold-mean curve at
e*, `score_epoch`), `{metric}_std` (sample std of the folds at e*), `{metric}_folds` (each fold at e*), the epochs
it ran, each fold's own best epoch (for information: not the score), its status, the other objectives' scores and
the bias metrics at the same e* (`{name}_score`, core/bias.py), and its parameters."""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from tune.results.aggregate import bias_scores, fold_values
from tune.results.constraints import Constraint, feasible

if TYPE_CHECKING:  # results take Ray's ResultGrid from the engine; they never import Ray
    from ray.tune import ResultGrid


def trial_rows(grid: ResultGrid, metric: str, epochs: int, others: Sequence[str] = (),
               constraints: Sequence[Constraint] = ()) -> list[dict[str, Any]]:
    """One row per trial; `others`: the metrics of further objectives, whose scores (and std) get columns; with
    `constraints` (tune.run --constraint), `feasible`: whether the trial meets them all (an errored one does not)."""
    rows = []
    for result in grid:
        last = result.metrics or {}
        epoch = int(last.get("epoch", 0) or 0)
        folds = fold_values(last, f"{metric}_score")
        row: dict[str, Any] = {
            "trial_id": last.get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1],
            "status": trial_status(result.error, last, epochs),
            f"{metric}_score": last.get(f"{metric}_score", math.nan),
            f"{metric}_std": last.get(f"{metric}_score_std", math.nan),
            f"{metric}_folds": " ".join(f"{v:.4f}" for v in folds),
            "score_epoch": int(last.get("score_epoch", 0) or 0),
            "epochs": epoch,
            "best_epochs": " ".join(str(int(v)) for v in fold_values(last, "best_epoch")),
            "error": _error_text(result.error) or str(last.get("error") or ""),
        }
        if constraints:
            row["feasible"] = row["status"] != ERROR and feasible(last, list(constraints))
        for name in others:
            row[f"{name}_score"] = last.get(f"{name}_score", math.nan)
            row[f"{name}_score_std"] = last.get(f"{name}_score_std", math.nan)
        row.update({key: value for key, value in bias_scores(last).items() if key not in row})
        row.update({key: value for key, value in sorted(result.config.items())})
        rows.append(row)
    return rows


def sampling_order(trial: Any) -> int:
    """Tune's trial counter of a `ray.tune.experiment.Trial`: its search generator tags the trials it samples
    `1_...`, `2_...` in that order (trial ids are random hex)."""
    head = (trial.experiment_tag or "").split("_", 1)[0]
    return int(head) if head.isdigit() else sys.maxsize


FINISHED, ASHA, PATIENCE, ERROR = "finished", "stopped (ASHA)", "early-stopped (patience)", "error"


def trial_status(error: BaseException | None, last: dict[str, Any], epochs: int) -> str:
    """finished (ran `epochs`), early-stopped (patience) (every fold stopped itself), stopped (ASHA), or error."""
    # `error` in the metrics: the trainable ended a diverged config itself (no Tune retries for it)
    if error is not None or last.get("error"):
        return ERROR
    if int(last.get("epoch", 0) or 0) >= epochs:
        return FINISHED
    folds = len([key for key in last if key.startswith("train_loss_fold")])
    if folds and int(last.get("folds_stopped", 0) or 0) >= folds:
        return PATIENCE
    return ASHA


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


def build_leaderboard(grid: ResultGrid, metric: str, mode: str, epochs: int, others: Sequence[str] = (),
                      constraints: Sequence[Constraint] = ()) -> pd.DataFrame:
    """Every trial, ranked by the first objective (`metric`); `others`: further objectives, `constraints`: the
    search's (see `trial_rows`)."""
    table = pd.DataFrame(trial_rows(grid, metric, epochs, others, constraints))
    if table.empty:
        return table
    table = table.sort_values(f"{metric}_score", ascending=mode == "min", na_position="last", kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def to_parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def format_leaderboard(table: pd.DataFrame, metric: str, top: int = 10, others: Sequence[str] = ()) -> str:
    """A compact text table: rank, trial, status, score, folds, further objectives and the searched parameters."""
    if table.empty:
        return "(no trials)"
    scores = [f"{metric}_score", f"{metric}_std", *(f"{name}_score" for name in others)]
    fixed = ["rank", "trial_id", "status", *scores[:2], f"{metric}_folds", *scores[2:], "score_epoch", "epochs"]
    fixed += [column for column in ("pareto", "feasible") if column in table.columns]
    params = [c for c in table.columns if "." in c]
    shown = table[fixed + params].head(top).copy()
    for column in scores:
        shown[column] = shown[column].map(lambda v: f"{v:.4f}")
    for column in params:
        shown[column] = shown[column].map(lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))
    shown.columns = [c.split(".")[-1] if "." in c else c for c in shown.columns]
    return shown.to_string(index=False)
