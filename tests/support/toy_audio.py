"""The toy dataset of the tests (and of bench/data_path.py when the demo set is absent): real audio files whose
label is audible, so a micro Whisper learns it in a few CPU epochs, while speakers, words, ages, sample rates,
channel counts, formats and durations vary the way real manifests do. Plain module (no pytest) so scripts can
import it too."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from core.checks import check_config, ignored_keys
from core.config import Config

WORDS = ("rabbit", "sun", "cat")
SPEAKERS = 12
RATE = 16000
HIGH_RATE = 44100
STEREO_SPEAKERS = {0, 5}  # their clips are stereo 44.1 kHz FLAC with different channels
WAV_CLIP = (1, 0)  # (speaker, word index) written as the one WAV file


def toy_label(speaker: int, word: int) -> str:
    """Every speaker says both classes (so any speaker-grouped fold sees both), in a speaker-dependent mix."""
    return "abnormal" if (speaker * 7 + word * 3) % 5 < 2 else "normal"


def toy_signal(speaker: int, word: int, label: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced tone (pitch by speaker, formant by word); abnormal clips add a loud 4-6 kHz noise band."""
    seconds = 0.6 + 0.4 * ((speaker + 2 * word) % 3)  # 0.6, 1.0 or 1.4 s: padded, exact and cropped at 1 s
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 180.0 + 12.0 * (speaker % 20)
    formant = (500.0, 900.0, 1300.0)[word]
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k * (2.0 if abs(f0 * k - formant) < 200 else 1.0)
                for k in range(1, 8))
    signal = voice + 0.02 * rng.standard_normal(len(t))
    if label == "abnormal":
        noise = np.fft.rfft(rng.standard_normal(len(t)))
        freqs = np.fft.rfftfreq(len(t), 1 / rate)
        noise[(freqs < 4000) | (freqs > 6000)] = 0
        band = np.fft.irfft(noise, len(t))
        signal = signal + 3.0 * band / np.abs(band).max()
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms fades
    signal = signal * envelope
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def write_toy_dataset(folder: Path, seed: int = 0, speakers: int = SPEAKERS) -> Path:
    """Write the toy clips under `folder/audio` and `folder/manifest.csv` (relative paths); return the manifest.
    (bench/data_path.py also uses this, with more speakers, when the demo set is absent.)"""
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for speaker in range(speakers):
        for w, word in enumerate(WORDS):
            label = toy_label(speaker, w)
            name = f"audio/s{speaker:02d}_{word}"
            if speaker in STEREO_SPEAKERS:
                mono = toy_signal(speaker, w, label, HIGH_RATE, rng)
                audio = np.stack([mono, 0.5 * mono], axis=1)  # channels differ: mixing must average them
                soundfile.write(folder / f"{name}.flac", audio, HIGH_RATE)
                path = f"{name}.flac"
            elif (speaker, w) == WAV_CLIP:
                soundfile.write(folder / f"{name}.wav", toy_signal(speaker, w, label, RATE, rng), RATE)
                path = f"{name}.wav"
            else:
                soundfile.write(folder / f"{name}.flac", toy_signal(speaker, w, label, RATE, rng), RATE)
                path = f"{name}.flac"
            rows.append({"path": path, "label": label, "age": round(3.0 + 0.35 * speaker, 2), "word": word,
                         "speaker": f"spk{speaker:02d}"})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "age", "word", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def make_toy_config(manifest: Path, cache_dir: Path, **overrides: Any) -> Config:
    """A tiny, CPU-fast config on `manifest`: micro Whisper, 1 s clips, 3 folds; `overrides` are dotted keys."""
    base = {
        "data.manifest": str(manifest), "data.cache_dir": str(cache_dir), "data.max_seconds": 1.0,
        "data.k_fold": 3, "data.test_size": 0.2, "data.seed": 0,
        "model.size": "micro", "model.projection_dim": 32, "model.dropout": 0.0,
        "optim.lr": 2e-3, "optim.warmup_ratio": 0.1,
        "train.epochs": 3, "train.batch_size": 8, "train.device": "cpu", "train.seed": 0,
    }
    config = Config().with_overrides({**base, **overrides})
    # The base's own settings (the micro size preset) only where the chosen model reads them (core.checks refuses
    # an inert setting): a pretrained or resnet50 config does not take a size.
    inert = {key: Config().get(key) for key in ignored_keys(config) if key in base and key not in overrides}
    return check_config(config.with_overrides(inert))
