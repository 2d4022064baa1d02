"""Decoding one clip: soundfile -> mean of channels -> resample -> crop/pad. Done once, at cache-build time.

Only the head that is kept is read from the file (plus the resampler's reach past the cut), so a 3-hour recording
costs as much memory as a clip of `num_samples`, and its kept part equals the head of decoding the whole file.
"""

from __future__ import annotations

import io
import math

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

    def __call__(self, path: str, data: bytes | None = None) -> tuple[np.ndarray, int]:
        """Return (waveform of exactly `num_samples`, how many of them are real audio); from `data`, the encoded
        file's bytes, when given (then `path` only names the clip)."""
        try:
            with soundfile.SoundFile(io.BytesIO(data) if data is not None else path) as file:
                rate = file.samplerate
                audio = file.read(self._frames_to_read(rate), dtype="float32", always_2d=True)
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

    def _frames_to_read(self, rate: int) -> int:
        """Source frames that determine the first `num_samples` output samples."""
        if rate == self.sample_rate:
            return self.num_samples
        # Each block of output samples is a strided convolution whose kernel spans `kernel.shape[-1]` source
        # frames; reading one kernel past the cut's source position gives the kept outputs all their real input.
        return math.ceil(self.num_samples * rate / self.sample_rate) + self._resampler(rate).kernel.shape[-1]

    def _resampler(self, rate: int) -> torchaudio.transforms.Resample:
        if rate not in self._resamplers:
            self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.sample_rate)
        return self._resamplers[rate]

    def _resample(self, mono: np.ndarray, rate: int) -> np.ndarray:
        with torch.no_grad():
            return self._resampler(rate)(torch.from_numpy(mono)).numpy()
