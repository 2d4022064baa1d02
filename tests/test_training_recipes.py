"""Recipes right in every corner: SpecAugment never masks the age/word rows and its widths mean what they say,
SAM's two passes see one set of features and update BatchNorm statistics once, the featurizer is fp32 under any
autocast, and held-out shares are the shares asked for."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from core.config import Config
from core.data.batches import make_batch
from core.data.dataset import AudioData
from core.features import SpecAugment
from core.models import MODELS
from core.statistics import FoldStatistics

ConfigFactory = Callable[..., Config]
CPU = torch.device("cpu")
ROWS = {"features.conditioning": "rows", "features.n_mels": 78}
RESNET = {"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024, "train.batch_size": 2,
          "train.eval_batch_size": 4}


def featurizer_of(config: Config, data: AudioData, train: np.ndarray) -> nn.Module:
    return MODELS.get(config.model.name).featurizer(config, FoldStatistics.from_data(data, train))


# --- 1. the age/word rows join after SpecAugment ----------------------------------------------------------------
def test_spec_augment_never_masks_the_conditioning_rows(toy_data: AudioData,
                                                        toy_config_factory: ConfigFactory) -> None:
    masks = {"augment.time_mask": 40, "augment.time_masks": 2, "augment.freq_mask": 40, "augment.freq_masks": 2}
    config = toy_config_factory(**ROWS, **masks, **{"features.age_momentum": 0.5})
    fold = toy_data.splits.folds[0]
    featurizer = featurizer_of(config, toy_data, fold.train)
    batch = make_batch(toy_data, fold.train[:16], CPU)
    clean = featurizer.eval()(batch)
    torch.manual_seed(0)
    augmented = featurizer.train()(batch)
    stats = FoldStatistics.from_data(toy_data, fold.train)
    ages = (batch.ages - stats.age_min) / (stats.age_max - stats.age_min) * 0.5
    words = batch.word_ids.float() / (stats.num_words - 1)
    frames = augmented.shape[-1]
    assert augmented.shape[1] == 80 and len(set(ages.tolist())) > 1
    torch.testing.assert_close(augmented[:, 78], ages[:, None].expand(-1, frames), rtol=0, atol=0)
    torch.testing.assert_close(augmented[:, 79], words[:, None].expand(-1, frames), rtol=0, atol=0)
    mel_changed = augmented[:, :78] != clean[:, :78]
    assert mel_changed.float().mean() > 0.2, "the mel rows were not masked"
    assert torch.all(augmented[:, :78][mel_changed] == 0)


# --- 5. SpecAugment widths: 0..N inclusive ----------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["freq", "time"])
def test_widest_mask_is_the_configured_width(axis: str) -> None:
    """One mask per example on all-ones features: its width (zeroed bins or frames) runs over 0..N inclusive, about
    equally often, never beyond N, and every bin or frame (the last included) can be covered."""
    widest = 5
    augment = SpecAugment(Config().with_overrides({f"augment.{axis}_mask": widest, f"augment.{axis}_masks": 1})
                          .augment).train()
    torch.manual_seed(0)
    masked = augment(torch.ones(4000, 20, 30)) == 0  # [example, bin, frame]
    along = 1 if axis == "freq" else 2
    widths = masked.any(dim=3 - along).sum(dim=-1)
    assert int(widths.max()) == widest
    counts = torch.bincount(widths)
    assert len(counts) == widest + 1 and int(counts.min()) > 0.8 * len(widths) / (widest + 1)
    covered = masked.any(dim=0).any(dim=3 - along - 1)
    assert bool(covered.all()), f"never masked: {torch.flatnonzero(~covered).tolist()}"


# --- 3. the featurizer runs in fp32 under any autocast ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_featurizer_is_fp32_under_autocast(dtype: torch.dtype, toy_data: AudioData,
                                           toy_config_factory: ConfigFactory) -> None:
    """An all-silent clip in fp16 floored its power at 1e-10, which is 0 in fp16: log10 gave -inf."""
    fold = toy_data.splits.folds[0]
    featurizer = featurizer_of(toy_config_factory(), toy_data, fold.train).eval()
    speech = make_batch(toy_data, fold.train[:4], CPU)
    silent = dataclasses.replace(speech, waveforms=torch.zeros_like(speech.waveforms))
    for batch in (silent, speech):
        reference = featurizer(batch)
        with torch.autocast("cpu", dtype=dtype):
            features = featurizer(batch)
        assert features.dtype == torch.float32
        assert bool(torch.isfinite(features).all())
        torch.testing.assert_close(features, reference, rtol=0, atol=0)


