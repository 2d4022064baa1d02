"""The log-mel front end computed once per clip per trial instead of every epoch of every fold.

The log-mel of a cached waveform is deterministic (no randomness, settings fixed for the whole trial), so a trial
of k folds that train for E epochs and validate after each computed it k x E times for every clip. Now the first
batch of any fold that holds a clip computes its log-mel and keeps it in a `LogMelStore`; every later batch, of that
fold or another, reads it back. The store belongs to the trial's `AudioData` (`data.log_mels`), which tune's folds
gives every fold of the trial, keyed by the front end's settings (`front_end_key`): two front ends (another n_mels,
n_fft, hop, clip length, device) never share values. It lives on the CPU, in pinned pages when training on CUDA,
and each batch's rows are copied to the device: k folds on one GPU hold no device copy of it.

SpecAugment and the age/word rows still run per batch, after the lookup, in the same order as `LogMelFeaturizer`,
drawing the same random numbers, so a fold trains exactly as it does without the cache (bit for bit on the CPU:
tests/core/test_log_mel_cache.py). On a micro Whisper from scratch the log-mel is ~17-29 % of a CPU training step.

The cache is keyed by manifest row, so it belongs to one `AudioData`: train_fold uses it for its own training and
validation batches only; the featurizer it returns (and a model folder saves) is the plain one.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from core.data.batches import Batch
from core.data.dataset import AudioData
from core.features import LogMelFeaturizer, WhisperLogMel, fp32

# Clips x mels x frames x 4 bytes above which the fold computes the log-mel per batch as before, and the most one
# AudioData keeps over all its front ends: the demo set is ~80 MB (1,200 clips x 80 mels x 200 frames); a large set
# at 30 s clips would not fit.
MAX_CACHE_BYTES = 1 << 30


def front_end_key(log_mel: WhisperLogMel, device: torch.device) -> tuple:
    """What a clip's log-mel depends on besides the clip: the recipe (its class, which fixes the normalisation), the
    frames it crops or pads to, the STFT's settings, and its window and mel filterbank, which hold the sample rate,
    n_mels, f_min/f_max and the mel norm and scale. The Config fields that shape a front end (data.sample_rate,
    data.max_seconds through Whisper's frames or ResNet's hop, features.n_mels/n_fft/hop_length) all reach it
    through these. And the device: a GPU's values differ from the CPU's in the last bits."""
    stft = log_mel.mel.spectrogram
    buffers = hashlib.sha256()
    for buffer in (stft.window, log_mel.mel.mel_scale.fb):
        buffers.update(repr(tuple(buffer.shape)).encode())
        buffers.update(buffer.detach().cpu().numpy().tobytes())
    settings = (stft.n_fft, stft.win_length, stft.hop_length, stft.pad, stft.power, stft.normalized, stft.center,
                stft.pad_mode, stft.onesided)
    return (type(log_mel).__qualname__, log_mel.frames, *settings, buffers.hexdigest(), device.type)


class LogMelStore:
    """Each clip's log-mel [clips, n_mels, frames] for one front end, on the CPU, and which rows hold one yet."""

    def __init__(self, num_clips: int, shape: tuple[int, int], pinned: bool) -> None:
        # Pinned pages: the copy of a batch's rows to the GPU is one DMA, with no staging copy of its own.
        self.values = torch.empty((num_clips, *shape), dtype=torch.float32, pin_memory=pinned)
        self.known = torch.zeros(num_clips, dtype=torch.bool)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes

    def put(self, rows: torch.Tensor, log_mel: torch.Tensor) -> None:
        self.values[rows] = log_mel.cpu()
        self.known[rows] = True

    def get(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The log-mel of `rows` on `device`. Gathered into a pinned block when the store is pinned, so the copy
        runs asynchronously; torch's pinned-memory allocator keeps the block until that copy is done."""
        gathered = torch.empty((len(rows), *self.values.shape[1:]), pin_memory=self.values.is_pinned())
        torch.index_select(self.values, 0, rows, out=gathered)
        return gathered.to(device, non_blocking=True)


def log_mel_store(data: AudioData, log_mel: WhisperLogMel, device: torch.device) -> LogMelStore | None:
    """`data`'s store for this front end on `device`, created on first use; None when it would not fit in
    `MAX_CACHE_BYTES`. Stores of other front ends are dropped, least recently asked for first, to make room for a
    new one (an earlier trial's config, where an AudioData outlives its trial)."""
    size = len(data.targets) * log_mel.mel.n_mels * log_mel.frames * 4
    if size > MAX_CACHE_BYTES:
        return None
    key = front_end_key(log_mel, device)
    store = data.log_mels.pop(key, None)  # put back last: the dict's order is least recently asked for first
    if store is None:
        while data.log_mels and sum(s.nbytes for s in data.log_mels.values()) + size > MAX_CACHE_BYTES:
            del data.log_mels[next(iter(data.log_mels))]
        store = LogMelStore(len(data.targets), (log_mel.mel.n_mels, log_mel.frames), pinned=device.type == "cuda")
    data.log_mels[key] = store
    return store


class CachedLogMelFeaturizer(nn.Module):
    """`featurizer` (a `LogMelFeaturizer`) with its log-mel read from `store` (the trial's, shared by its folds)
    where a clip has one. Has no state of its own to save: the store is a plain attribute, refilled by a resumed
    trial."""

    def __init__(self, featurizer: LogMelFeaturizer, store: LogMelStore) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.store = store

    def log_mel(self, batch: Batch) -> torch.Tensor:
        device = batch.waveforms.device
        rows = torch.as_tensor(batch.rows, dtype=torch.long)  # on the CPU, where the store is
        missing = ~self.store.known[rows]
        real = self.featurizer.real_frames(batch)
        if bool(missing.all()):  # the whole batch is new (the trial's first epoch): computed exactly as uncached
            spectrogram = self.featurizer.log_mel(batch.waveforms.float(), real)
            self.store.put(rows, spectrogram)
            return spectrogram
        if bool(missing.any()):
            new = missing.to(device)
            self.store.put(rows[missing], self.featurizer.log_mel(batch.waveforms[new].float(), real[new]))
        return self.store.get(rows, device)

    def forward(self, batch: Batch) -> torch.Tensor:
        with fp32(batch.waveforms.device):
            spectrogram = self.featurizer.augment(self.log_mel(batch), self.featurizer.real_frames(batch))
            rows = self.featurizer.rows
            return rows(spectrogram, batch) if rows is not None else spectrogram


def cached_front_end(featurizer: nn.Module, data: AudioData, device: torch.device) -> nn.Module:
    """The featurizer train_fold runs its batches through on `device`: the log-mel from `data`'s store for this
    front end when `featurizer` is a log-mel one and every clip's log-mel fits in `MAX_CACHE_BYTES`; else
    `featurizer` itself (e.g. Wav2Vec2's waveforms)."""
    if not isinstance(featurizer, LogMelFeaturizer):
        return featurizer
    store = log_mel_store(data, featurizer.log_mel, device)
    return featurizer if store is None else CachedLogMelFeaturizer(featurizer, store)
