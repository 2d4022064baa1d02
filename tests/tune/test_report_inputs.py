"""`tune.report` on folders that are not (yet) what a finished search leaves: a search still running says so; one
that stopped before its leaderboard says how to resume it; files of another shape are one line naming the file
and key, never a traceback from inside the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tune.report import main as tune_report
from tune.results.storage import RunStore


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert tune_report(list(args)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def run_folder(folder: Path, **files: Any) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"rank": [1], "trial_id": ["7554e379"], "status": ["finished"], "uar_score": [0.7]}
                 ).to_csv(folder / "leaderboard.csv", index=False)
    for name, value in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return folder


def test_a_search_still_running_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: "not a run folder (no leaderboard.csv)"."""
    store = RunStore(str(tmp_path), "live")
    store.create()
    store.write_bytes("run.json", b"{}")
    with store.lock():  # what the running search holds
        err = refused(capsys, str(tmp_path / "live"))
    assert "the search is still running" in err
    err = refused(capsys, str(tmp_path / "live"))
    assert "a search that stopped before writing leaderboard.csv" in err and "--resume" in err


def test_a_leaderboard_without_an_error_column_is_drawn(tmp_path: Path) -> None:
    """Was: KeyError 'error' (the column only some leaderboards have)."""
    folder = run_folder(tmp_path / "run")
    assert tune_report([str(folder)]) == 0 and "7554e379" in (folder / "report.html").read_text()


@pytest.mark.parametrize(("files", "message"), [
    ({"report.json": [1, 2]}, "report.json: expected an object, got [1, 2]"),
    ({"report.json": {"metrics": [0.5]}}, "report.json: 'metrics' is [0.5], not an object"),
    ({"report.json": {"metrics": {}, "per_word": {"cat": 0.5}}}, "report.json: 'per_word' holds {'cat': 0.5}"),
    ({"best_config.json": "best"}, "best_config.json: expected an object, got 'best'"),
    ({"best_config.json": {"validated": 0.7}}, "best_config.json: 'validated' is 0.7, not an object"),
    ({"plots__skipped.json": ["slice.png"]}, "plots/skipped.json: expected an object, got ['slice.png']"),
    ({"plots__skipped.json": {"slice.png": 3}}, "plots/skipped.json: expected figure names and reasons"),
])
def test_files_of_another_shape_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             files: dict[str, Any], message: str) -> None:
    folder = run_folder(tmp_path / "run", **files)
    assert message in refused(capsys, str(folder))
    assert not (folder / "report.html").exists()
