"""Frozen-encoder probe: a frozen encoder whose input nothing random touches computes the same outputs for a clip in
every step, epoch, fold and trial, so they are computed once per clip and only the head trains on them.

Applies when `model.freeze_encoder` is on, `model.encoder_cache` is not off, the model can pool its encoder's output
(Whisper), SpecAugment is off and the spectrogram carries no age/word rows (they depend on the fold's age range).
The frozen encoder then runs in eval mode (core/models/freezing.py) on a deterministic log-mel: the cached outputs
are the full path's own, and the head starts from the same initial weights and RNG streams, so training on them
gives the full path's numbers (tests/core/test_probe.py). What is cached is every encoder layer's output pooled every
registered way ([clips, layers 0..N, poolings, d_model]), so a search over `model.pooling` and `model.layers` shares
one file. It is float32 up to ENCODED_FLOAT32_BYTES (whisper-base on 10,000 clips is 0.4 GB) and float16 beyond
(~1e-3 relative rounding: a large encoder on many clips then still fits in memory).

The file (`encoded-<key>.npy`, memory-mapped, next to the decode cache) is keyed by a hash of the encoder's weights
(model, checkpoint and sliced positional table alike), the front end (its settings and filterbank), the clip set
(the decode cache's own key) and the poolings; one process builds it under a lock while the others wait, as for the
decode cache. A JSON file beside it records how long the encoder pass took.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch, batch_rows, make_batch
from core.data.cache import default_cache_dir, exclusive
from core.data.dataset import AudioData

ENCODED_VERSION = 2  # 2: every layer
ENCODED_FLOAT32_BYTES = 2 << 30
encoded_clips = 0  # clips this process has run through an encoder for a cache (tests count recomputation with it)


def encoder_cache_applies(config: Config) -> bool:
    """Whether the encoder's output for a clip is the same whenever it is computed (see the module's docstring)."""
    m, a = config.model, config.augment
    augmented = (a.time_mask > 0 and a.time_masks > 0) or (a.freq_mask > 0 and a.freq_masks > 0)
    return (m.freeze_encoder and m.encoder_cache and m.name == "whisper" and not augmented
            and config.features.conditioning != "rows")


class ProbeHead(nn.Module):
    """The model trained on cached outputs: (pooled outputs [B, layers, poolings, d], batch) -> the classifier's
    layer mix and head on the configured layers and pooling. Its parameters and state-dict keys are the mix's and
    the head's alone (`mix.*`, `head.*`, as in the full model), so epoch snapshots and checkpoints hold no encoder
    copy; `full()` is the whole classifier, sharing them."""

    def __init__(self, classifier: nn.Module, pooling: int) -> None:
        super().__init__()
        self.mix = classifier.mix
        self.head = classifier.head
        self.pooling = pooling
        self.layers = classifier.mix.indices()
        self._classifier = [classifier]  # in a list: not a submodule, so not trained, snapshotted nor moved

    def forward(self, features: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return self.head(self.mix(features[:, self.layers, self.pooling].float()), batch)

    def full(self) -> nn.Module:
        return self._classifier[0]


def full_model(model: nn.Module) -> nn.Module:
    """The model that reads waveforms: a probe's whole classifier, any other model itself."""
    return model.full() if isinstance(model, ProbeHead) else model


class EncodedFeatures(nn.Module):
    """The probe's featurizer: batch -> the cached pooled outputs of its rows, on the batch's device."""

    def __init__(self, encoded: np.ndarray) -> None:
        super().__init__()
        self.encoded = encoded

    def forward(self, batch: Batch) -> torch.Tensor:
        rows = np.ascontiguousarray(self.encoded[batch.rows])
        return torch.from_numpy(rows).to(batch.targets.device)


def with_cached_encoder(config: Config, data: AudioData, model: nn.Module, featurizer: nn.Module,
                        device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, featurizer) to train with: the probe on cached outputs where the cache applies, else the given pair."""
    if not encoder_cache_applies(config) or not hasattr(model, "pooled_outputs"):
        return model, featurizer
    encoded = open_encoded(config, data, model, featurizer, device)
    return ProbeHead(model, list(model.poolings()).index(config.model.pooling)), EncodedFeatures(encoded)


def encoded_dtype(values: int) -> type[np.floating]:
    """float32 while the cache stays under ENCODED_FLOAT32_BYTES, else float16 (see the module's docstring)."""
    return np.float32 if values * 4 <= ENCODED_FLOAT32_BYTES else np.float16


def encoded_key(config: Config, data: AudioData, model: nn.Module, featurizer: nn.Module) -> str:
    digest = hashlib.sha256(json.dumps({
        "version": ENCODED_VERSION, "model": type(model).__name__, "poolings": list(model.poolings()),
        "clips": data.waveforms.path.name, "rows": len(data.targets), "rate": config.data.sample_rate,
        "seconds": config.data.max_seconds, "n_mels": config.features.n_mels, "n_fft": config.features.n_fft,
        "hop": config.features.hop_length, "front_end": repr(featurizer)}).encode())
    for part in (model.encoder, featurizer):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def open_encoded(config: Config, data: AudioData, model: nn.Module, featurizer: nn.Module,
                 device: torch.device) -> np.ndarray:
    """The memory-mapped [clips, layers, poolings, d] outputs for every clip of `data`, computed first if no file
    has them."""
    folder = Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()
    target = folder / f"encoded-{encoded_key(config, data, model, featurizer)}.npy"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive(target, None, "encoder cache"):
            if not target.exists():
                _build(data, model, featurizer, device, config.train.eval_batch_size, target)
    return np.load(target, mmap_mode="r")


@torch.no_grad()
def _build(data: AudioData, model: nn.Module, featurizer: nn.Module, device: torch.device, batch_size: int,
           target: Path) -> None:
    global encoded_clips
    started = time.perf_counter()
    model.eval()
    featurizer.eval()
    rows = np.arange(len(data.targets))
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp.npy")
    os.close(handle)
    try:
        out = None
        for chunk in batch_rows(rows, batch_size, rng=None):
            batch = make_batch(data, chunk, device)
            pooled = model.pooled_outputs(featurizer(batch), batch).float().cpu().numpy()
            if out is None:
                out = np.lib.format.open_memmap(temporary, mode="w+", shape=(len(rows), *pooled.shape[1:]),
                                                dtype=encoded_dtype(len(rows) * pooled[0].size))
            out[chunk] = pooled
            encoded_clips += len(chunk)
        assert out is not None
        out.flush()
        del out
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    target.with_suffix(".json").write_text(json.dumps({
        "clips": len(rows), "seconds": round(time.perf_counter() - started, 3), "device": str(device),
        "decode_cache": str(data.waveforms.path)}) + "\n")
