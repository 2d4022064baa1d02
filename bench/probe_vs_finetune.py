#!/usr/bin/env python3
"""Trials per hour of a `whisper_probe` search (frozen encoder, outputs cached once per clip, head trained on them)
vs fine-tuning the same pretrained Whisper, on the demo set, as JSON.

Measured in one run, on one fold of the space's k-fold split (the same clips for every path):
- fine-tuning (`model.freeze_encoder=false`) and the frozen encoder run every step (`model.encoder_cache=false`):
  one epoch on `--finetune-clips` training and validation clips, timed, scaled to a fold's clips (a whole epoch of
  whisper-base on 2 CPU cores takes minutes; per-clip cost does not depend on how many clips there are);
- the probe: the encoder pass over every clip (once per search, timed on its own) and then whole folds trained on
  the cached outputs, all epochs, timed.
A trial is k folds x E epochs (the space's base, `--folds`/`--epochs` to change); the probe's trial adds its share
of the one encoder pass for a search of `--trials` trials. `ratio` = probe trials/hour / fine-tuning trials/hour.
Ray's own per-trial overhead (start, checkpoints, ~2-5 s) is left out of both (bench/search_overhead.py has it).

Usage:
    python bench/probe_vs_finetune.py --pretrained /models/whisper-base   # a local HF Whisper folder, or a hub id
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pretrained", required=True,
                        help="model.pretrained: a pretrained Whisper (hub id or local folder), e.g. whisper-base")
    parser.add_argument("--manifest", default=str(REPO / "data" / "demo" / "manifest.csv"))
    parser.add_argument("--folds", type=int, default=0, help="k (0: the space's)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per fold (0: the space's)")
    parser.add_argument("--trials", type=int, default=20, help="trials of the search sharing one encoder pass")
    parser.add_argument("--probe-folds", type=int, default=2, help="folds trained on cached outputs, timed")
    parser.add_argument("--finetune-clips", type=int, default=48, help="training clips of the timed epoch")
    parser.add_argument("--device", default="cpu", help="train.device")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import numpy as np
    import torch

    from core.checks import check_config
    from core.config import Config
    from core.data.dataset import prepare_data
    from core.data.splits import Fold
    from core.models import frozen
    from core.train import train_fold
    from search_spaces import SPACES

    torch.set_num_threads(args.threads)
    space = SPACES.get("whisper_probe")
    cache = tempfile.mkdtemp(prefix="probe-bench-")  # the encoder pass is timed: no earlier file may serve it
    overrides = {**space.base, "model.pretrained": args.pretrained, "data.manifest": args.manifest,
                 "train.device": args.device, "data.cache_dir": cache}
    if args.folds:
        overrides["data.k_fold"] = args.folds
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    probe = check_config(Config().with_overrides(overrides))
    k, epochs = probe.data.k_fold, probe.train.epochs
    print(f"decoding {args.manifest} ...", file=sys.stderr)
    data = prepare_data(probe, progress=lambda m: print(m, file=sys.stderr))
    folds = data.splits.folds
    train_clips, valid_clips = np.mean([len(f.train) for f in folds]), np.mean([len(f.valid) for f in folds])

    def seconds_per_fold_epoch(config: Config) -> float:
        """One epoch on a slice of fold 0, scaled to a whole fold (train and validation clips cost differently,
        so each is timed: a run on the validation clips alone gives their share)."""
        n = args.finetune_clips
        sliced = Fold(index=0, train=folds[0].train[:n], valid=folds[0].valid[: n // 2])
        one = config.with_overrides({"train.epochs": 1})
        list(train_fold(one, data, Fold(index=0, train=sliced.train[:one.train.batch_size], valid=sliced.valid[:1])))
        started = time.perf_counter()  # (the run above loaded the weights into the page cache: a fair start)
        list(train_fold(one, data, sliced))
        both = time.perf_counter() - started
        started = time.perf_counter()
        list(train_fold(one, data, Fold(index=0, train=sliced.train[:1], valid=sliced.valid)))
        valid_only = time.perf_counter() - started
        per_valid = valid_only / len(sliced.valid)
        per_train = max(both - valid_only, 0.0) / len(sliced.train)
        return per_train * train_clips + per_valid * valid_clips

    print("fine-tuning: timing one epoch slice ...", file=sys.stderr)
    finetune_epoch = seconds_per_fold_epoch(probe.with_overrides({"model.freeze_encoder": False,
                                                                  "train.batch_size": 16, "optim.lr": 1e-4}))
    print("frozen encoder without the cache: timing one epoch slice ...", file=sys.stderr)
    frozen_epoch = seconds_per_fold_epoch(probe.with_overrides({"model.encoder_cache": False}))

    print("probe: encoder pass over every clip ...", file=sys.stderr)
    before = frozen.encoded_clips
    started = time.perf_counter()
    list(train_fold(probe.with_overrides({"train.epochs": 1}), data,
                    Fold(index=0, train=folds[0].train[:1], valid=folds[0].valid[:0])))
    encoder_pass = time.perf_counter() - started
    assert frozen.encoded_clips - before == len(data.targets)
    print(f"probe: {args.probe_folds} whole folds x {epochs} epochs on cached outputs ...", file=sys.stderr)
    started = time.perf_counter()
    scores = []
    for fold in folds[:args.probe_folds]:
        results = list(train_fold(probe, data, fold))
        scores.append(max(r.metrics[probe.train.metric] for r in results))
    probe_fold = (time.perf_counter() - started) / args.probe_folds
    assert frozen.encoded_clips - before == len(data.targets)  # the folds reused the one pass

    finetune_trial = k * epochs * finetune_epoch
    frozen_trial = k * epochs * frozen_epoch
    probe_trial = k * probe_fold + encoder_pass / args.trials
    result = {
        "bench": "probe_vs_finetune", "pretrained": args.pretrained, "clips": len(data.targets),
        "folds": k, "epochs": epochs, "train_clips_per_fold": float(train_clips), "device": args.device,
        "threads": args.threads, "trials_sharing_the_encoder_pass": args.trials,
        "finetune_seconds_per_fold_epoch": round(finetune_epoch, 2),
        "frozen_uncached_seconds_per_fold_epoch": round(frozen_epoch, 2),
        "probe_encoder_pass_seconds": round(encoder_pass, 2),
        "probe_seconds_per_fold_all_epochs": round(probe_fold, 2),
        "probe_fold_best_uar": [round(s, 4) for s in scores],
        "finetune_trial_seconds": round(finetune_trial, 1), "frozen_uncached_trial_seconds": round(frozen_trial, 1),
        "probe_trial_seconds": round(probe_trial, 2),
        "finetune_trials_per_hour": round(3600 / finetune_trial, 3),
        "frozen_uncached_trials_per_hour": round(3600 / frozen_trial, 3),
        "probe_trials_per_hour": round(3600 / probe_trial, 1),
        "ratio": round(finetune_trial / probe_trial, 1),
        "ratio_vs_frozen_uncached": round(frozen_trial / probe_trial, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
