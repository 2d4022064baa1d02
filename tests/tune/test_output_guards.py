"""What a command writes never replaces what a user gave it: `predict --out` never lands in the model folder or on
its own --data manifest (not even with --overwrite), and `report --out` keeps an existing file unless
--overwrite, and says so in one line when --out is a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from support.toy_audio import make_toy_config

from core.data.dataset import AudioData
from core.model_folder import save_model_folder
from core.models import MODELS
from core.statistics import FoldStatistics
from tune.predict import main as tune_predict
from tune.report import main as tune_report


@pytest.fixture(scope="module")
def model_folder(toy_data: AudioData, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model folder (untrained weights: what is checked here is where files go)."""
    config = make_toy_config(toy_data.manifest.source, toy_cache_dir)
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    spec = MODELS.get(config.model.name)
    torch.manual_seed(0)
    model, featurizer = spec.build(config, len(toy_data.classes), stats), spec.featurizer(config, stats)
    folder = tmp_path_factory.mktemp("guarded") / "model"
    save_model_folder(folder, model.eval(), featurizer.eval(), config, stats, {"trained_on": {}})
    return folder


def refused(capsys: pytest.CaptureFixture[str], command: object, *args: str) -> str:
    capsys.readouterr()
    assert command(list(args)) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_never_writes_into_the_model_folder(model_folder: Path, toy_dataset: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(model_folder)
    for name in ("model.json", "config.json", "new.csv", "model_report.json"):
        err = refused(capsys, tune_predict, "--model", str(model_folder), "--data", str(toy_dataset), "--out",
                      str(model_folder / name), "--overwrite")
        assert "inside the model folder" in err and "--overwrite does not allow that" in err, err
    # its report (<stem>_report.json) would land there too
    err = refused(capsys, tune_predict, "--model", str(model_folder), "--data", str(toy_dataset), "--out",
                  str(model_folder / ".." / "model" / "p.csv"), "--overwrite")
    assert "inside the model folder" in err
    assert snapshot(model_folder) == before


def test_predict_never_replaces_its_own_manifest(model_folder: Path, toy_dataset: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "clips.csv"
    table = pd.read_csv(toy_dataset, dtype=str)
    table.assign(path=[str(toy_dataset.parent / p) for p in table["path"]]).to_csv(manifest, index=False)
    before = manifest.read_bytes()
    err = refused(capsys, tune_predict, "--model", str(model_folder), "--data", str(manifest), "--out", str(manifest),
                  "--overwrite")
    assert f"--out {manifest}: clips.csv is the --data manifest itself" in err
    link = tmp_path / "same.csv"
    link.symlink_to(manifest)
    err = refused(capsys, tune_predict, "--model", str(model_folder), "--data", str(manifest), "--out", str(link),
                  "--overwrite")
    assert "is the --data manifest itself" in err
    assert manifest.read_bytes() == before


def run_folder(folder: Path) -> Path:
    folder.mkdir()
    pd.DataFrame({"rank": [1], "trial_id": ["7554e379"], "status": ["finished"], "uar_score": [0.7],
                  "error": [float("nan")]}).to_csv(folder / "leaderboard.csv", index=False)
    (folder / "best_config.json").write_text(json.dumps({"trial_id": "7554e379", "config": {}}))
    return folder


def test_report_out_keeps_an_existing_file_without_overwrite(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = run_folder(tmp_path / "run")
    notes = tmp_path / "my_notes.html"
    notes.write_text("my notes")
    err = refused(capsys, tune_report, str(folder), "--out", str(notes))
    assert f"--out {notes}: already exists; pass --overwrite to replace it" in err
    assert notes.read_text() == "my notes"
    assert tune_report([str(folder), "--out", str(notes), "--overwrite"]) == 0
    assert notes.read_text().startswith("<!DOCTYPE html>")
    fresh = tmp_path / "new" / "page.html"  # a new file in a new folder needs no --overwrite
    assert tune_report([str(folder), "--out", str(fresh)]) == 0 and fresh.is_file()


def test_report_out_onto_a_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = run_folder(tmp_path / "run")
    err = refused(capsys, tune_report, str(folder), "--out", str(tmp_path))
    assert f"--out {tmp_path}: is a folder; give the page's file name" in err
    err = refused(capsys, tune_report, str(tmp_path / "nope"), "--out", str(tmp_path / "x" / "p.html"))
    assert "no such folder" in err and not (tmp_path / "x").exists()  # nothing made for a refused FOLDER
