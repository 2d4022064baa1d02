"""Frozen-encoder probe: the head trained on cached encoder outputs gives the full path's numbers, the cache is
computed once per clip set and encoder, and the `whisper_probe` space runs through tune.run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from support.checkpoints import tiny_whisper_checkpoint

from core.config import Config
from core.data.dataset import AudioData, prepare_data
from core.models import frozen
from core.models.whisper import POOLINGS, WhisperClassifier
from core.train import train_fold

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def probe_config(toy_config_factory: Callable[..., Config], tiny_whisper: Path, tmp_path: Path
                 ) -> Callable[..., Config]:
    """A frozen tiny pretrained Whisper on the toy set, with a cache folder of this test's own (counts start at 0)."""
    def make(**overrides: object) -> Config:
        return toy_config_factory(**{"model.pretrained": str(tiny_whisper), "model.freeze_encoder": True,
                                     "model.dropout": 0.2, "data.cache_dir": str(tmp_path / "cache"),
                                     **overrides})
    return make


def run(config: Config, data: AudioData, fold: int = 0) -> list:
    return list(train_fold(config, data, data.splits.folds[fold]))


@pytest.mark.parametrize("pooling", ["audio", "mean"])
def test_cached_encoder_gives_the_full_paths_epochs(probe_config: Callable[..., Config], pooling: str) -> None:
    cached_config = probe_config(**{"model.pooling": pooling})
    data = prepare_data(cached_config)
    full = run(cached_config.with_overrides({"model.encoder_cache": False}), data)
    before = frozen.encoded_clips
    cached = run(cached_config, data)
    assert frozen.encoded_clips - before == len(data.targets)  # the probe path really ran (all clips once)
    assert [r.epoch for r in cached] == [1, 2, 3]
    for a, b in zip(full, cached, strict=True):
        assert a.metrics.keys() == b.metrics.keys()
        for key in a.metrics:
            assert b.metrics[key] == pytest.approx(a.metrics[key], abs=1e-5), key
        assert b.train_loss == pytest.approx(a.train_loss, abs=1e-5)
        np.testing.assert_allclose(b.outputs, a.outputs, atol=1e-5)
        assert b.best_epoch == a.best_epoch
    assert len({round(r.train_loss, 6) for r in cached}) == 3  # it trained: the numbers moved
    # The result's model reads waveforms, as saving a model folder needs: the whole classifier with the probe's head.
    model = cached[-1].model
    assert isinstance(model, WhisperClassifier)
    for key, value in full[-1].model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-5, rtol=0)
    assert set(cached[-1].state["model"]) == {k for k in full[-1].state["model"] if k.startswith("head.")}


def test_cache_is_computed_once_for_every_fold_and_trial(probe_config: Callable[..., Config], tmp_path: Path) -> None:
    config = probe_config()
    data = prepare_data(config)
    before = frozen.encoded_clips
    run(config.with_overrides({"train.epochs": 1}), data, fold=0)
    assert frozen.encoded_clips - before == len(data.targets)
    files = sorted((tmp_path / "cache").glob("encoded-*.npy"))
    assert len(files) == 1
    # another fold, and another trial (other head, loss, learning rate, pooling): the same file, no encoder pass
    run(config.with_overrides({"train.epochs": 1}), data, fold=1)
    other_trial = config.with_overrides({"train.epochs": 1, "optim.lr": 1e-2, "model.projection_dim": 16,
                                         "model.pooling": "mean", "loss.name": "focal"})
    run(other_trial, data, fold=2)
    assert frozen.encoded_clips - before == len(data.targets)
    assert sorted((tmp_path / "cache").glob("encoded-*.npy")) == files
    poolings = len(POOLINGS.names())  # every registered pooling, so a search over model.pooling shares one file
    # clips x layers 0..2 x poolings x d_model (a search over model.layers shares it too)
    assert np.load(files[0], mmap_mode="r").shape == (len(data.targets), 3, poolings, 64)


def test_other_encoder_or_augmented_input_is_not_served_from_the_cache(probe_config: Callable[..., Config],
                                                                       tmp_path: Path) -> None:
    config = probe_config(**{"train.epochs": 1})
    data = prepare_data(config)
    run(config, data)
    before = frozen.encoded_clips
    other = tiny_whisper_checkpoint(tmp_path / "other-weights", seed=1)
    run(config.with_overrides({"model.pretrained": str(other)}), data)  # other weights: a file of their own
    assert frozen.encoded_clips - before == len(data.targets)
    assert len(list((tmp_path / "cache").glob("encoded-*.npy"))) == 2
    for overrides in ({"augment.time_mask": 5, "augment.time_masks": 1}, {"model.freeze_encoder": False},
                      {"features.conditioning": "rows", "features.n_mels": 78}):
        assert not frozen.encoder_cache_applies(config.with_overrides(overrides)), overrides
    assert frozen.encoder_cache_applies(config.with_overrides({"augment.time_mask": 5}))  # 0 masks of it: off


@pytest.mark.slow
def test_whisper_probe_space_runs_through_tune_run(ray_address: str, ray_env: dict[str, str], toy_dataset: Path,
                                                   tiny_whisper: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", "whisper_probe", "--data", str(toy_dataset),
         "--set", f"model.pretrained={tiny_whisper}", "--set", "data.max_seconds=1.0",
         "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.device=cpu",
         "--num-samples", "3", "--k-fold", "2", "--epochs", "2", "--storage", str(tmp_path / "runs"),
         "--name", "probe", "--address", ray_address],
        capture_output=True, text=True, env=ray_env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sum(" epoch 2/2 " in line for line in done.stdout.splitlines()) >= 1
    assert len(list((tmp_path / "cache").glob("encoded-*.npy"))) == 1  # every trial and fold shared one encoder pass
    assert (tmp_path / "runs" / "probe" / "best_config.json").is_file()
