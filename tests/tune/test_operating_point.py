"""The screening decision end to end, without Ray: a run folder as a search leaves it (best_config.json linking the
winner's out-of-fold predictions at e*, made here by training each fold for real), then `tune.final` (refit and
`--model folds`) and `tune.predict`. The model folder holds the temperature and the threshold; the threshold gives the
requested sensitivity on the out-of-fold set; calibration lowers the out-of-fold log-loss; predict writes calibrated
probabilities, the raw logit and the decision; the fold ensemble's probabilities are the mean of its folds'."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.toy_audio import make_toy_config

from core.calibration import apply_temperature
from core.data.dataset import prepare_data
from core.train import train_fold
from tune.final import TRIAL_META, TRIAL_STATE
from tune.final import main as tune_final
from tune.predict import main as tune_predict
from tune.results.export import out_of_fold

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # five small trainings: about a minute
OVERRIDES = {"train.epochs": 2, "train.select": "last"}  # e* = the horizon: stop_epoch 0


@pytest.fixture(scope="module")
def run_folder(toy_dataset: Path, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best_config.json + oof_predictions.parquet, the folds trained as a search's trial trains them."""
    root = tmp_path_factory.mktemp("clinical") / "run"
    root.mkdir()
    config = make_toy_config(toy_dataset, toy_cache_dir, **OVERRIDES)
    data = prepare_data(config)
    outputs = {}
    checkpoint = root / "trial_toy" / "checkpoint_000001"  # as the trainable leaves the trial's last checkpoint
    checkpoint.mkdir(parents=True)
    for fold in data.splits.folds:
        last = list(train_fold(config, data, fold))[-1]
        outputs[fold.index] = last.outputs
        torch.save(last.state, checkpoint / TRIAL_STATE.format(fold.index))
    (checkpoint / TRIAL_META).write_text(json.dumps({"epoch": 2, "selected_epoch": 2}))
    table, _, _ = out_of_fold(config, data, outputs)
    table.to_parquet(root / "oof_predictions.parquet", index=False)
    export = {"config": config.to_dict(), "metric": "uar", "trial_id": "toy", "out_of_fold": "oof_predictions.parquet",
              "validated": {"metric": "uar", "score": 0.5, "std": 0.1, "epoch": 2, "horizon": 2,
                            "folds": [0.5, 0.5, 0.5]}}
    (root / "best_config.json").write_text(json.dumps(export))
    pd.DataFrame({"rank": [1], "trial_id": ["toy"], "status": ["finished"], "uar_score": [0.5], "uar_std": [0.1],
                  "error": [""]}).to_csv(root / "leaderboard.csv", index=False)  # a run folder: the page is the run's
    return root


@pytest.fixture(scope="module")
def refit(run_folder: Path) -> Path:
    assert tune_final(["--config", str(run_folder / "best_config.json"), "--operating-point", "sensitivity=0.90"]) == 0
    return run_folder / "final"


@pytest.fixture(scope="module")
def folds(run_folder: Path, refit: Path) -> Path:
    assert tune_final(["--config", str(run_folder / "best_config.json"), "--model", "folds"]) == 0
    return run_folder / "final_folds"


def test_the_checkpoint_names_are_the_trainables() -> None:
    from tune.engine.trainable import META_FILE, STATE_FILE

    assert (TRIAL_STATE, TRIAL_META) == (STATE_FILE, META_FILE)


def oof(run_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_parquet(run_folder / "oof_predictions.parquet")
    return table[["p_abnormal", "p_normal"]].to_numpy(), (table["label"] == "abnormal").to_numpy()


def test_model_folder_holds_temperature_and_threshold(run_folder: Path, refit: Path) -> None:
    metadata = json.loads((refit / "model.json").read_text())
    calibration, point = metadata["calibration"], metadata["operating_point"]
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    assert point["rule"] == "sensitivity=0.9" and point["positive_class"] == "abnormal"
    # the threshold gives the requested sensitivity on the out-of-fold set (within one clip)
    probabilities, is_positive = oof(run_folder)
    calibrated = apply_temperature(probabilities, calibration["temperature"])[:, 0]
    caught = int((calibrated[is_positive] >= point["threshold"]).sum())
    assert abs(caught - 0.9 * is_positive.sum()) <= 1 and caught >= math.ceil(0.9 * is_positive.sum())
    assert point["out_of_fold"]["sensitivity"] == pytest.approx(caught / is_positive.sum())
    # calibration lowers the out-of-fold log-loss (fitted there: never above T = 1's)
    scores = calibration["out_of_fold"]
    assert scores["after"]["log_loss"] <= scores["before"]["log_loss"] + 1e-9
    assert "Decision" in (refit / "MODEL_CARD.md").read_text()


def test_report_gives_the_operating_point_with_intervals(run_folder: Path, refit: Path) -> None:
    report = json.loads((refit / "report.json").read_text())
    point = report["operating_point"]
    threshold = json.loads((refit / "model.json").read_text())["operating_point"]["threshold"]
    assert point["threshold"] == pytest.approx(threshold)
    for name in ("sensitivity", "specificity", "ppv", "npv", "uar"):
        assert name in point and len(point[f"{name}_ci"]) == 2
    assert sum(point["counts"].values()) == report["test_clips"]
    assert set(report["calibration"]["test"]) == {"before", "after", "clips"}
    assert report["model_kind"] == "refit"
    assert (refit / "plots" / "reliability_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run_folder / "report.html").read_text()
    assert "Operating point" in page and "reliability_diagram.png" in page and "Calibration: temperature" in page


def test_predict_writes_calibrated_probabilities_logit_and_decision(refit: Path, toy_dataset: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.csv"
    assert tune_predict(["--model", str(refit), "--data", str(toy_dataset), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    metadata = json.loads((refit / "model.json").read_text())
    threshold, temperature = metadata["operating_point"]["threshold"], metadata["calibration"]["temperature"]
    assert f"p >= {threshold:.4f}" in said and "operating point sensitivity=0.9" in said
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["path", "predicted", "p_abnormal", "p_normal", "logit"]
    assert (table["predicted"] == np.where(table["p_abnormal"] >= threshold, "abnormal", "normal")).all()
    # the calibrated probability is the sigmoid of the raw logit over the temperature
    np.testing.assert_allclose(table["p_abnormal"], 1 / (1 + np.exp(-table["logit"] / temperature)), atol=1e-5)
    # --threshold overrides for one run, and says so
    again = tmp_path / "q.csv"
    assert tune_predict(["--model", str(refit), "--data", str(toy_dataset), "--out", str(again),
                         "--threshold", "0.999"]) == 0
    assert "--threshold, this run only" in capsys.readouterr().out
    overridden = pd.read_csv(again)
    assert (overridden["predicted"] == np.where(overridden["p_abnormal"] >= 0.999, "abnormal", "normal")).all()
    assert json.loads((tmp_path / "q_report.json").read_text())["operating_point"]["threshold"] == 0.999


def test_fold_ensemble_is_the_mean_of_its_folds(run_folder: Path, folds: Path, toy_dataset: Path,
                                                tmp_path: Path) -> None:
    metadata = json.loads((folds / "model.json").read_text())
    members = metadata["ensemble"]["members"]
    assert members == ["fold0", "fold1", "fold2"] and not (folds / "model.safetensors").exists()
    out = tmp_path / "ensemble.csv"
    assert tune_predict(["--model", str(folds), "--data", str(toy_dataset), "--out", str(out)]) == 0
    ensemble = pd.read_csv(out)
    each = []
    for name in members:  # each member is a model folder of its own (no calibration of its own)
        assert tune_predict(["--model", str(folds / name), "--data", str(toy_dataset), "--out",
                             str(tmp_path / f"{name}.csv")]) == 0
        each.append(pd.read_csv(tmp_path / f"{name}.csv")[["p_abnormal", "p_normal"]].to_numpy())
    mean = np.mean(each, axis=0)
    expected = apply_temperature(mean, metadata["calibration"]["temperature"])
    np.testing.assert_allclose(ensemble[["p_abnormal", "p_normal"]].to_numpy(), expected, atol=1e-5)
    # the members are the search's fold models at e*: on its validation rows each gives the out-of-fold predictions
    table = pd.read_parquet(run_folder / "oof_predictions.parquet")
    manifest = pd.read_csv(toy_dataset)
    position = {Path(path).name: row for row, path in enumerate(manifest["path"])}
    for index in range(len(members)):
        mine = table[table["fold"] == index]
        rows = [position[Path(path).name] for path in mine["path"]]
        np.testing.assert_allclose(each[index][rows], mine[["p_abnormal", "p_normal"]].to_numpy(), atol=1e-5)
    report = json.loads((folds / "report.json").read_text())
    assert report["model_kind"] == "fold ensemble" and "operating_point" in report
    assert report["fold_models"] == "the search's checkpoint"
    page = (run_folder / "report.html").read_text()  # the run's page: both final models, side by side
    assert "Refit against fold ensemble (same test set)" in page and "final_folds" in page


def test_a_bare_folder_on_a_conditioned_model_says_how(toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = make_toy_config(toy_dataset, toy_cache_dir, **{"features.conditioning": "rows", "features.n_mels": 78,
                                                             "train.epochs": 1})
    config.to_json(tmp_path / "config.json")
    assert tune_final(["--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "model")]) == 0
    clips = tmp_path / "child"
    clips.mkdir()
    manifest = pd.read_csv(toy_dataset)
    one = manifest[manifest["speaker"] == manifest["speaker"].iloc[0]]
    word = str(one["word"].iloc[0])
    for path in one[one["word"] == word]["path"]:
        shutil.copy(toy_dataset.parent / path, clips / Path(path).name)
    capsys.readouterr()
    assert tune_predict(["--model", str(tmp_path / "model"), "--data", str(clips), "--out",
                         str(tmp_path / "refused.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--age AGE --word WORD" in err and "manifest with age and word" in err
    out = tmp_path / "child.csv"
    assert tune_predict(["--model", str(tmp_path / "model"), "--data", str(clips), "--out", str(out),
                         "--age", "5.5", "--word", word]) == 0
    table = pd.read_csv(out)
    assert (table["age"] == 5.5).all() and (table["word"] == word).all() and len(table) == len(list(clips.iterdir()))
    assert tune_predict(["--model", str(tmp_path / "model"), "--data", str(toy_dataset), "--age", "5",
                         "--out", str(tmp_path / "x.csv")]) == 2
    assert "has its own 'age' column" in capsys.readouterr().err


def test_fold_models_come_from_the_checkpoint_or_are_trained_again(run_folder: Path, folds: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """With the trial's checkpoint gone, the folds are trained again to e*: the same models (seeded as the search)."""
    (run_folder / "trial_toy").rename(tmp_path / "trial_toy")
    try:
        capsys.readouterr()
        assert tune_final(["--config", str(run_folder / "best_config.json"), "--model", "folds", "--out",
                           str(tmp_path / "again")]) == 0
        said = capsys.readouterr().out
        assert "no checkpoint of trial toy in the run folder; training the 3 folds again" in said
        assert f"wrote {tmp_path / 'again' / 'report.json'} and the model folder" in said
    finally:
        (tmp_path / "trial_toy").rename(run_folder / "trial_toy")
    for name in ("fold0", "fold1", "fold2"):
        from safetensors.torch import load_file

        kept, again = load_file(str(folds / name / "model.safetensors")), load_file(
            str(tmp_path / "again" / name / "model.safetensors"))
        assert kept.keys() == again.keys()
        for key in kept:
            torch.testing.assert_close(kept[key], again[key], rtol=1e-5, atol=1e-6)
