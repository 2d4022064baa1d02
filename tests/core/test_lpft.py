"""LP-FT (`train.probe_epochs = N`): the first N epochs are the probe's own (same numbers, from the cache), then the
encoder unfreezes at `optim.encoder_lr_scale x lr` with the schedule over the remaining epochs; a run resumed in
either phase gives the same numbers; the final training of a validated recipe follows the same two phases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checks import check_config
from core.config import Config
from core.data.dataset import AudioData, prepare_data
from core.data.splits import Fold
from core.errors import ConfigError
from core.models import frozen
from core.train import train_fold


@pytest.fixture
def lpft_config(toy_config_factory: Callable[..., Config], tiny_whisper: Path, tmp_path: Path
                ) -> Callable[..., Config]:
    def make(**overrides: object) -> Config:
        return toy_config_factory(**{"model.pretrained": str(tiny_whisper), "model.dropout": 0.2,
                                     "data.cache_dir": str(tmp_path / "cache"), "train.epochs": 4,
                                     "train.probe_epochs": 2, "optim.encoder_lr_scale": 0.25, **overrides})
    return make


def assert_same(a: list, b: list) -> None:
    assert [r.epoch for r in a] == [r.epoch for r in b]
    for x, y in zip(a, b, strict=True):
        assert y.train_loss == pytest.approx(x.train_loss, abs=1e-6)
        np.testing.assert_allclose(y.outputs, x.outputs, atol=1e-6)
        assert y.metrics == pytest.approx(x.metrics, abs=1e-6)


def test_the_first_epochs_are_the_probes_then_the_encoder_trains(lpft_config: Callable[..., Config]) -> None:
    config = lpft_config()
    data = prepare_data(config)
    probe = config.with_overrides({"model.freeze_encoder": True, "train.probe_epochs": 0, "train.epochs": 2})
    before = frozen.encoded_clips
    lpft = list(train_fold(config, data, data.splits.folds[0]))
    assert frozen.encoded_clips - before == len(data.targets)  # the probe epochs ran from the cache
    assert_same(list(train_fold(probe, data, data.splits.folds[0])), lpft[:2])
    assert set(lpft[1].state["model"]) == {k for k in lpft[2].state["model"] if k.startswith(("head.", "mix."))}
    assert any(k.startswith("encoder.") for k in lpft[2].state["model"])  # then the whole classifier
    groups = lpft[2].state["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == pytest.approx([config.optim.lr, 0.25 * config.optim.lr])
    encoder = "encoder.layers.0.fc1.weight"
    moved = (lpft[3].state["model"][encoder] - lpft[2].state["model"][encoder]).abs().max()
    assert moved > 0  # the encoder trains in the fine-tuning epochs
    assert len({round(r.train_loss, 6) for r in lpft}) == 4


def test_fine_tuning_has_a_schedule_of_its_own(lpft_config: Callable[..., Config]) -> None:
    config = lpft_config(**{"optim.warmup_ratio": 0.0, "optim.min_lr_ratio": 0.0})
    data = prepare_data(config)
    results = list(train_fold(config, data, data.splits.folds[0]))
    lr = [r.state["optimizer"]["param_groups"][0]["lr"] for r in results]
    # cosine to 0 over each phase's steps: both phases end at the floor, the second starts again from the peak
    assert lr[1] == pytest.approx(0.0, abs=1e-12) and lr[3] == pytest.approx(0.0, abs=1e-12)
    assert lr[2] > 0.4 * config.optim.lr


@pytest.mark.parametrize("resume_after", [1, 2, 3])
def test_resumed_in_either_phase_gives_the_same_numbers(lpft_config: Callable[..., Config],
                                                        resume_after: int) -> None:
    config = lpft_config()
    data = prepare_data(config)
    fold = data.splits.folds[1]
    whole = list(train_fold(config, data, fold))
    resumed = list(train_fold(config, data, fold, resume=whole[resume_after - 1].state))
    assert_same(whole[resume_after:], resumed)


def test_the_best_probe_epoch_is_a_whole_classifier(lpft_config: Callable[..., Config], toy_data: AudioData) -> None:
    config = lpft_config(**{"optim.lr": 1e-1, "train.select": "best"})
    data = prepare_data(config)
    results = list(train_fold(config, data, data.splits.folds[0]))
    model = results[-1].model  # whichever epoch was best, phase one's included: it reads waveforms
    assert any(k.startswith("encoder.") for k in model.state_dict())


def test_final_training_follows_both_phases(lpft_config: Callable[..., Config]) -> None:
    """tune.final trains with train_fold on the development rows and no validation: the same two phases."""
    config = lpft_config(**{"train.stop_epoch": 3})
    data = prepare_data(config)
    fold = Fold(index=0, train=data.splits.development, valid=np.zeros(0, dtype=np.int64))
    encoder, epochs = [], []
    for result in train_fold(config, data, fold):  # a result's model is read as it comes, as tune.final does
        epochs.append(result.epoch)
        encoder.append(result.model.state_dict()["encoder.layers.0.fc1.weight"].clone())
    assert epochs == [1, 2, 3]
    assert torch.equal(encoder[0], encoder[1])  # the probe epochs: the pretrained encoder
    assert not torch.equal(encoder[2], encoder[1])  # then it is fine-tuned


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train.probe_epochs": 4}, r"^train.probe_epochs=4: must be in \[0, train.epochs=4\)"),
    ({"model.freeze_encoder": True}, r"^train.probe_epochs=2: LP-FT fine-tunes the encoder"),
    ({"model.name": "resnet50", "model.pretrained": "none"}, r"^train.probe_epochs=2: LP-FT needs"),
    ({"optim.encoder_lr_scale": 0.0}, r"^optim.encoder_lr_scale=0.0: must be in \(0, 1\]"),
])
def test_bad_lpft_settings_name_the_field(lpft_config: Callable[..., Config], overrides: dict,
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(lpft_config().with_overrides(overrides))
