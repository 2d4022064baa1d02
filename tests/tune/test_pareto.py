"""A two-objective search (`--objective uar,uar_age_gap`): the Pareto front it writes is non-dominated, each
pareto/<trial>.json trains with tune.final, and the bias metrics in the per-epoch results and the leaderboard are
the ones recomputed here from the winner's out-of-fold predictions with sklearn."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from tune.results.leaderboard import ERROR, FINISHED
from tune.results.pareto import mark_pareto, non_dominated

PNG = b"\x89PNG\r\n\x1a\n"


def test_non_dominated() -> None:
    values = np.array([[0.8, 0.2], [0.7, 0.1], [0.6, 0.3], [0.8, 0.2], [np.nan, 0.0], [0.9, 0.5], [0.7, 0.15]])
    front = non_dominated(values, ["max", "min"])
    # [0.6, 0.3] is beaten by [0.7, 0.1] on both; [0.7, 0.15] by [0.7, 0.1] on one (and tied on the other);
    # the two equal rows do not dominate each other; a NaN row is never on the front
    assert front.tolist() == [True, True, False, True, False, True, False]
    assert non_dominated(values[:, :1], ["max"]).tolist() == [False, False, False, False, False, True, False]


def test_mark_pareto_leaves_out_errors() -> None:
    table = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "status": [FINISHED, ERROR, FINISHED, FINISHED],
                          "uar_score": [0.7, 0.9, 0.6, 0.8], "uar_age_gap_score": [0.1, 0.0, 0.2, 0.3]})
    marked = mark_pareto(table, [("uar_score", "max"), ("uar_age_gap_score", "min")])
    assert marked["pareto"].tolist() == [True, False, False, True]  # b would beat all, but it errored
    assert "pareto" not in mark_pareto(table, [("uar_score", "max")]).columns


def run_cli(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def search(ray_address: str, ray_env: dict[str, str], toy_dataset: Path, toy_cache_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    storage = tmp_path_factory.mktemp("runs")
    done = run_cli("tune.run", "--space", "whisper_balancing", "--demo", "--data", str(toy_dataset),
                   "--objective", "uar,uar_age_gap", "--set", "data.bias_min_clips=1",
                   "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}",
                   "--set", "train.batch_size=8", "--set", "train.device=cpu",
                   "--num-samples", "4", "--epochs", "3", "--storage", str(storage), "--name", "mo",
                   "--address", ray_address, env=ray_env)
    return storage / "mo", done


def dominates(a: pd.Series, b: pd.Series) -> bool:
    """a beats b: UAR at least as high and gap at least as low, one of them strictly."""
    return (a["uar_score"] >= b["uar_score"] and a["uar_age_gap_score"] <= b["uar_age_gap_score"]
            and (a["uar_score"] > b["uar_score"] or a["uar_age_gap_score"] < b["uar_age_gap_score"]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_objective_search_writes_a_pareto_front(search: tuple[Path, subprocess.CompletedProcess[str]],
                                                     tmp_path: Path) -> None:
    folder, done = search
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no pruning (Tune's ASHA compares one metric" in done.stdout
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    front = pd.read_csv(folder / "pareto.csv", dtype={"trial_id": str})
    assert len(table) == 4 and set(table["status"]) == {"finished"}  # nothing pruned
    assert 1 <= len(front) <= 4 and set(front["trial_id"]) == set(table.loc[table["pareto"], "trial_id"])
    for _, a in front.iterrows():  # pairwise on the csv: no front row beats another ...
        assert not any(dominates(b, a) for _, b in front.iterrows())
    for _, row in table[~table["pareto"]].iterrows():  # ... and every other trial is beaten by one of them
        assert any(dominates(a, row) for _, a in front.iterrows())
    assert (folder / "pareto.png").read_bytes().startswith(PNG)
    for _, row in front.iterrows():
        export = json.loads((folder / row["config"]).read_text())
        assert row["config"] == f"pareto/{row['trial_id']}.json" and export["trial_id"] == row["trial_id"]
        assert export["validated"]["score"] == pytest.approx(row["uar_score"])
        assert export["validated"]["objectives"]["uar_age_gap"]["score"] == pytest.approx(row["uar_age_gap_score"])
        out = tmp_path / row["trial_id"]
        final = run_cli("tune.final", "--config", str(folder / row["config"]), "--out", str(out))
        assert final.returncode == 0, final.stderr[-3000:]
        report = json.loads((out / "report.json").read_text())
        assert report["cv_score"]["score"] == pytest.approx(row["uar_score"]) and "per_age_band" in report


def per_fold_bias(oof: pd.DataFrame) -> dict[str, float]:
    """Fold means of the age gap (yearly bands with both classes of the fold) and of the speakers' 10th
    percentile, from the out-of-fold predictions, with sklearn."""
    def uar(part: pd.DataFrame) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(part["label"], part["predicted"]))
    gaps, p10s = [], []
    for _, fold in oof.groupby("fold"):
        classes = set(fold["label"])
        bands = [uar(band) for _, band in fold.groupby(np.floor(fold["age"])) if set(band["label"]) == classes]
        gaps.append(max(bands) - min(bands) if len(bands) >= 2 else math.nan)
        p10s.append(float(np.percentile([uar(s) for _, s in fold.groupby("speaker")], 10)))
    return {"uar_age_gap": float(np.nanmean(gaps)), "uar_speaker_p10": float(np.mean(p10s))}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bias_metrics_in_epochs_and_leaderboard(search: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, done = search
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(folder / "leaderboard.csv", dtype={"trial_id": str})
    for column in ("uar_age_gap_score", "uar_age_worst_score", "uar_speaker_p10_score", "uar_age_bands_score"):
        assert table[column].notna().all(), column
    for _, row in table.iterrows():  # per-epoch results: the fold mean of each epoch; the score is it at e*
        epochs = [json.loads(line) for line in (folder / f"trial_{row['trial_id']}" / "result.json").open()]
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        assert all(math.isfinite(e["uar_age_gap_mean"]) and "uar_age_gap_fold0" in e for e in epochs)
        selected = epochs[int(row["score_epoch"]) - 1]
        assert row["uar_age_gap_score"] == pytest.approx(selected["uar_age_gap_mean"])
        assert row["uar_speaker_p10_score"] == pytest.approx(selected["uar_speaker_p10_mean"])
    export = json.loads((folder / "best_config.json").read_text())
    winner = table.loc[table["trial_id"] == export["trial_id"]].iloc[0]
    recomputed = per_fold_bias(pd.read_csv(folder / "oof_predictions.csv"))
    assert winner["uar_age_gap_score"] == pytest.approx(recomputed["uar_age_gap"])
    assert winner["uar_speaker_p10_score"] == pytest.approx(recomputed["uar_speaker_p10"])
    assert export["validated"]["bias"]["uar_age_gap"] == pytest.approx(recomputed["uar_age_gap"])
