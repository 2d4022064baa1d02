#!/usr/bin/env python3
"""Measure how learnable the demo dataset is; prints the baselines as JSON.

The demo set must be learnable but not trivial, so we score three baselines
with the same speaker-grouped 5-fold cross-validation
(``StratifiedGroupKFold(5, shuffle=True, random_state=0)``) and balanced
accuracy (UAR):

1. ``age_word``: logistic regression on age + one-hot word.  It never hears the
   audio, so it is the floor a model must beat to be listening at all.
2. ``per_word_logmel``: one logistic regression per word on the log-mel of the
   speech part, stretched to a fixed number of frames.  It is told the word.
3. ``cnn``: a small CNN on 2 s log-mel (80 mels, hop 160 at 16 kHz), trained
   from scratch on CPU; a stand-in for audiotune's demo model.

Usage::

    python bench/calibrate_demo.py --data data/demo
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
from scipy.signal import resample_poly
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

SR = 16_000
CLIP_S = 2.0
HOP = 160
N_MELS = 80


def load_mono(path: Path) -> np.ndarray:
    """Read any clip as mono float32 at 16 kHz (mix channels, resample)."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        ratio = Fraction(SR, sr)
        x = resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    return x


def fixed_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop (centre) or zero-pad (end) to exactly n samples."""
    if x.size >= n:
        start = (x.size - n) // 2
        return x[start : start + n]
    return np.pad(x, (0, n - x.size))


def log_mel(batch: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
    """(clips, samples) -> (clips, 1, mels, frames) log-mel, standardised per clip.

    Statistics come from the real frames only and padded frames are set to 0,
    so the amount of zero padding does not change a clip's scaling.
    """
    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=400, hop_length=HOP, n_mels=N_MELS)
    feats = torch.log(mel(torch.from_numpy(batch)) + 1e-6)
    frames = torch.arange(feats.shape[-1])
    real = (frames[None, :] <= torch.from_numpy(lengths)[:, None] // HOP)[:, None, :]  # (clips, 1, frames)
    count = real.sum(dim=(1, 2), keepdim=True) * feats.shape[1]
    mean = (feats * real).sum(dim=(1, 2), keepdim=True) / count
    var = (((feats - mean) * real) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return torch.where(real, (feats - mean) / (var.sqrt() + 1e-5), 0.0).unsqueeze(1)


def folds(labels: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    return list(cv.split(np.zeros(labels.size), labels, groups))


def summary(scores: list[float]) -> dict[str, float]:
    return {"uar": round(float(np.mean(scores)), 3), "std": round(float(np.std(scores)), 3)}


def age_word_baseline(meta: pd.DataFrame, y: np.ndarray, splits: list) -> dict[str, float]:
    """Logistic regression on age + word: what can be guessed without listening."""
    columns = ColumnTransformer(
        [("word", OneHotEncoder(handle_unknown="ignore"), ["word"]), ("age", StandardScaler(), ["age"])]
    )
    model = make_pipeline(
        columns,
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )
    scores = []
    for train, test in splits:
        model.fit(meta.iloc[train], y[train])
        scores.append(balanced_accuracy_score(y[test], model.predict(meta.iloc[test])))
    return summary(scores)


def speech_frames(feats: np.ndarray, frames: int, drop_db: float = 25.0) -> np.ndarray:
    """Crop a (mels, time) log-mel to its loud part and stretch it to `frames` columns."""
    energy = feats.max(axis=0)
    active = np.flatnonzero(energy > energy.max() - drop_db / 10 * np.log(10))
    seg = feats[:, active[0] : active[-1] + 1]
    pos = np.linspace(0, seg.shape[1] - 1, frames)
    return np.stack([np.interp(pos, np.arange(seg.shape[1]), row) for row in seg])


def per_word_baseline(
    waves: list[np.ndarray], meta: pd.DataFrame, y: np.ndarray, splits: list, frames: int = 16
) -> dict[str, float]:
    """One regularised logistic regression per word on time-normalised log-mel."""
    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=400, hop_length=HOP, n_mels=40)
    feats = []
    for x in waves:
        lm = torch.log(mel(torch.from_numpy(x)) + 1e-6).numpy()
        seg = speech_frames(lm, frames)
        feats.append((seg - seg.mean(axis=1, keepdims=True)).ravel())  # per-band mean removal
    X = np.asarray(feats)
    words = meta["word"].to_numpy()
    scores = []
    for train, test in splits:
        pred = np.zeros(test.size, dtype=int)
        for word in np.unique(words):
            tr, te = train[words[train] == word], test[words[test] == word]
            if np.unique(y[tr]).size < 2:
                pred[words[test] == word] = y[tr][0] if tr.size else 0
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000))
            model.fit(X[tr], y[tr])
            pred[words[test] == word] = model.predict(X[te])
        scores.append(balanced_accuracy_score(y[test], pred))
    return summary(scores)


class SmallCNN(nn.Module):
    """Four conv blocks and global pooling: roughly the size of the demo model."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        blocks: list[nn.Module] = []
        for i in range(4):
            blocks += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1), nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
            if i < 3:
                blocks.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * chans[-1], 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


def cnn_baseline(
    feats: torch.Tensor, y: np.ndarray, splits: list, epochs: int, seed: int, lr: float = 2e-3
) -> dict[str, float]:
    """Train SmallCNN from scratch per fold (AdamW + one-cycle LR, batch 16, class-weighted loss).

    The one-cycle schedule anneals the learning rate to ~0, so the last epoch is
    a stable model to score; a flat rate made fold scores jump by +-0.1.
    """
    labels = torch.from_numpy(y)
    scores = []
    for fold, (train, test) in enumerate(splits):
        torch.manual_seed(seed + fold)
        model = SmallCNN()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-train.size // 16))
        counts = np.bincount(y[train], minlength=2)
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32))
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(train.size).split(16):
                batch = torch.from_numpy(train[idx.numpy()])
                opt.zero_grad()
                loss_fn(model(feats[batch]), labels[batch]).backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            pred = model(feats[torch.from_numpy(test)]).argmax(dim=1).numpy()
        scores.append(balanced_accuracy_score(y[test], pred))
    return summary(scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="folder with manifest.csv")
    parser.add_argument("--epochs", type=int, default=15, help="CNN epochs per fold (default: 15)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="torch seeds for the CNN; several give the spread (default: 0)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--no-cnn", action="store_true", help="skip the (slow) CNN baseline")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.monotonic()
    meta = pd.read_csv(args.data / "manifest.csv")
    y = (meta["label"] == "abnormal").to_numpy(dtype=np.int64)
    waves = [load_mono(args.data / p) for p in meta["path"]]
    splits = folds(y, meta["speaker"].to_numpy())
    result: dict[str, object] = {
        "clips": len(meta),
        "speakers": int(meta["speaker"].nunique()),
        "abnormal_share": round(float(y.mean()), 3),
        "cv": "StratifiedGroupKFold(5, shuffle=True, random_state=0) by speaker; balanced accuracy",
        "age_word": age_word_baseline(meta, y, splits),
        "per_word_logmel": per_word_baseline(waves, meta, y, splits),
    }
    if not args.no_cnn:
        n = int(CLIP_S * SR)
        clips = np.stack([fixed_length(x, n) for x in waves])
        lengths = np.array([min(x.size, n) for x in waves])
        feats = log_mel(clips, lengths)
        runs = {seed: cnn_baseline(feats, y, splits, args.epochs, seed) for seed in args.seeds}
        result["cnn"] = {
            "uar": round(float(np.mean([r["uar"] for r in runs.values()])), 3),
            "per_seed": {str(seed): r for seed, r in runs.items()},
            "epochs": args.epochs,
            "batch": 16,
        }
    result["seconds"] = round(time.monotonic() - start)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
