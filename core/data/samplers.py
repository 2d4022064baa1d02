"""Training batch samplers by name: which rows go together in a batch (e.g. the contrastive loss needs pairs of
the same word in a batch). Evaluation never uses them: it reads rows in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from core.data.batches import batch_rows
from core.data.dataset import AudioData
from core.registry import Registry

Sampler = Callable[[AudioData, np.ndarray, int, np.random.Generator], Iterator[np.ndarray]]
SAMPLERS: Registry[Sampler] = Registry("batch sampler")


@SAMPLERS.register("random")
def random_batches(data: AudioData, rows: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A fresh random order of the training rows every epoch."""
    return batch_rows(rows, batch_size, rng)
