#!/usr/bin/env python3
"""Where a training step's time goes: featurizer / forward / backward / optimiser, per model, as JSON.

One training step as `train_fold` takes it (featurizer under no_grad, model forward, cross-entropy, backward with
gradient clipping, AdamW step) on a batch of random waveforms at the default clip length, for Whisper micro / tiny /
base sizes, Wav2Vec2 micro and ResNet50, all randomly initialised (the sizes of the pretrained models; weights do
not change the time). The models are measured in turns, step by step, so a machine whose speed drifts slows all
of them alike. Reported: the median seconds of each phase and its share of the median step. `ratio` = the
featurizer's share of the micro Whisper step, the model where the log-mel front end is worth optimising (the
issue measured ~29 % on 2 cores); with pretrained-sized models it should be ~1 %.

Usage:
    python bench/step_breakdown.py                               # every model, CPU (or CUDA if available)
    python bench/step_breakdown.py --models whisper:micro,resnet50 --steps 10 --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.config import Config  # noqa: E402
from core.data.batches import Batch  # noqa: E402
from core.devices import resolve_device  # noqa: E402
from core.models import MODELS  # noqa: E402

PHASES = ("featurizer", "forward", "backward", "optimizer")
DEFAULT_MODELS = "whisper:micro,whisper:tiny,whisper:base,wav2vec2:micro,resnet50"
MODEL_OVERRIDES = {"resnet50": {"features.n_mels": 224, "features.n_fft": 1024}}  # what its config check demands


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated name[:size] (model.name, model.size)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=Config().data.max_seconds, help="clip length")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share)")
    return parser.parse_args()


class Step:
    """One model's featurizer, model and optimiser; `__call__` runs one step and returns each phase's seconds."""

    def __init__(self, name: str, size: str, args: argparse.Namespace, device: torch.device) -> None:
        overrides = {"model.name": name, "model.pretrained": "none", "data.max_seconds": args.max_seconds,
                     "train.batch_size": args.batch_size, "train.device": str(device), **MODEL_OVERRIDES.get(name, {})}
        if size:
            overrides["model.size"] = size
        self.config = Config().with_overrides(overrides).validate()
        spec = MODELS.get(name)
        torch.manual_seed(0)
        self.model = spec.build(self.config, 2).to(device).train()
        self.featurizer = spec.featurizer(self.config).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.device = device
        samples = int(round(self.config.data.sample_rate * args.max_seconds))
        n = args.batch_size
        generator = torch.Generator().manual_seed(0)
        self.batch = Batch(rows=np.arange(n), waveforms=(0.1 * torch.randn(n, samples, generator=generator)).to(device),
                           lengths=torch.full((n,), samples).to(device), targets=(torch.arange(n) % 2).to(device),
                           word_ids=torch.zeros(n, dtype=torch.int64).to(device),
                           ages=torch.full((n,), float("nan")).to(device))
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def __call__(self) -> dict[str, float]:
        started = self.clock()
        with torch.no_grad():
            features = self.featurizer(self.batch)
        featurized = self.clock()
        loss = nn.functional.cross_entropy(self.model(features, self.batch)["logits"], self.batch.targets)
        forwarded = self.clock()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        backwarded = self.clock()
        self.optimizer.step()
        stepped = self.clock()
        return {"featurizer": featurized - started, "forward": forwarded - featurized,
                "backward": backwarded - forwarded, "optimizer": stepped - backwarded}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    steps: dict[str, Step] = {}
    for entry in args.models.split(","):
        name, _, size = entry.strip().partition(":")
        steps[entry.strip()] = Step(name, size, args, device)
    times: dict[str, list[dict[str, float]]] = {key: [] for key in steps}
    for repeat in range(args.steps + 1):
        for key, step in steps.items():
            phases = step()
            if repeat > 0:  # the first step warms kernels and the allocator
                times[key].append(phases)
            print(f"step {repeat} {key}: {sum(phases.values()):.3f}s", file=sys.stderr)
    models: dict[str, Any] = {}
    for key, runs in times.items():
        total = statistics.median(sum(run.values()) for run in runs)
        phases = {phase: statistics.median(run[phase] for run in runs) for phase in PHASES}
        models[key] = {"parameters": steps[key].parameters, "step_seconds": round(total, 4),
                       "seconds": {phase: round(value, 4) for phase, value in phases.items()},
                       "share": {phase: round(value / total, 3) for phase, value in phases.items()}}
    micro = "whisper:micro" if "whisper:micro" in models else next(iter(models))
    report = {"device": str(device), "threads": args.threads, "batch_size": args.batch_size,
              "max_seconds": args.max_seconds, "timed_steps": args.steps, "models": models,
              "ratio_is": f"featurizer share of the {micro} step",
              "ratio": models[micro]["share"]["featurizer"]}
    if device.type == "cuda":
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
