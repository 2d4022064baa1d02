"""The log-mel front end computed once per clip per fold instead of every epoch.

The log-mel of a cached waveform is deterministic (no randomness, fixed settings for the whole fold), so a fold
that trains for E epochs and validates after each computes it E times for every clip. `CachedLogMelFeaturizer`
keeps each clip's log-mel the first time a batch holds it and reads it back afterwards; SpecAugment and the age/word
rows still run per batch, after the lookup, in the same order as `LogMelFeaturizer`, drawing the same random
numbers, so a fold trains exactly as it does without the cache. On a micro Whisper from scratch the log-mel is
~17-29 % of a CPU training step.

The cache is keyed by manifest row, so it belongs to one `AudioData`: train_fold uses it for its own training and
validation batches only; the featurizer it returns (and a model folder saves) is the plain one.
"""

from __future__ import annotations

import torch
from torch import nn

from core.data.batches import Batch
from core.data.dataset import AudioData
from core.features import LogMelFeaturizer, fp32

# Clips x mels x frames x 4 bytes above which the fold computes the log-mel per batch as before: the demo set is
# ~80 MB (1,200 clips x 80 mels x 200 frames); a large set at 30 s clips would not fit.
MAX_CACHE_BYTES = 1 << 30


class CachedLogMelFeaturizer(nn.Module):
    """`featurizer` (a `LogMelFeaturizer`) with its log-mel remembered per manifest row of `data`. Has no state of
    its own to save: the cache is a plain attribute, rebuilt by a resumed fold."""

    def __init__(self, featurizer: LogMelFeaturizer, num_clips: int) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.num_clips = num_clips
        self.values: torch.Tensor | None = None  # [clips, n_mels, frames], allocated on the first batch
        self.known: torch.Tensor | None = None  # [clips] bool: rows whose log-mel is in `values`

    def log_mel(self, batch: Batch) -> torch.Tensor:
        device = batch.waveforms.device
        rows = torch.as_tensor(batch.rows, dtype=torch.long, device=device)
        if self.values is None or self.known is None:
            first = self.featurizer.log_mel(batch.waveforms.float())
            self.values = first.new_zeros((self.num_clips, *first.shape[1:]))
            self.known = torch.zeros(self.num_clips, dtype=torch.bool, device=device)
            self.values[rows], self.known[rows] = first, True
            return first
        missing = ~self.known[rows]
        if bool(missing.all()):  # the whole batch is new (the first epoch): computed exactly as without the cache
            spectrogram = self.featurizer.log_mel(batch.waveforms.float())
            self.values[rows], self.known[rows] = spectrogram, True
            return spectrogram
        if bool(missing.any()):
            self.values[rows[missing]] = self.featurizer.log_mel(batch.waveforms[missing].float())
            self.known[rows[missing]] = True
        return self.values[rows]

    def forward(self, batch: Batch) -> torch.Tensor:
        with fp32(batch.waveforms.device):
            spectrogram = self.featurizer.augment(self.log_mel(batch))
            rows = self.featurizer.rows
            return rows(spectrogram, batch) if rows is not None else spectrogram


def cached_front_end(featurizer: nn.Module, data: AudioData) -> nn.Module:
    """The featurizer train_fold runs its batches through: the cached log-mel when `featurizer` is a log-mel one
    and every clip's log-mel fits in `MAX_CACHE_BYTES`; else `featurizer` itself (e.g. Wav2Vec2's waveforms)."""
    if not isinstance(featurizer, LogMelFeaturizer):
        return featurizer
    log_mel = featurizer.log_mel
    if len(data.targets) * log_mel.mel.n_mels * log_mel.frames * 4 > MAX_CACHE_BYTES:
        return featurizer
    return CachedLogMelFeaturizer(featurizer, len(data.targets))
