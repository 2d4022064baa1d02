"""`python -m tune.report FOLDER`: one self-contained HTML page of a run folder (the search's page itself is checked
on a real search in tests/tune/test_search_cli.py); a missing or foreign folder is one `error:` line and exit 2; its
--help imports neither torch nor ray."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.plots import confusion_figure, png_bytes

ROOT = Path(__file__).resolve().parents[2]


def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tune.report", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def run_folder(folder: Path) -> Path:
    """A run folder as tune.run leaves it: leaderboard.csv, best_config.json and a figure in plots/."""
    folder.mkdir()
    pd.DataFrame({"rank": [1, 2], "trial_id": ["7554e379", "0a1b2c3d"], "status": ["finished", "stopped (ASHA)"],
                  "uar_score": [0.712, 0.61], "uar_std": [0.021, 0.03], "uar_folds": ["0.70 0.72 0.71", "0.6 0.6 0.63"],
                  "score_epoch": [4, 2], "epochs": [6, 2], "error": [np.nan, np.nan], "optim.lr": [3e-4, 1e-3]}
                 ).to_csv(folder / "leaderboard.csv", index=False)
    (folder / "best_config.json").write_text(json.dumps({
        "trial_id": "7554e379", "metric": "uar", "params": {"optim.lr": 3e-4}, "config": {"optim": {"lr": 3e-4}},
        "validated": {"metric": "uar", "score": 0.712, "std": 0.021, "epoch": 4, "horizon": 6,
                      "folds": [0.70, 0.72, 0.71]},
        "search": {"name": "it", "space": "whisper_balancing", "trials": 2, "num_samples": 2, "seconds": 9.5}}))
    (folder / "plots").mkdir()
    (folder / "plots" / "optimisation_history.png").write_bytes(png_bytes(confusion_figure([[3, 1], [0, 4]],
                                                                                          ["a", "b"])))
    (folder / "plots" / "skipped.json").write_text(json.dumps({"param_importances.png": "1 parameter"}))
    return folder


def test_report_of_a_run_folder(tmp_path: Path) -> None:
    folder = run_folder(tmp_path / "it")
    done = report_cli(str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {folder / 'report.html'}"
    page = (folder / "report.html").read_text()
    assert page.count("7554e379") >= 2  # the best trial and the leaderboard's first row
    assert page.index("7554e379") < page.index("0a1b2c3d")
    png = (folder / "plots" / "optimisation_history.png").read_bytes()
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page  # embedded, not linked
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page  # self-contained
    assert "not drawn: param_importances.png (1 parameter)" in page
    assert "no final model yet" in page


def test_missing_or_foreign_folders_are_one_line_errors(tmp_path: Path) -> None:
    missing = report_cli(str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such folder"]
    (tmp_path / "other").mkdir()
    foreign = report_cli(str(tmp_path / "other"))
    assert foreign.returncode == 2 and len(foreign.stderr.strip().splitlines()) == 1
    assert "not a run folder (no leaderboard.csv) nor a tune.final model folder" in foreign.stderr
    broken = run_folder(tmp_path / "broken")
    (broken / "leaderboard.csv").write_text("a,b\n1,2\n")
    bad = report_cli(str(broken))
    assert bad.returncode == 2 and "leaderboard.csv: not a tune.run leaderboard" in bad.stderr
    no_final = report_cli(str(run_folder(tmp_path / "it")), "--final", str(tmp_path / "other"))
    assert no_final.returncode == 2 and "--final" in no_final.stderr and "not a tune.final model folder" \
        in no_final.stderr


def test_help_imports_neither_torch_nor_ray() -> None:
    code = ("import sys, runpy; sys.argv = ['tune.report', '--help']\ntry:\n    runpy.run_module('tune.report', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'ray', 'optuna', "
            "'matplotlib', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "run folder" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"
