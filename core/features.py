"""Featurizer on the training device, always in fp32: log-mel from cached waveforms, SpecAugment on training batches
only, then the optional age/word rows (never masked)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from core.config import AugmentConfig, Config
from core.data.batches import Batch
from core.registry import Registry


def fp32(device: torch.device) -> torch.autocast:
    """Autocast off: features are computed in fp32 whatever precision the model runs in. Under fp16 autocast the
    mel matmul ran in fp16, where the power floor 1e-10 is 0, so a silent clip gave -inf features."""
    return torch.autocast(device_type=device.type, enabled=False)


def real_frames(lengths: torch.Tensor, hop_length: int, frames: int) -> torch.Tensor:
    """[B] log-mel frames of real audio, the one definition every part uses (the clip normalisation, SpecAugment's
    time masks, Whisper's pooling and so the probe's cache): frame t of the centred STFT is centred on sample
    t * hop and is real when that sample is one of the clip's `lengths` real samples (exact zeros inside a clip,
    a noise gate's, are audio); at least 1, at most `frames`."""
    return torch.div(lengths + hop_length - 1, hop_length, rounding_mode="floor").clamp(1, frames)


class WhisperLogMel(nn.Module):
    """Whisper's log-mel recipe (slaney mels, log10, 8-decade floor below the clip's max, (x + 4) / 4), cropped
    or padded to exactly `frames` frames: pretrained Whisper weights expect this input distribution."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.hop_length = hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0,
            norm="slaney", mel_scale="slaney", center=True)

    def forward(self, waveforms: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """`real`: each clip's real frames (`real_frames`); Whisper's recipe does not use them."""
        spec = self.mel(waveforms.float())[..., : self.frames]
        if spec.shape[-1] < self.frames:
            spec = nn.functional.pad(spec, (0, self.frames - spec.shape[-1]))
        log = spec.clamp(min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


class ClipNormalizedLogMel(WhisperLogMel):
    """Whisper's log-mel, then normalised per clip over its real frames: each mel band's mean removed (the
    microphone's and the room's colouring, the speaker's vocal tract, all constant over a word) and the clip scaled
    to unit variance; padding frames read 0. For models trained from scratch: per-clip statistics are what the
    data card's baselines use. The real frames come from the clip's length (`real_frames`), as for pooling."""

    def forward(self, waveforms: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if real is None:
            raise ValueError("ClipNormalizedLogMel needs each clip's real frames: real_frames(batch.lengths, ...)")
        log = super().forward(waveforms)
        mask = (torch.arange(log.shape[-1], device=log.device)[None, :] < real[:, None])
        mask = mask.unsqueeze(-2).to(log.dtype)  # [B, 1, frames]
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
        centred = (log - (log * mask).sum(dim=-1, keepdim=True) / count) * mask
        std = (centred.pow(2).sum(dim=(-2, -1), keepdim=True) / (count * log.shape[-2])).sqrt()
        return centred / (std + 1e-5)


# features.normalize -> the log-mel recipe.
LOG_MELS: Registry[type[WhisperLogMel]] = Registry("log-mel normalisation")
LOG_MELS.register("whisper")(WhisperLogMel)
LOG_MELS.register("clip")(ClipNormalizedLogMel)


def mask_along(features: torch.Tensor, widest: int, dim: int, extent: torch.Tensor | None = None) -> torch.Tensor:
    """One mask per example along `dim` of [batch, freq, time], filled with 0, within the first `extent[b]` positions
    of example b (default: the whole axis; time masks pass each clip's real frames, so no mask lands on padding and
    augmentation strength does not depend on the clip's length): width uniform over 0..`widest` inclusive (capped
    at that extent), start uniform over every position where that width fits, so the last bin or real frame is as
    likely to be covered as any other. Draws from the global torch RNG (`FoldRandom` seeds it). (torchaudio's masks
    are at most `param - 1` wide, never reach the last position and know no lengths.)"""
    batch, size = features.shape[0], features.shape[dim]
    device = features.device
    extent = torch.full((batch,), size, device=device) if extent is None else extent.to(device).clamp(0, size)
    width = (torch.rand(batch, device=device) * (extent.clamp(max=widest) + 1)).floor().long()
    start = (torch.rand(batch, device=device) * (extent - width + 1)).floor().long()
    positions = torch.arange(size, device=device)
    covered = (positions >= start[:, None]) & (positions < (start + width)[:, None])  # [batch, size]
    shape = [batch, 1, 1]
    shape[dim] = size
    return features.masked_fill(covered.view(shape), 0.0)


class SpecAugment(nn.Module):
    """`time_masks` time masks of 0..`time_mask` frames within each clip's real frames and `freq_masks` frequency
    masks of 0..`freq_mask` bins (widths inclusive), independently per example. A no-op in eval mode, so validation
    and test are deterministic."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.time_mask, self.freq_mask = config.time_mask, config.freq_mask
        self.time_masks = config.time_masks if config.time_mask > 0 else 0
        self.freq_masks = config.freq_masks if config.freq_mask > 0 else 0

    def forward(self, features: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """`real`: each example's real frames (`real_frames`); None: every frame is real."""
        if not self.training:
            return features
        for _ in range(self.time_masks):
            features = mask_along(features, self.time_mask, dim=2, extent=real)
        for _ in range(self.freq_masks):
            features = mask_along(features, self.freq_mask, dim=1)
        return features


def log_mel_frames(config: Config) -> int:
    """Frames a clip of `data.max_seconds` gives at `features.hop_length` (the centred STFT's extra frame dropped)."""
    return int(round(config.data.sample_rate * config.data.max_seconds)) // config.features.hop_length


class LogMelFeaturizer(nn.Module):
    """batch -> log-mel [B, n_mels, frames] -> SpecAugment (training only) -> conditioning rows (age, word), if
    any. The rows join after augmentation, as in the original recipe: a masked row would read 0, which is a real
    code (the youngest training age, word id 0). Takes the whole batch because the rows come from it."""

    def __init__(self, log_mel: WhisperLogMel, augment: SpecAugment, rows: nn.Module | None = None) -> None:
        super().__init__()
        self.log_mel = log_mel
        self.augment = augment
        self.rows = rows  # (spectrogram, batch) -> spectrogram with conditioning rows appended

    def real_frames(self, batch: Batch) -> torch.Tensor:
        """[B] each clip's real log-mel frames, from its length (`real_frames`)."""
        return real_frames(batch.lengths, self.log_mel.hop_length, self.log_mel.frames)

    def forward(self, batch: Batch) -> torch.Tensor:
        with fp32(batch.waveforms.device):
            real = self.real_frames(batch)
            spectrogram = self.augment(self.log_mel(batch.waveforms.float(), real), real)
            return self.rows(spectrogram, batch) if self.rows is not None else spectrogram


def build_log_mel_featurizer(config: Config, frames: int, rows: nn.Module | None = None,
                             hop_length: int | None = None) -> nn.Module:
    """Log-mel of `frames` frames at `hop_length` (default `features.hop_length`), then SpecAugment, then `rows`."""
    f = config.features
    log_mel = LOG_MELS.get(f.normalize)(config.data.sample_rate, f.n_fft, hop_length or f.hop_length, f.n_mels, frames)
    return LogMelFeaturizer(log_mel, SpecAugment(config.augment), rows)


class WaveformNormalizer(nn.Module):
    """batch -> waveforms at zero mean and unit variance over each clip's real samples, padding left at 0: the
    input Wav2Vec2 was pretrained on (statistics over the padding would shrink short clips)."""

    def __init__(self, epsilon: float = 1e-7) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, batch: Batch) -> torch.Tensor:
        waves = batch.waveforms.float()  # elementwise only: autocast leaves it in fp32
        real = torch.arange(waves.shape[-1], device=waves.device)[None, :] < batch.lengths[:, None]
        count = real.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = (waves * real).sum(dim=-1, keepdim=True) / count
        variance = ((waves - mean) ** 2 * real).sum(dim=-1, keepdim=True) / count
        return torch.where(real, (waves - mean) / torch.sqrt(variance + self.epsilon), torch.zeros_like(waves))
