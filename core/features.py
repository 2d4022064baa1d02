"""Featurizer on the training device: log-mel from cached waveforms, then SpecAugment on training batches only."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from core.config import AugmentConfig, Config
from core.data.batches import Batch


class WhisperLogMel(nn.Module):
    """Whisper's log-mel recipe (slaney mels, log10, 8-decade floor below the clip's max, (x + 4) / 4), cropped
    or padded to exactly `frames` frames: pretrained Whisper weights expect this input distribution."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0,
            norm="slaney", mel_scale="slaney", center=True)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = self.mel(waveforms.float())[..., : self.frames]
        if spec.shape[-1] < self.frames:
            spec = nn.functional.pad(spec, (0, self.frames - spec.shape[-1]))
        log = spec.clamp(min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


class SpecAugment(nn.Module):
    """`time_masks` time masks up to `time_mask` frames and `freq_masks` frequency masks up to `freq_mask` bins,
    independently per example. A no-op in eval mode, so validation and test are deterministic."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.time = torchaudio.transforms.TimeMasking(config.time_mask, iid_masks=True)
        self.freq = torchaudio.transforms.FrequencyMasking(config.freq_mask, iid_masks=True)
        self.time_masks = config.time_masks if config.time_mask > 0 else 0
        self.freq_masks = config.freq_masks if config.freq_mask > 0 else 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or not (self.time_masks or self.freq_masks):
            return features
        x = features.unsqueeze(1)  # iid masks need [batch, channel, freq, time]
        for _ in range(self.time_masks):
            x = self.time(x)
        for _ in range(self.freq_masks):
            x = self.freq(x)
        return x.squeeze(1)


def log_mel_frames(config: Config) -> int:
    """Frames a clip of `data.max_seconds` gives at `features.hop_length` (the centred STFT's extra frame dropped)."""
    return int(round(config.data.sample_rate * config.data.max_seconds)) // config.features.hop_length


class LogMelFeaturizer(nn.Module):
    """batch -> log-mel [B, n_mels, frames] -> SpecAugment (training only). Takes the whole batch so that
    conditioning rows (age, word) can join the spectrogram before augmentation."""

    def __init__(self, log_mel: WhisperLogMel, augment: SpecAugment, rows: nn.Module | None = None) -> None:
        super().__init__()
        self.log_mel = log_mel
        self.augment = augment
        self.rows = rows  # (spectrogram, batch) -> spectrogram with conditioning rows appended

    def forward(self, batch: Batch) -> torch.Tensor:
        spectrogram = self.log_mel(batch.waveforms)
        if self.rows is not None:
            spectrogram = self.rows(spectrogram, batch)
        return self.augment(spectrogram)


def build_log_mel_featurizer(config: Config, frames: int, rows: nn.Module | None = None,
                             hop_length: int | None = None) -> nn.Module:
    """Log-mel of `frames` frames at `hop_length` (default `features.hop_length`), then `rows`, then SpecAugment."""
    f = config.features
    log_mel = WhisperLogMel(config.data.sample_rate, f.n_fft, hop_length or f.hop_length, f.n_mels, frames)
    return LogMelFeaturizer(log_mel, SpecAugment(config.augment), rows)


class WaveformNormalizer(nn.Module):
    """batch -> waveforms at zero mean and unit variance over each clip's real samples, padding left at 0: the
    input Wav2Vec2 was pretrained on (statistics over the padding would shrink short clips)."""

    def __init__(self, epsilon: float = 1e-7) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, batch: Batch) -> torch.Tensor:
        waves = batch.waveforms.float()
        real = torch.arange(waves.shape[-1], device=waves.device)[None, :] < batch.lengths[:, None]
        count = real.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = (waves * real).sum(dim=-1, keepdim=True) / count
        variance = ((waves - mean) ** 2 * real).sum(dim=-1, keepdim=True) / count
        return torch.where(real, (waves - mean) / torch.sqrt(variance + self.epsilon), torch.zeros_like(waves))
