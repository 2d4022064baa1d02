#!/usr/bin/env python3
"""What the log-mel computed once per clip per fold saves: epoch time of `train_fold` with and without it, as JSON.

The demo's fold (micro Whisper from scratch, the bundled data, 3 folds, batch 16, the age/word embedding) trained
for `--epochs` epochs twice in alternation: with the cache (the default in train_fold) and with it off (the
log-mel per batch, as before). Reported: the median seconds of an epoch after the first (which fills the cache)
and `ratio` = uncached ÷ cached (> 1: the cache is faster). Both runs give the same numbers bit for bit
(tests/test_log_mel_cache.py), so only the time differs.

Usage:
    python bench/log_mel_cache.py                     # the bundled demo data, 4 epochs each way, 1 thread
    python bench/log_mel_cache.py --data /tmp/set/manifest.csv --epochs 3
"""

from __future__ import annotations

import argparse
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
from core.data.dataset import prepare_data  # noqa: E402
from core.train import train_fold  # noqa: E402


def epoch_seconds(config: Config, data, cached: bool, epochs: int) -> list[float]:  # noqa: ANN001
    log_mel_cache.MAX_CACHE_BYTES = 1 << 30 if cached else 0
    times, start = [], time.perf_counter()
    for result in train_fold(config.with_overrides({"train.epochs": epochs}), data, data.splits.folds[0]):
        now = time.perf_counter()
        times.append(now - start)
        start = now
        del result
    return times[1:]  # the first epoch fills the cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "demo" / "manifest.csv"), help="manifest")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default: 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = check_config(Config().with_overrides({
        "data.manifest": args.data, "data.k_fold": 3, "model.pretrained": "none", "model.size": "micro",
        "model.projection_dim": 64, "loss.name": "balancing", "features.conditioning": "embed",
        "optim.lr": 3e-3, "train.batch_size": 16, "train.device": "cpu"}))
    data = prepare_data(config)
    runs: dict[str, list[float]] = {"cached": [], "per_batch": []}
    for cached in (True, False, True, False):  # alternated, so a machine whose speed drifts slows both alike
        runs["cached" if cached else "per_batch"] += epoch_seconds(config, data, cached, args.epochs)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(json.dumps({"epoch_s": {name: round(value, 3) for name, value in medians.items()},
                      "epochs_timed": {name: len(times) for name, times in runs.items()},
                      "ratio": round(medians["per_batch"] / medians["cached"], 3)}))


if __name__ == "__main__":
    main()
