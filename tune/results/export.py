"""`best_config.json`: the validated recipe. The winner's full Config with the schedule horizon its folds trained
under (`train.epochs`) and the epoch to stop at (`train.stop_epoch` = e*), and a `validated` block saying what the
search measured there (core/scoring.py), so that `core.train` and `tune.final` re-derive nothing. They read the
config back with `core.config.load_config_file`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.checks import trial_config
from core.config import Config
from core.data.dataset import AudioData
from core.data.recorded import clip_keys
from tune.results.aggregate import bias_scores, fold_values
from tune.results.leaderboard import ASHA, FINISHED, PATIENCE

if TYPE_CHECKING:  # results take Ray's ResultGrid from the engine; they never import Ray
    from ray.tune import ResultGrid


def select_winner(table: pd.DataFrame) -> pd.Series | None:
    """Best score among trials ASHA did not stop (they ran to the horizon or stopped through train.patience);
    else the best one ASHA stopped; None if every trial errored. With a `feasible` column (tune.run --constraint)
    only feasible trials count: None if none was. `table` is sorted best first."""
    if "feasible" in table.columns:
        table = table[table["feasible"].astype(bool)]
    for wanted in ({FINISHED, PATIENCE}, {ASHA}):
        rows = table[table["status"].isin(wanted)]
        if not rows.empty:
            return rows.iloc[0]
    return None


def validated_block(last: dict[str, Any], metric: str, select: str, horizon: int,
                    others: Sequence[str] = ()) -> dict[str, Any]:
    """What the search validated for a trial, from its last result: the score at e* with the folds' values; with
    further objectives (`others`), theirs at the same e* under `objectives`, and the bias metrics there."""
    block = {"metric": metric, "select": select, "horizon": horizon, "epoch": int(last["score_epoch"]),
             "score": last[f"{metric}_score"], "std": last[f"{metric}_score_std"],
             "folds": fold_values(last, f"{metric}_score")}
    if others:
        block["objectives"] = {name: {"score": last.get(f"{name}_score", math.nan),
                                      "std": last.get(f"{name}_score_std", math.nan),
                                      "folds": fold_values(last, f"{name}_score")} for name in others}
    bias = bias_scores(last)
    if bias:
        block["bias"] = {key.removesuffix("_score"): value for key, value in bias.items()}
    return block


def validated_recipe(params: dict[str, Any], base: dict[str, Any], last: dict[str, Any],
                     others: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config dict, validated block): training stops at e*, under the horizon's learning-rate schedule. With e* at
    the horizon (always for a finished select=last trial) stop_epoch is 0: the full horizon."""
    config = trial_config(params, base)
    horizon = config.train.epochs
    validated = validated_block(last, config.train.metric, config.train.select, horizon, others)
    stop = validated["epoch"] if validated["epoch"] < horizon else 0
    return config.with_overrides({"train.stop_epoch": stop}).validate().to_dict(), validated


def trial_export(row: pd.Series, grid: ResultGrid, base: dict[str, Any], metric: str, metadata: dict[str, Any],
                 others: Sequence[str] = ()) -> dict[str, Any]:
    """The best_config.json of the trial in leaderboard `row` (tune.final, core.train --config read it)."""
    result = next(r for r in grid if (r.metrics or {}).get("trial_id") == row["trial_id"])
    config, validated = validated_recipe(result.config, base, result.metrics, others)
    return {
        "config": config,
        "metric": metric,
        "validated": validated,
        "trial_id": row["trial_id"],
        "status": row["status"],
        "params": dict(result.config),
        "search": metadata,
    }


def build_export(table: pd.DataFrame, grid: ResultGrid, base: dict[str, Any], metric: str,
                 metadata: dict[str, Any], others: Sequence[str] = ()) -> dict[str, Any] | None:
    """best_config.json: the winner by the first objective (`select_winner`), None if every trial errored."""
    winner = select_winner(table)
    if winner is None:
        return None
    return trial_export(winner, grid, base, metric, metadata, others)


def out_of_fold(config: Config, data: AudioData, outputs: dict[int, np.ndarray]
                ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(table, rows, outputs) of each fold's validation predictions at e*: one row per development clip (each is
    in exactly one fold's validation rows) with path (as splits.json names it), speaker, word, age where the
    manifest has them, label, fold, and the predicted class with per-class probabilities (regression: the
    predicted value)."""
    folds = [fold for fold in data.splits.folds if fold.index in outputs]
    for fold in folds:
        if len(outputs[fold.index]) != len(fold.valid):
            raise RuntimeError(f"fold {fold.index}: {len(outputs[fold.index])} predictions for {len(fold.valid)} "
                               "validation clips (the trial's split is not the driver's)")
    rows = np.concatenate([fold.valid for fold in folds])
    values = np.concatenate([outputs[fold.index] for fold in folds])
    manifest = data.manifest.table
    table = pd.DataFrame({"path": np.asarray(clip_keys(data.manifest, config.data.audio_root), dtype=object)[rows]})
    for column in ("speaker", "word"):
        if column in manifest.columns:
            table[column] = manifest[column].to_numpy()[rows]
    if "age" in manifest.columns:
        table["age"] = data.ages[rows]
    classes = np.asarray(data.classes, dtype=object)
    table["label"] = data.targets[rows] if data.regression else classes[data.targets[rows]]
    table["fold"] = np.concatenate([np.full(len(fold.valid), fold.index) for fold in folds])
    if data.regression:
        table["prediction"] = values[:, 0]
        return table, rows, values
    table["predicted"] = classes[values.argmax(axis=1)]
    for index, name in enumerate(data.classes):
        table[f"p_{name}"] = values[:, index]
    return table, rows, values
