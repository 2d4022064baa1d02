"""Every named search space: its parameters are valid config keys, and it runs through the real `tune.run`
with a smoke budget (1 trial, 2 folds, 1 epoch) on the toy audio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from core.checks import check_config
from core.config import Config, load_config_file
from search_spaces import DEMO_OVERRIDES, SPACES, describe, sample_parameters

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"whisper_balancing", "whisper_losses", "wav2vec2_contrastive", "resnet_focal", "whisper_sam",
            "whisper_conditioning"}


def test_all_named_spaces_are_registered() -> None:
    assert set(SPACES.names()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_is_a_valid_config(name: str) -> None:
    """40 random draws of the space (conditional branches included) all validate on top of its base + demo."""
    space = SPACES.get(name)
    base = Config().with_overrides({**space.base, **space.demo_overrides()})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    suggested: set[str] = set()
    for _ in range(40):
        trial = study.ask()
        check_config(base.with_overrides(sample_parameters(space, trial)))
        suggested.update(trial.params)
    assert suggested == set(describe(space))  # --list-spaces shows exactly what the space searches


def test_conditional_parameters_only_when_chosen() -> None:
    space = SPACES.get("whisper_losses")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = sample_parameters(space, trial)
        name = params["loss.name"]
        assert ("loss.gamma" in params) == (name == "focal")
        assert ("loss.beta" in params) == (name == "class_balanced")
        assert ("loss.temperature" in params) == (name == "contrastive")
        assert (params.get("train.sampler") == "word_pairs") == (name == "contrastive")
    conditioning = SPACES.get("whisper_conditioning")
    for _ in range(20):
        params = sample_parameters(conditioning, study.ask())
        assert "features.n_mels" not in params  # a pretrained Whisper keeps its checkpoint's 80 bands, rows or not
        assert ("features.age_momentum" in params) == (params["features.conditioning"] == "rows")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_space_runs_through_tune_run(name: str, ray_address: str, ray_env: dict[str, str], toy_dataset: Path,
                                     toy_cache_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", name, "--demo", "--data", str(toy_dataset),
         "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={toy_cache_dir}", "--set", "train.batch_size=8",
         "--set", "train.device=cpu", "--num-samples", "1", "--k-fold", "2", "--epochs", "1",
         "--storage", str(tmp_path), "--name", "smoke", "--address", ray_address],
        capture_output=True, text=True, env=ray_env, timeout=280, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    export = json.loads((tmp_path / "smoke" / "best_config.json").read_text())
    config = load_config_file(tmp_path / "smoke" / "best_config.json")
    space = SPACES.get(name)
    for key, value in space.base.items():
        if key not in DEMO_OVERRIDES and key not in export["params"]:
            assert config.get(key) == Config().with_overrides({key: value}).get(key)
    for key, value in export["params"].items():
        assert config.get(key) == Config().with_overrides({key: value}).get(key)
    assert len(export["validated"]["folds"]) == 2
