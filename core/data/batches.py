"""Batches straight from the memory-mapped cache: no DataLoader workers, nothing decoded per epoch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from core.data.dataset import AudioData


@dataclass
class Batch:
    rows: np.ndarray  # manifest row numbers
    waveforms: torch.Tensor  # [B, samples] float32
    lengths: torch.Tensor  # [B] real (unpadded) samples
    targets: torch.Tensor  # [B] int64 class ids or float32 values
    word_ids: torch.Tensor  # [B]
    ages: torch.Tensor  # [B] float32 (NaN if unknown)


def make_batch(data: AudioData, rows: np.ndarray, device: torch.device) -> Batch:
    rows = np.sort(rows)  # ascending reads are kinder to the page cache; order within a batch is irrelevant
    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)
    return Batch(rows=rows, waveforms=put(data.waveforms[rows]), lengths=put(data.waveforms.lengths[rows]),
                 targets=put(data.targets[rows]), word_ids=put(data.word_ids[rows]), ages=put(data.ages[rows]))


def batch_rows(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Split `rows` into batches, in a fresh random order when `rng` is given (training), else in order."""
    order = rng.permutation(rows) if rng is not None else rows
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
