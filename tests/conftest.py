"""Shared fixtures: a small, learnable dataset of real audio files (tests/support/toy_audio.py) and a tiny `Config`
pointing at it, written once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from support.toy_audio import make_toy_config, write_toy_dataset

from core.config import Config
from core.data.dataset import AudioData, prepare_data


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    """The test machines have 2 shared cores; one intra-op thread is as fast for micro models and kinder."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the toy manifest.csv (12 speakers x 3 words; FLAC, one WAV, some stereo 44.1 kHz)."""
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def toy_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decode-cache folder for the session, so the toy set is decoded once."""
    return tmp_path_factory.mktemp("toy-cache")


@pytest.fixture
def toy_config(toy_dataset: Path, toy_cache_dir: Path) -> Config:
    """A fresh (mutable) tiny config on the toy set for each test."""
    return make_toy_config(toy_dataset, toy_cache_dir)


@pytest.fixture
def toy_config_factory(toy_dataset: Path, toy_cache_dir: Path) -> Callable[..., Config]:
    """`factory(**{"optim.lr": 1e-3})` -> tiny toy config with those dotted overrides."""
    return lambda **overrides: make_toy_config(toy_dataset, toy_cache_dir, **overrides)


@pytest.fixture(scope="session")
def toy_data(toy_dataset: Path, toy_cache_dir: Path) -> AudioData:
    """The toy set prepared once (manifest validated, cache built, splits made) for the default toy config."""
    return prepare_data(make_toy_config(toy_dataset, toy_cache_dir))


from support.checkpoints import tiny_wav2vec2, tiny_whisper  # noqa: E402,F401  (small save_pretrained checkpoints)
from support.ray_cluster import ray_address, ray_env, ray_head  # noqa: E402,F401  (session Ray fixtures)
