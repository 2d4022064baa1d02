"""A search whose clips vanish once its driver has checked them still trains every trial: a trial's start looks at
no clip (tests/tune/test_trial_start.py has the unit tests). A real Ray search, in a subprocess (so that its Ray
connection ends with it), joined to the session's Ray head."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.toy_audio import write_toy_dataset

ROOT = Path(__file__).resolve().parents[2]

SEARCH = """
import sys
from pathlib import Path
from tune.engine.experiment import prepare, search

settings, space, store, data, args = prepare(sys.argv[2:])
audio = Path(sys.argv[1])
audio.rename(audio.with_name("gone"))
with store.claim(resume=False, overwrite=False):
    sys.exit(search(settings, space, store, data, args))
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_search_whose_clips_vanish_after_the_checks_trains_every_trial(
        ray_address: str, ray_env: dict[str, str], tmp_path: Path) -> None:
    manifest = write_toy_dataset(tmp_path / "toy", speakers=12)
    storage = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", SEARCH, str(manifest.parent / "audio"), "--space", "whisper_balancing", "--demo",
         "--data", str(manifest), "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={tmp_path / 'cache'}",
         "--set", "train.batch_size=8", "--set", "train.device=cpu", "--num-samples", "2", "--epochs", "1",
         "--k-fold", "2", "--storage", str(storage), "--name", "gone", "--address", ray_address],
        capture_output=True, text=True, env={**ray_env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    best = json.loads((storage / "gone" / "best_config.json").read_text())
    assert best["validated"]["epoch"] == 1
    leaderboard = (storage / "gone" / "leaderboard.csv").read_text().splitlines()
    assert len(leaderboard) == 3 and all(",finished," in line for line in leaderboard[1:]), leaderboard
