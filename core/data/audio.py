"""Decoding one clip: soundfile -> mean of channels -> resample -> crop/pad. Done once, at cache-build time."""

from __future__ import annotations

import numpy as np
import soundfile
import torch
import torchaudio

from core.errors import DataError


class ClipDecoder:
    """Decodes clips to mono float32 at `sample_rate`, `num_samples` long; keeps one resampler per source rate
    (building the resampling kernel is the expensive part)."""

    def __init__(self, sample_rate: int, num_samples: int) -> None:
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self._resamplers: dict[int, torchaudio.transforms.Resample] = {}

    def __call__(self, path: str) -> tuple[np.ndarray, int]:
        """Return (waveform of exactly `num_samples`, how many of them are real audio)."""
        try:
            audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as error:
            raise DataError(f"audio file {path} cannot be decoded ({error})") from error
        if audio.shape[0] == 0:
            raise DataError(f"audio file {path} is empty (0 samples)")
        mono = audio.mean(axis=1)
        if not np.isfinite(mono).all():
            raise DataError(f"audio file {path} contains NaN or infinite samples")
        if rate != self.sample_rate:
            mono = self._resample(mono, rate)
        length = min(len(mono), self.num_samples)
        out = np.zeros(self.num_samples, dtype=np.float32)
        out[:length] = mono[:length]
        return out, length

    def _resample(self, mono: np.ndarray, rate: int) -> np.ndarray:
        if rate not in self._resamplers:
            self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.sample_rate)
        with torch.no_grad():
            return self._resamplers[rate](torch.from_numpy(mono)).numpy()
