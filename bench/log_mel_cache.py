#!/usr/bin/env python3
"""What the log-mel computed once per clip per trial saves: a 3-fold trial's time with the cache per trial, per
fold, and without it, as JSON.

The demo's trial (micro Whisper from scratch, the bundled data, 3 folds advanced in lockstep as tune/engine/folds.py's
LocalFolds does, batch 16, the age/word embedding) trained for `--epochs` epochs three ways, in turns, `--repeats`
times:
- `per_trial`: the default in train_fold: the folds share the trial's AudioData, so each clip's log-mel is
  computed once for the whole trial;
- `per_fold`: each fold given its own copy of the AudioData, so each computes every clip's log-mel itself, as the
  cache did before it moved to the trial (per fold, once per clip);
- `per_batch`: no cache (the log-mel of every batch computed afresh, as before any cache).
Reported, medians over the repeats: `trial_s` (the trial's wall time, every epoch of every fold), `trial_cpu_s`
(its process CPU time: on the shared, loaded machines here far steadier than wall time) and `featurizer_s` (the
part spent in the front end: log-mel, lookups, SpecAugment, rows; timed by forward hooks, in process CPU seconds
on the CPU, in synchronised wall seconds on a GPU). `ratio` = per-fold ÷ per-trial featurizer seconds (> 1:
sharing across folds saves that much front-end work); `trial_ratio` the same for the trial's CPU time; the
`per_batch_` ratios compare no cache with the per-trial one. All three give the same numbers bit for bit on the
CPU (tests/core/test_log_mel_cache.py), so only the time differs.

Usage:
    python bench/log_mel_cache.py                     # the bundled demo data, 3 epochs, 2 repeats, 1 thread
    python bench/log_mel_cache.py --data /tmp/set/manifest.csv --epochs 2 --repeats 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from

import torch  # noqa: E402

import core.log_mel_cache as log_mel_cache  # noqa: E402
from core.checks import check_config  # noqa: E402
from core.config import Config  # noqa: E402
from core.data.dataset import AudioData, prepare_data  # noqa: E402
from core.devices import resolve_device  # noqa: E402
from core.features import LogMelFeaturizer  # noqa: E402
from core.train import train_fold  # noqa: E402

MODES = ("per_trial", "per_fold", "per_batch")


def clock(device: torch.device) -> float:
    """Now, in the seconds the featurizer is timed in: process CPU time on the CPU (other engineers' load barely
    moves it), wall time after the GPU's queued work on CUDA (where the work is not this process's CPU time)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


class FrontEndClock:
    """Seconds spent in the front end's forward (cached or not) while active: global forward hooks, so they time
    the modules train_fold builds inside itself. The cached one calls its inner featurizer's parts, not its
    forward, so nothing is counted twice."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self.started = device, 0.0, 0.0

    def _now(self) -> float:
        return clock(self.device)

    def __enter__(self) -> FrontEndClock:
        front_ends = (LogMelFeaturizer, log_mel_cache.CachedLogMelFeaturizer)

        def start(module: torch.nn.Module, _inputs: object) -> None:
            if isinstance(module, front_ends):
                self.started = self._now()

        def stop(module: torch.nn.Module, _inputs: object, _output: object) -> None:
            if isinstance(module, front_ends):
                self.seconds += self._now() - self.started

        self.handles = [torch.nn.modules.module.register_module_forward_pre_hook(start),
                        torch.nn.modules.module.register_module_forward_hook(stop)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def trial(config: Config, data: AudioData, mode: str, device: torch.device) -> tuple[float, float, float]:
    """(wall, CPU and front-end seconds) of one trial: every fold of `data`, `config.train.epochs` epochs each."""
    log_mel_cache.MAX_CACHE_BYTES = 0 if mode == "per_batch" else 1 << 30
    shared = dataclasses.replace(data)  # a fresh AudioData, as each trial prepares its own: nothing cached yet
    runs = [train_fold(config, dataclasses.replace(data) if mode == "per_fold" else shared, fold)
            for fold in data.splits.folds]
    with FrontEndClock(device) as front_end:
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(config.train.epochs):
            for run in runs:
                next(run)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - cpu_start, front_end.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "demo" / "manifest.csv"), help="manifest")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fold (default: 3)")
    parser.add_argument("--repeats", type=int, default=2, help="trials per mode, in turns (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = check_config(Config().with_overrides({
        "data.manifest": args.data, "data.k_fold": 3, "model.pretrained": "none", "model.size": "micro",
        "model.projection_dim": 64, "loss.name": "balancing", "features.conditioning": "embed",
        "optim.lr": 3e-3, "train.batch_size": 16, "train.epochs": args.epochs, "train.device": str(device)}))
    data = prepare_data(config)
    runs: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES:  # in turns, so a machine whose speed drifts slows every mode alike
            runs[mode].append(trial(config, data, mode, device))
            wall, cpu, front = runs[mode][-1]
            print(f"repeat {repeat + 1} {mode}: {wall:.1f} s, {cpu:.1f} s CPU, front end {front:.2f} s",
                  file=sys.stderr)
    medians = {name: {mode: statistics.median(run[column] for run in times) for mode, times in runs.items()}
               for column, name in enumerate(("trial_s", "trial_cpu_s", "featurizer_s"))}
    cpu, front = medians["trial_cpu_s"], medians["featurizer_s"]
    print(json.dumps({
        "device": device.type, "folds": len(data.splits.folds), "epochs": args.epochs, "repeats": args.repeats,
        **{name: {mode: round(value, 2) for mode, value in values.items()} for name, values in medians.items()},
        "ratio": round(front["per_fold"] / front["per_trial"], 3),
        "trial_ratio": round(cpu["per_fold"] / cpu["per_trial"], 3),
        "per_batch_ratio": round(front["per_batch"] / front["per_trial"], 3),
        "per_batch_trial_ratio": round(cpu["per_batch"] / cpu["per_trial"], 3)}))


if __name__ == "__main__":
    main()
