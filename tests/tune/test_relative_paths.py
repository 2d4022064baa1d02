"""Relative paths on the command line mean the user's working folder, also inside trials, which Ray starts in
folders of their own (a relative --data made every trial fail with "manifest not found")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from search_spaces import SPACES
from tune.engine.arguments import parse_args, settings_from_args

REPO = Path(__file__).resolve().parents[2]


def stored_base(*argv: str) -> dict:
    args = parse_args(list(argv))
    return settings_from_args(args, SPACES.get(args.space)).base


def test_local_paths_are_stored_absolute_and_hub_ids_and_uris_are_not(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "whisper-base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    base = stored_base("--space", "whisper_balancing", "--data", "clinic/manifest.csv",
                       "--set", "data.cache_dir=cache", "--set", "model.pretrained=models/whisper-base",
                       "--set", "data.splits_file=s3://bucket/run/splits.json")
    assert base["data"]["manifest"] == str(tmp_path / "clinic" / "manifest.csv")
    assert base["data"]["cache_dir"] == str(tmp_path / "cache")
    assert base["model"]["pretrained"] == str(tmp_path / "models" / "whisper-base")
    assert base["data"]["splits_file"] == "s3://bucket/run/splits.json"
    hub = stored_base("--space", "whisper_balancing", "--data", "m.csv",
                      "--set", "model.pretrained=openai/whisper-base")
    assert hub["model"]["pretrained"] == "openai/whisper-base"  # no such folder here: a hub id


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_search_given_relative_paths_trains(ray_address: str, ray_env: dict[str, str], toy_dataset: Path,
                                              tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(toy_dataset.parent, project / "clips")
    env = {**ray_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), ray_env.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", "clips/manifest.csv",
         "--set", "data.cache_dir=cache", "--set", "data.max_seconds=1.0", "--set", "train.batch_size=8",
         "--num-samples", "1", "--epochs", "1", "--k-fold", "2", "--storage", "runs", "--name", "rel",
         "--address", ray_address], cwd=project, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = pd.read_csv(project / "runs" / "rel" / "leaderboard.csv", dtype={"trial_id": str})
    assert list(table["status"]) == ["finished"], table.to_string()
