"""The log-mel computed once per clip per trial, shared by its folds: the same features as per batch, the same
training, bit for bit; one computation per clip; never shared between two front ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

import core.log_mel_cache as log_mel_cache
from core.config import Config
from core.data.batches import batch_rows, make_batch
from core.data.dataset import AudioData
from core.features import WhisperLogMel
from core.log_mel_cache import CachedLogMelFeaturizer, cached_front_end
from core.models import MODELS
from core.statistics import FoldStatistics
from core.train import train_fold

ConfigFactory = Callable[..., Config]
EpochValues = tuple[float, dict, np.ndarray | None]  # train loss, validation metrics, validation outputs
AUGMENTED = {"augment.time_mask": 8, "augment.time_masks": 2, "augment.freq_mask": 8, "augment.freq_masks": 1,
             "model.dropout": 0.1, "features.conditioning": "rows"}


def featurizers(config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.nn.Module]:
    stats = FoldStatistics.from_data(data, data.splits.folds[0].train)
    plain = MODELS.get(config.model.name).featurizer(config, stats)
    fresh = dataclasses.replace(data)  # its own empty store: what other tests put in toy_data's is not seen here
    return plain, cached_front_end(plain, fresh, torch.device("cpu"))


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
    assert bool(cached.store.known[rows].all())
    assert not bool(cached.store.known[toy_data.splits.test].any())  # only clips that passed through are computed
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
    assert bool(cached.store.known[rows[:12]].all()) and not bool(cached.store.known[rows[12:]].any())


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


class LogMelCount:
    """Clips that pass through any `WhisperLogMel` while active: a global forward hook, so it counts the modules
    train_fold builds inside itself too."""

    def __init__(self) -> None:
        self.clips = 0

    def __enter__(self) -> LogMelCount:
        def count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(module, WhisperLogMel):
                self.clips += inputs[0].shape[0]

        self.handle = torch.nn.modules.module.register_module_forward_hook(count)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def lockstep(config: Config, data: AudioData, folds: int) -> list[EpochValues]:
    """The first `folds` folds advanced one epoch at a time, as tune/engine/folds.py's LocalFolds runs a trial."""
    runs = [train_fold(config, data, fold) for fold in data.splits.folds[:folds]]
    results = []
    for epoch in range(config.train.epochs):
        for run in runs:
            result = next(run)
            assert result.epoch == epoch + 1
            results.append((result.train_loss, result.metrics, result.outputs))
    return results


def same_results(a: list[EpochValues], b: list[EpochValues]) -> None:
    assert [loss for loss, _, _ in a] == [loss for loss, _, _ in b]
    assert [metrics for _, metrics, _ in a] == [metrics for _, metrics, _ in b]
    for (_, _, x), (_, _, y) in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_the_folds_of_one_trial_compute_each_clip_once(toy_data: AudioData, toy_config_factory: ConfigFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = toy_config_factory(**{**AUGMENTED, "train.epochs": 2})
    data = dataclasses.replace(toy_data)  # a trial's own AudioData: nothing cached yet
    folds = data.splits.folds[:2]
    clips = np.unique(np.concatenate([np.concatenate([f.train, f.valid]) for f in folds]))
    with LogMelCount() as shared:
        cached = lockstep(config, data, 2)
    assert shared.clips == len(clips)  # once per clip for the whole trial (per fold it was twice)
    monkeypatch.setattr(log_mel_cache, "MAX_CACHE_BYTES", 0)  # per batch, as before the cache
    with LogMelCount() as per_batch:
        plain = lockstep(config, dataclasses.replace(toy_data), 2)
    assert per_batch.clips == 2 * 2 * len(clips)  # 2 folds x 2 epochs x (train + valid)
    same_results(cached, plain)


@pytest.mark.parametrize("other", [{"features.n_mels": 32}, {"features.n_fft": 512}])
def test_another_front_end_does_not_reuse_the_first_ones_values(toy_data: AudioData,
                                                                  toy_config_factory: ConfigFactory,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  other: dict) -> None:
    """n_fft 512 gives the same [n_mels, frames] shape as 400: only the key can tell the two apart."""
    first, second = (toy_config_factory(**{"train.epochs": 1, **o}) for o in ({}, other))
    data = dataclasses.replace(toy_data)
    fold = data.splits.folds[0]
    clips = len(fold.train) + len(fold.valid)
    lockstep(first, data, 1)
    with LogMelCount() as count:
        cached = lockstep(second, data, 1)
    assert count.clips == clips  # all computed afresh for this front end
    with LogMelCount() as count:
        lockstep(first, data, 1)
    assert count.clips == 0  # the first front end's values are still there, under their own key
    monkeypatch.setattr(log_mel_cache, "MAX_CACHE_BYTES", 0)
    same_results(cached, lockstep(second, dataclasses.replace(toy_data), 1))


def test_one_audio_data_keeps_at_most_max_cache_bytes(toy_data: AudioData, toy_config_factory: ConfigFactory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = dataclasses.replace(toy_data)
    cpu = torch.device("cpu")
    stats = FoldStatistics.from_data(data, data.splits.folds[0].train)
    first, second = (MODELS.get("whisper").featurizer(toy_config_factory(**o), stats)
                     for o in ({}, {"features.n_fft": 512}))
    size = len(data.targets) * first.log_mel.mel.n_mels * first.log_mel.frames * 4
    monkeypatch.setattr(log_mel_cache, "MAX_CACHE_BYTES", size)  # room for one front end's values
    kept = cached_front_end(first, data, cpu).store
    assert cached_front_end(first, data, cpu).store is kept  # the same front end: the same store
    assert kept.values.shape == (len(data.targets), first.log_mel.mel.n_mels, first.log_mel.frames)
    other = cached_front_end(second, data, cpu).store
    assert other is not kept and list(data.log_mels.values()) == [other]  # the first made room
    assert dataclasses.replace(data).log_mels == {}  # other waveforms, say: nothing carried over
