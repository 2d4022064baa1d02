"""The probe benches print their JSON: bench/search_efficiency.py --space whisper_probe (the samplers of tune.run)
and bench/probe_trial.py (a probe trial's own arithmetic against its wall time), on a small save_pretrained Whisper
and a few toy clips; and refuse a missing --weights in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(*argv: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout)


@pytest.mark.parametrize("script", ["bench/search_efficiency.py", "bench/probe_trial.py"])
def test_the_probe_benches_need_real_weights(script: str, tmp_path: Path) -> None:
    flags = ["--space", "whisper_probe"] if "efficiency" in script else []
    done = bench(script, *flags, "--weights", str(tmp_path / "nothing"), timeout=120)
    assert done.returncode == 2
    assert f"--weights {tmp_path / 'nothing'}" in done.stderr.splitlines()[-1]


@pytest.mark.slow
def test_search_efficiency_on_the_probe_prints_its_json(toy_dataset: Path, tiny_whisper: Path, ray_env: dict) -> None:
    done = bench("bench/search_efficiency.py", "--space", "whisper_probe", "--weights", str(tiny_whisper),
                 "--data", str(toy_dataset), "--max-seconds", "1.0", "--folds", "2", "--epochs", "2",
                 "--trials", "3", "--seeds", "0", "--samplers", "tpe,gp,random", env=ray_env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert set(report["mean_best"]) == {"tpe", "gp", "random"}
    assert report["trials"] == 3 and report["seeds"]["0"]["random"]["share_to_reach_random_best"] <= 1.0
    assert 0.0 <= report["mean_best"]["gp"] <= 1.0


@pytest.mark.slow
def test_probe_trial_prints_both_times_and_their_ratio(toy_dataset: Path, tiny_whisper: Path, ray_env: dict) -> None:
    done = bench("bench/probe_trial.py", "--weights", str(tiny_whisper), "--data", str(toy_dataset),
                 "--max-seconds", "1.0", "--folds", "2", "--epochs", "2", "--trials", "1", env=ray_env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["own_arithmetic_seconds"] > 0 and len(report["search_trial_seconds"]) == 1
    assert report["ratio"] == pytest.approx(report["search_trial_seconds"][0] / report["own_arithmetic_seconds"],
                                            rel=0.05)  # both rounded in the JSON
    assert set(report["train_fold_parts_seconds"]) == {"build_model", "open_cache", "evaluation", "snapshots",
                                                       "rest_training_loop"}
