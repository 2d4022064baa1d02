"""One notion of real audio (issue 21, items 3 and 4), from `batch.lengths`: a 0.83 s clip whose last 0.2 s are
exact zeros (a noise gate) is 0.83 s of audio for the clip normalisation, for Whisper's pooling and for SpecAugment,
whose time masks are drawn within each clip's real frames (not over the padded window)."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.config import Config
from core.data.batches import Batch
from core.models import MODELS

RATE, HOP, WINDOW = 16000, 160, 2.0
SECONDS, GATED = 0.83, 0.2


def gated_batch(clips: int = 1) -> Batch:
    """`clips` copies of a 0.83 s clip (noise, then 0.2 s of exact zeros) in a 2 s window, length 0.83 s."""
    rng = np.random.default_rng(0)
    length = int(round(SECONDS * RATE))
    waves = torch.zeros(clips, int(WINDOW * RATE))
    waves[:, :length - int(GATED * RATE)] = torch.tensor(rng.normal(0, 0.1, length - int(GATED * RATE)),
                                                         dtype=torch.float32)
    return Batch(rows=np.arange(clips), waveforms=waves, lengths=torch.full((clips,), length),
                 targets=torch.zeros(clips, dtype=torch.int64), word_ids=torch.zeros(clips, dtype=torch.int64),
                 ages=torch.full((clips,), float("nan")))


def config(**overrides: object) -> Config:
    return Config().with_overrides({"data.max_seconds": WINDOW, "model.size": "micro", "model.projection_dim": 8,
                                    **overrides})


def test_normalisation_and_pooling_count_the_same_real_frames() -> None:
    batch = gated_batch()
    real_mel = math.ceil(SECONDS * RATE / HOP)  # 83: frames t whose centre t * 160 lies in the clip's 13,280 samples
    cfg = config(**{"features.normalize": "clip"})
    features = MODELS.get("whisper").featurizer(cfg).eval()(batch)
    normalised = int((features[0] != 0).any(dim=0).sum())  # the clip normalisation leaves padding frames at 0
    model = MODELS.get("whisper").build(cfg, 2).eval()
    pooled = int(model.real_frames(batch.lengths, features.shape[-1] // 2)[0])  # encoder frames (2 mel hops each)
    assert normalised == real_mel
    assert pooled == math.ceil(real_mel / 2)


def test_time_masks_are_drawn_within_each_clips_real_frames() -> None:
    batch = gated_batch(400)
    cfg = config(**{"augment.time_mask": 20, "augment.time_masks": 1})
    featurizer = MODELS.get("whisper").featurizer(cfg)
    clean = featurizer.eval()(batch)
    torch.manual_seed(0)
    masked = (featurizer.train()(batch) != clean).any(dim=1)  # [clip, frame]: a frame any mask changed
    real_mel = math.ceil(SECONDS * RATE / HOP)
    touched = masked.any(dim=1)
    assert touched.float().mean() > 0.85  # widths 1..20 of 0..20: ~95 % of masks are non-empty
    assert not masked[:, real_mel:].any()  # no mask lands on the padding
    assert bool(masked[touched, :real_mel].any(dim=1).all())  # every non-empty mask touches real audio
    assert bool(masked[:, real_mel - 1].any())  # the last real frame can be masked
