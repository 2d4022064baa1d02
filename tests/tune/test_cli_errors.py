"""Bad flags and bad input: one line naming the culprit, exit code 2, before Ray starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tune_run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tune.run", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    return done, time.monotonic() - started


@pytest.mark.parametrize(("args", "message"), [
    (["--space", "whisper_balancing", "--bogus"], "unrecognized arguments: --bogus"),
    (["--space", "no_such_space"], "unknown search space 'no_such_space'"),
    (["--space", "whisper_balancing", "--set", "optim.lrr=1e-3"], "did you mean optim.lr"),
    (["--space", "whisper_balancing", "--set", "optim.lr=fast"], "optim.lr: expected float"),
    (["--space", "whisper_balancing", "--set", "optim.lr=-1"], "optim.lr=-1.0: must be positive"),
    (["--space", "whisper_balancing", "--k-fold", "1"], "--k-fold must be >= 2"),
    (["--space", "whisper_balancing", "--num-samples", "0"], "--num-samples must be >= 1"),
    (["--space", "whisper_balancing", "--set", "data.test_size=1.5"], "data.test_size=1.5"),
    (["--space", "whisper_balancing", "--epochs", "many"], "argument --epochs: invalid int value"),
    (["--space", "whisper_balancing", "--data", "/nonexistent/manifest.csv"], "manifest not found"),
    (["--space", "whisper_balancing", "--gpus-per-trial", "0.5"], "--gpus-per-trial 0.5 but this machine"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done, _ = tune_run(*args, "--storage", str(tmp_path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    error_lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), done.stderr
    assert message in error_lines[0]
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_missing_audio_named_with_row(tmp_path: Path, toy_dataset: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    lines = toy_dataset.read_text().splitlines()
    lines[3] = lines[3].replace("audio/", "audio/missing_", 1)
    manifest.write_text("\n".join(lines) + "\n")
    done, _ = tune_run("--space", "whisper_balancing", "--demo", "--data", str(manifest), "--audio-root",
                       str(toy_dataset.parent), "--storage", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert f"{manifest}: row 3 (line 4): audio file" in done.stderr and "not found" in done.stderr


def test_list_spaces_shows_parameters_and_ranges() -> None:
    done, _ = tune_run("--list-spaces")
    assert done.returncode == 0
    assert "whisper_balancing:" in done.stdout
    assert "optim.lr: 1e-05 … 0.001 (log)" in done.stdout
    assert "augment.freq_masks: 0 … 2" in done.stdout


def test_existing_experiment_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "leaderboard.csv").write_text("rank\n1\n")
    done, _ = tune_run("--space", "whisper_balancing", "--demo", "--name", "taken", "--storage", str(tmp_path))
    assert done.returncode == 2 and "exists" in done.stderr
    assert (tmp_path / "taken" / "leaderboard.csv").read_text() == "rank\n1\n"


def test_resume_without_experiment(tmp_path: Path) -> None:
    done, _ = tune_run("--space", "whisper_balancing", "--name", "nothing", "--resume", "--storage", str(tmp_path))
    assert done.returncode == 2 and "no experiment 'nothing'" in done.stderr
