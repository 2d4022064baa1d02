"""`best_config.json`: the winner's full Config (epochs from its folds' best epochs), its fold scores, and the
search's metadata. `tune.final` and `core.train` read it back with `core.config.load_config_file`."""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd
from ray.tune import ResultGrid

from tune.aggregate import fold_values
from tune.trainable import trial_config


def select_winner(table: pd.DataFrame) -> pd.Series | None:
    """Best trial that ran all its epochs; else the best one ASHA stopped; None if every trial errored."""
    for wanted in ("finished", "stopped (ASHA)"):
        rows = table[table["status"] == wanted]
        if not rows.empty:
            return rows.iloc[0]
    return None


def build_export(table: pd.DataFrame, grid: ResultGrid, base: dict[str, Any], metric: str,
                 metadata: dict[str, Any]) -> dict[str, Any] | None:
    winner = select_winner(table)
    if winner is None:
        return None
    result = next(r for r in grid if (r.metrics or {}).get("trial_id") == winner["trial_id"])
    last = result.metrics
    best_epochs = [int(v) for v in fold_values(last, "best_epoch")]
    epochs = max(1, int(round(statistics.median(best_epochs))))
    config = trial_config(result.config, base).with_overrides({"train.epochs": epochs})
    return {
        "config": config.to_dict(),
        "metric": metric,
        "score": {"mean": last[f"{metric}_mean"], "std": last[f"{metric}_std"],
                  "folds": fold_values(last, metric), "epoch": int(last["epoch"])},
        "fold_best_epochs": best_epochs,
        "trial_id": winner["trial_id"],
        "params": dict(result.config),
        "search": metadata,
    }
