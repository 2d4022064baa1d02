#!/usr/bin/env python3
"""What one more fold costs a trial in memory: peak RSS (and peak CUDA memory on a GPU) of one trial run with 1
fold vs k folds, as JSON.

A trial advances its k folds in lockstep in one process (tune/engine/folds.py `LocalFolds`, what `tune.run` runs by
default) and keeps every fold's latest `FoldReport` (with its resume state) for the checkpoint, so whatever
`train_fold` keeps per fold is held k times at once. Each case runs in a fresh subprocess (peak RSS only grows);
the same folds of the same k-fold split, so the 1-fold run is exactly the first fold of the k-fold one.

Reported: peak memory minus the process's memory before training (imports + data), per case; the memory one more
fold adds (`added_per_fold_mb` = (k-fold - 1-fold) / (k - 1)); and that in units of the model's weights
(`copies_per_fold`). `ratio` = added per fold / (weights + optimiser state). Goal: on a GPU (peak CUDA memory)
`ratio` <= 1 + activations / (weights + optimiser state) - the device holds the live model and its optimiser, and
every checkpoint / best-epoch copy lives on the CPU. On CPU the RSS also holds those CPU copies: per fold the live
weights, gradients and AdamW's two moments (4 weight copies), its resume snapshot (weights + moments: 3), at most
one best-epoch copy (1), and while a new snapshot is taken the previous one is still held (3): ~10 at the peak.

Usage:
    python bench/memory.py                          # whisper "base" size, random init, toy set, 1 vs 3 folds
    python bench/memory.py --model whisper --size tiny --folds 5 --epochs 2 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MB = 2 ** 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest (default: the test suite's toy set, written to a temp dir)")
    parser.add_argument("--model", default="whisper", help="model.name")
    parser.add_argument("--size", default="base", help="model.size preset (random init: model.pretrained=none)")
    parser.add_argument("--folds", type=int, default=3, help="k: the trial's folds (compared with 1 of them)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="clip length (data.max_seconds)")
    parser.add_argument("--select", default="best", help="train.select (best keeps a best-epoch copy)")
    parser.add_argument("--device", default="auto", help="train.device: auto (cuda if available) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share)")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)  # internal: run N folds, print
    parser.add_argument("--config-json", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run folds 0..N-1 of the k-fold split in lockstep as a trial does, keeping each fold's latest report."""
    import torch

    from core.config import Config
    from core.data.dataset import prepare_data
    from core.devices import resolve_device
    from tune.engine.folds import LocalFolds

    torch.set_num_threads(args.threads)
    config = Config.from_dict(json.loads(args.config_json)).validate()
    data = prepare_data(config)
    device = resolve_device(config.train.device)
    cuda = device.type == "cuda"
    before = peak_rss_bytes()
    cuda_before = torch.cuda.memory_allocated(device) if cuda else 0
    folds = LocalFolds(config, data, dict.fromkeys(range(args.child)))
    latest: dict[int, Any] = {}  # what the trial keeps between epochs (tune/engine/trainable.py lockstep)
    active = set(range(args.child))
    while active:
        for index, report in folds.step(sorted(active)).items():
            if report is None or report.stopped:
                active.discard(index)
            if report is not None:
                latest[index] = report
    state = latest[0].state
    weights = sum(v.numel() * v.element_size() for v in state["model"].values())
    moments = sum(v.numel() * v.element_size() for s in state["optimizer"]["state"].values() for v in s.values()
                  if isinstance(v, torch.Tensor) and v.dim() > 0)
    return {"folds": args.child, "rss_before_mb": round(before / MB, 1), "peak_rss_mb": round(peak_rss_bytes() / MB, 1),
            "training_rss_mb": round((peak_rss_bytes() - before) / MB, 1),
            "peak_cuda_mb": round((torch.cuda.max_memory_allocated(device) - cuda_before) / MB, 1) if cuda else None,
            "weights_mb": round(weights / MB, 2), "optimizer_state_mb": round(moments / MB, 2),
            "device": str(device)}


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from
    if args.child:
        print(json.dumps(child(args)))
        return
    from core.config import Config

    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as scratch:
        manifest = args.manifest
        if manifest is None:
            sys.path.insert(0, str(REPO / "tests"))
            from support.toy_audio import write_toy_dataset
            manifest = write_toy_dataset(Path(scratch) / "toy")
        config = Config().with_overrides({
            "data.manifest": str(manifest), "data.cache_dir": str(Path(scratch) / "cache"),
            "data.max_seconds": args.max_seconds, "data.k_fold": args.folds, "model.name": args.model,
            "model.pretrained": "none", "model.size": args.size, "train.epochs": args.epochs,
            "train.batch_size": args.batch_size, "train.select": args.select, "train.device": args.device,
        }).validate()
        cases = []
        for folds in (1, args.folds):
            command = [sys.executable, __file__, "--child", str(folds), "--threads", str(args.threads),
                       "--config-json", json.dumps(config.to_dict())]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
            if done.returncode != 0:
                sys.exit(f"{folds}-fold run failed:\n{done.stderr[-3000:]}")
            cases.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{folds} fold(s): {cases[-1]}", file=sys.stderr)
    one, k = cases
    on_gpu = one["peak_cuda_mb"] is not None
    measure = "peak_cuda_mb" if on_gpu else "training_rss_mb"
    added = (k[measure] - one[measure]) / (args.folds - 1)
    report = {
        "model": f"{args.model} {args.size} (random init)", "device": one["device"], "epochs": args.epochs,
        "batch_size": args.batch_size, "max_seconds": args.max_seconds, "select": args.select,
        "weights_mb": one["weights_mb"], "optimizer_state_mb": one["optimizer_state_mb"],
        "measured": measure, "one_fold": one, "k_folds": k,
        "added_per_fold_mb": round(added, 1), "copies_per_fold": round(added / one["weights_mb"], 2),
        "ratio": round(added / (one["weights_mb"] + one["optimizer_state_mb"]), 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
