"""The log-mel computed once per clip per fold: the same features as per batch, the same training, bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import core.log_mel_cache as log_mel_cache
from core.config import Config
from core.data.batches import batch_rows, make_batch
from core.data.dataset import AudioData
from core.log_mel_cache import CachedLogMelFeaturizer, cached_front_end
from core.models import MODELS
from core.statistics import FoldStatistics
from core.train import train_fold

ConfigFactory = Callable[..., Config]
AUGMENTED = {"augment.time_mask": 8, "augment.time_masks": 2, "augment.freq_mask": 8, "augment.freq_masks": 1,
             "model.dropout": 0.1, "features.conditioning": "rows"}


def featurizers(config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.nn.Module]:
    stats = FoldStatistics.from_data(data, data.splits.folds[0].train)
    plain = MODELS.get(config.model.name).featurizer(config, stats)
    return plain, cached_front_end(plain, data)


def test_cached_log_mel_equals_the_per_batch_log_mel_exactly(toy_data: AudioData,
                                                              toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"features.conditioning": "rows"})
    plain, cached = featurizers(config, toy_data)
    assert isinstance(cached, CachedLogMelFeaturizer)
    plain.eval()
    cached.eval()
    rows = toy_data.splits.development
    rng = np.random.default_rng(0)
    # First pass fills the cache; the later ones read it back in batches of other sizes and compositions.
    for size in (8, 5, 13, len(rows)):
        for chunk in batch_rows(rows, size, rng):
            batch = make_batch(toy_data, chunk, torch.device("cpu"))
            expected = plain(batch)
            assert torch.equal(cached(batch), expected)
    assert cached.known is not None and bool(cached.known[rows].all())
    assert not bool(cached.known[toy_data.splits.test].any())  # only clips that passed through are computed
    assert cached.state_dict().keys() == {f"featurizer.{key}" for key in plain.state_dict()}


def test_a_batch_of_new_and_known_clips(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    plain, cached = featurizers(toy_config_factory(), toy_data)
    plain.eval()
    cached.eval()
    rows = toy_data.splits.development
    device = torch.device("cpu")
    cached(make_batch(toy_data, rows[:6], device))
    mixed = make_batch(toy_data, rows[3:12], device)  # 3 known, 6 new
    torch.testing.assert_close(cached(mixed), plain(mixed), rtol=0, atol=1e-6)
    assert cached.known is not None and bool(cached.known[rows[:12]].all()) and not bool(cached.known[rows[12:]].any())


def test_specaugment_still_draws_per_batch(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    plain, cached = featurizers(toy_config_factory(**AUGMENTED), toy_data)
    cached.train()
    batch = make_batch(toy_data, toy_data.splits.development[:8], torch.device("cpu"))
    torch.manual_seed(1)
    first = cached(batch)
    second = cached(batch)  # read from the cache, masked afresh
    torch.manual_seed(1)
    assert torch.equal(plain(batch), first)
    assert not torch.equal(first, second)


def test_train_fold_is_the_same_with_and_without_the_cache(toy_data: AudioData, toy_config_factory: ConfigFactory,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = toy_config_factory(**AUGMENTED)
    fold = toy_data.splits.folds[0]
    cached = [(r.train_loss, r.metrics, r.outputs) for r in train_fold(config, toy_data, fold)]
    monkeypatch.setattr(log_mel_cache, "MAX_CACHE_BYTES", 0)  # too small for any set: per batch, as before
    plain = [(r.train_loss, r.metrics, r.outputs) for r in train_fold(config, toy_data, fold)]
    assert [loss for loss, _, _ in cached] == [loss for loss, _, _ in plain]
    assert [metrics for _, metrics, _ in cached] == [metrics for _, metrics, _ in plain]
    for (_, _, a), (_, _, b) in zip(cached, plain, strict=True):
        assert np.array_equal(a, b)


def test_waveform_models_and_sets_too_large_are_not_cached(toy_data: AudioData, toy_config_factory: ConfigFactory,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = toy_config_factory(**{"model.name": "wav2vec2"})
    plain, front_end = featurizers(config, toy_data)
    assert front_end is plain
    monkeypatch.setattr(log_mel_cache, "MAX_CACHE_BYTES", 1000)
    plain, front_end = featurizers(toy_config_factory(), toy_data)
    assert front_end is plain
