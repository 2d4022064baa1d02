#!/usr/bin/env python3
"""What sizing Whisper to the clip buys: one training step on 3 s clips vs 30 s clips, same model size, as JSON.

The Whisper encoder here takes exactly the clip's frames (its positional table sliced to `frames // 2` rows)
instead of the 30 s (3000 frames) every clip is padded to by stock Whisper. The 30 s case is that stock input;
the 3 s case is what a short-clip search trains on. A step is `bench/step_breakdown.py`'s (featurizer, forward,
backward with clipping, AdamW) on random waveforms; the two lengths alternate, step by step.
`ratio` = median 30 s step / median 3 s step. Goal: >= 8 (10x fewer frames; attention makes it more).

Usage:
    python bench/whisper_short.py                    # whisper "tiny" size, batch 8
    python bench/whisper_short.py --size base --batch-size 16 --steps 5 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
from step_breakdown import Step  # noqa: I001  (bench/ is this script's folder, so it is importable)

from core.devices import resolve_device


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", default="tiny", help="Whisper model.size preset (random init)")
    parser.add_argument("--short", type=float, default=3.0, help="short clip length, seconds")
    parser.add_argument("--long", type=float, default=30.0, help="stock Whisper input length, seconds")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per length (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    lengths = {"short": args.short, "long": args.long}
    steps = {key: Step("whisper", args.size, argparse.Namespace(max_seconds=seconds, batch_size=args.batch_size),
                       device) for key, seconds in lengths.items()}
    times: dict[str, list[float]] = {key: [] for key in steps}
    peak_mb: dict[str, float] = {}
    for repeat in range(args.steps + 1):
        for key, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = sum(step().values())
            if device.type == "cuda":
                peak_mb[key] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
            if repeat > 0:  # the first step warms kernels and the allocator
                times[key].append(seconds)
            print(f"step {repeat} {key} ({lengths[key]:g} s): {seconds:.3f}s", file=sys.stderr)
    median = {key: statistics.median(values) for key, values in times.items()}
    cases = {key: {"seconds_of_audio": lengths[key],
                   "encoder_positions": steps[key].model.encoder.config.max_source_positions,
                   "step_seconds_median": round(median[key], 4), "step_seconds": [round(t, 4) for t in times[key]],
                   **({"peak_cuda_mb": peak_mb[key]} if key in peak_mb else {})} for key in steps}
    report = {"model": f"whisper {args.size} (random init)", "device": str(device), "threads": args.threads,
              "batch_size": args.batch_size, "timed_steps": args.steps, "cases": cases,
              "ratio": round(median["long"] / median["short"], 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
