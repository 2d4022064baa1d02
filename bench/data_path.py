#!/usr/bin/env python3
"""How much the decode-once cache saves: seconds per training epoch under three data paths, as JSON.

The same micro Whisper is trained for a few epochs on the same clips, in the same batch order, fed by
  (a) `cache`:  the memory-mapped decode cache (`open_cache` -> `make_batch`), what `train_fold` uses;
  (b) `decode`: every clip decoded from its file every epoch (soundfile + resample + crop: `ClipDecoder` per item);
  (c) `memory`: all waveforms already in one in-memory tensor (the baseline; no I/O at all).
Epochs of the three paths are interleaved, so a machine whose speed drifts slows all three alike. Reported:
median seconds per epoch (and the part of it spent getting batches), and each path's ratio to `memory`.

Usage:
    python bench/data_path.py                      # data/demo/manifest.csv if present, else a synthetic set
    python bench/data_path.py --manifest PATH --max-clips 0 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checks import check_config
from core.config import Config
from core.data.audio import ClipDecoder
from core.data.batches import Batch, make_batch
from core.data.cache import open_cache
from core.data.dataset import AudioData, encode_targets
from core.data.manifest import load_manifest
from core.data.splits import Splits
from core.models import MODELS, forward_batch

REPO = Path(__file__).resolve().parents[1]
DEMO_MANIFEST = REPO / "data" / "demo" / "manifest.csv"

BatchSource = Callable[[np.ndarray], Batch]  # training rows -> batch


def synthetic_manifest(folder: Path, speakers: int) -> Path:
    """The test suite's toy set (tests/support/toy_audio.py), more speakers: real FLAC/WAV, some stereo 44.1 kHz."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.toy_audio import write_toy_dataset

    return write_toy_dataset(folder, speakers=speakers)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None,
                        help=f"CSV/Parquet manifest (default: {DEMO_MANIFEST.relative_to(REPO)} if it exists, "
                             "else a synthetic set written to a temp dir)")
    parser.add_argument("--max-clips", type=int, default=384, help="clips to train on (0: all)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per path (after one warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="clip length (data.max_seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share)")
    parser.add_argument("--synthetic-speakers", type=int, default=64, help="size of the synthetic fallback set")
    return parser.parse_args()


class Trainer:
    """One model + optimiser per data path, all starting from the same weights."""

    def __init__(self, config: Config, num_classes: int) -> None:
        spec = MODELS.get(config.model.name)
        torch.manual_seed(0)
        self.model = spec.build(config, num_classes).train()
        self.featurizer = spec.featurizer(config).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.optim.lr)

    def step(self, batch: Batch) -> float:
        logits = forward_batch(self.model, self.featurizer, batch)["logits"]
        loss = nn.functional.cross_entropy(logits, batch.targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def run_epoch(trainer: Trainer, source: BatchSource, batches: list[np.ndarray]) -> tuple[float, float]:
    """(epoch seconds, seconds of it spent getting batches)."""
    fetching = 0.0
    started = time.perf_counter()
    for rows in batches:
        before = time.perf_counter()
        batch = source(rows)
        fetching += time.perf_counter() - before
        trainer.step(batch)
    return time.perf_counter() - started, fetching


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as scratch:
        manifest_path = args.manifest or (DEMO_MANIFEST if DEMO_MANIFEST.exists() else None)
        source_name = str(manifest_path) if manifest_path else f"synthetic ({args.synthetic_speakers} speakers)"
        if manifest_path is None:
            manifest_path = synthetic_manifest(Path(scratch) / "synthetic", args.synthetic_speakers)
        config = check_config(Config().with_overrides({
            "data.manifest": str(manifest_path), "data.max_seconds": args.max_seconds,
            "data.cache_dir": str(Path(scratch) / "cache"), "model.size": "micro", "model.dropout": 0.0,
            "train.batch_size": args.batch_size, "train.device": "cpu"}))
        manifest = load_manifest(manifest_path)
        chosen = np.random.default_rng(0).permutation(len(manifest))
        if args.max_clips:
            chosen = np.sort(chosen[: args.max_clips])
        paths = [manifest.paths[i] for i in chosen]
        targets, classes = encode_targets(manifest.table[config.data.target].iloc[chosen], regression=False)
        n = len(paths)

        started = time.perf_counter()
        store = open_cache(paths, config.data.sample_rate, config.data.max_seconds, config.data.cache_dir)
        cache_build = time.perf_counter() - started
        data = AudioData(manifest=manifest, waveforms=store, targets=targets, classes=classes,
                         word_ids=np.zeros(n, np.int64), words=[""], ages=np.full(n, np.nan, np.float32),
                         speakers=None, splits=Splits(test=np.zeros(0, np.int64), folds=[]))
        in_memory = torch.from_numpy(store[np.arange(n)].copy())
        memory_lengths = torch.from_numpy(store.lengths.copy())
        decoder = ClipDecoder(config.data.sample_rate, store.num_samples)
        device = torch.device("cpu")

        def batch_of(rows: np.ndarray, waveforms: torch.Tensor, lengths: torch.Tensor) -> Batch:
            return Batch(rows=rows, waveforms=waveforms, lengths=lengths, targets=torch.from_numpy(targets[rows]),
                         word_ids=torch.from_numpy(data.word_ids[rows]), ages=torch.from_numpy(data.ages[rows]))

        def from_cache(rows: np.ndarray) -> Batch:
            return make_batch(data, rows, device)

        def from_files(rows: np.ndarray) -> Batch:
            rows = np.sort(rows)
            decoded = [decoder(paths[i]) for i in rows]
            return batch_of(rows, torch.from_numpy(np.stack([wave for wave, _ in decoded])),
                            torch.tensor([length for _, length in decoded]))

        def from_memory(rows: np.ndarray) -> Batch:
            rows = np.sort(rows)
            index = torch.from_numpy(rows)
            return batch_of(rows, in_memory[index], memory_lengths[index])

        sources: dict[str, BatchSource] = {"cache": from_cache, "decode": from_files, "memory": from_memory}
        trainers = {name: Trainer(config, len(classes)) for name in sources}
        order = np.random.default_rng(1)
        epoch_plans = [[chunk for chunk in np.array_split(order.permutation(n), max(1, -(-n // args.batch_size)))]
                       for _ in range(args.epochs + 1)]
        times: dict[str, list[float]] = {name: [] for name in sources}
        fetch: dict[str, list[float]] = {name: [] for name in sources}
        for epoch, batches in enumerate(epoch_plans):
            for name, source in sources.items():
                seconds, fetching = run_epoch(trainers[name], source, batches)
                if epoch > 0:  # epoch 0 warms kernels, allocator and page cache for every path alike
                    times[name].append(seconds)
                    fetch[name].append(fetching)
                print(f"epoch {epoch} {name}: {seconds:.2f}s (batches {fetching:.2f}s)", file=sys.stderr)

    baseline = statistics.median(times["memory"])
    report: dict[str, Any] = {
        "manifest": source_name, "clips": n, "batch_size": args.batch_size, "max_seconds": args.max_seconds,
        "model": "whisper micro (random init)", "threads": args.threads, "timed_epochs": args.epochs,
        "cache_build_seconds": round(cache_build, 3),
        "paths": {name: {"epoch_seconds_median": round(statistics.median(times[name]), 3),
                         "batch_seconds_median": round(statistics.median(fetch[name]), 4),
                         "batch_ms_per_clip": round(1000 * statistics.median(fetch[name]) / n, 3),
                         "epoch_seconds": [round(t, 3) for t in times[name]],
                         "ratio_vs_memory": round(statistics.median(times[name]) / baseline, 3)}
                  for name in ("memory", "cache", "decode")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
