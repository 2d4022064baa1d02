#!/usr/bin/env python3
"""One prepared GPU check (issue #22): the GPU paths no CPU run reaches, in under 8 minutes on one GPU.

Parts, each run as the user would run it, timed, with the card's peak memory while it runs:
  finetune_bf16   a 4-trial whisper-base fine-tuning search (whisper_balancing), train.precision=bf16,
                  --gpus-per-trial 0.5 (two trials share the card)
  fold_parallel   one --fold-parallel trial (its folds as Ray actors in the trial's bundles, on the GPU)
  encoder_pass    the probe's encoder pass over every clip (clips per second; core/models/frozen.py)
  lpft_trial      one LP-FT trial (whisper_lpft, train.probe_epochs=1 of 2 epochs)
It prints one JSON object: for each part its status (ok | failed | skipped), wall seconds, peak GPU memory (MiB,
nvidia-smi's memory.used sampled every 0.25 s, or torch's peak for the in-process encoder pass) and the tail of
its output when it failed. On a machine without a CUDA GPU it says so in one line and exits 2; `--plan` prints what
it would run (no GPU needed: tests/test_benches.py runs it).

Usage:
    python bench/gpu_check.py --weights /models/whisper-base            # on a GPU machine
    python bench/gpu_check.py --plan                                     # what it runs, anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / "shared" / "models" / "whisper-base"
PARTS = ("finetune_bf16", "fold_parallel", "encoder_pass", "lpft_trial")
BUDGET_SECONDS = 480  # the 8 minutes, all parts together


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--weights", default=os.environ.get("AUDIOTUNE_GPU_WEIGHTS", str(DEFAULT_WEIGHTS)),
                        help="a pretrained Whisper folder (whisper-base)")
    parser.add_argument("--data", default=str(REPO / "data" / "demo" / "manifest.csv"), help="manifest")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--max-seconds", type=float, default=1.25, help="clip length (data.max_seconds)")
    parser.add_argument("--part-timeout", type=int, default=300, help="seconds one part may take")
    parser.add_argument("--out", help="scratch folder for the runs (default: a temporary one, removed after)")
    parser.add_argument("--plan", action="store_true", help="print the plan as JSON and exit (no GPU needed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts.split(",")) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (choose from {', '.join(PARTS)})")
    if args.part_timeout < 1:
        parser.error(f"--part-timeout must be >= 1, got {args.part_timeout}")
    return args


def common(args: argparse.Namespace, scratch: Path, name: str) -> list[str]:
    return ["--data", args.data, "--storage", str(scratch / "runs"), "--name", name,
            "--set", f"model.pretrained={args.weights}", "--set", f"data.max_seconds={args.max_seconds}",
            "--set", f"data.cache_dir={scratch / 'cache'}", "--set", "train.device=cuda"]


def plan(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    """Each part: its name, what it checks, and its command (a tune.run argv, or the in-process encoder pass)."""
    run = [sys.executable, "-m", "tune.run"]
    parts = {
        "finetune_bf16": {"checks": "bf16 autocast fine-tuning, two trials sharing the card", "argv": [
            *run, "--space", "whisper_balancing", *common(args, scratch, "finetune_bf16"), "--num-samples", "4",
            "--max-concurrent", "2", "--gpus-per-trial", "0.5", "--k-fold", "2", "--epochs", "2",
            "--set", "train.precision=bf16", "--set", "train.batch_size=32"]},
        "fold_parallel": {"checks": "--fold-parallel: the folds as actors in the trial's GPU bundles", "argv": [
            *run, "--space", "whisper_balancing", *common(args, scratch, "fold_parallel"), "--num-samples", "1",
            "--fold-parallel", "--gpus-per-trial", "1", "--k-fold", "2", "--epochs", "1",
            "--set", "train.precision=bf16"]},
        "encoder_pass": {"checks": "the probe's encoder pass on the GPU (clips per second)", "argv": None},
        "lpft_trial": {"checks": "LP-FT: probe epoch from the cache, then fine-tuning on the GPU", "argv": [
            *run, "--space", "whisper_lpft", *common(args, scratch, "lpft_trial"), "--num-samples", "1",
            "--gpus-per-trial", "1", "--k-fold", "2", "--epochs", "2", "--set", "train.probe_epochs=1",
            "--set", "augment.time_masks=0", "--set", "augment.freq_masks=0"]},
    }
    return [{"part": name, **parts[name]} for name in args.parts.split(",")]


class PeakMemory:
    """The card's peak memory.used (MiB) while a block runs, from nvidia-smi every 0.25 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.peak = max([self.peak, *(int(line) for line in out.split() if line.strip().isdigit())])
            except (OSError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.25)

    def __enter__(self) -> PeakMemory:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def encoder_pass(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """The frozen-encoder cache built on the GPU for every clip, as a probe trial builds it."""
    sys.path.insert(0, str(REPO))
    import torch

    from core.checks import check_config
    from core.config import Config
    from core.data.dataset import prepare_data
    from core.models import MODELS
    from core.models.frozen import open_encoded

    config = check_config(Config().with_overrides({
        "data.manifest": args.data, "data.max_seconds": args.max_seconds, "data.cache_dir": str(scratch / "cache"),
        "model.pretrained": args.weights, "model.freeze_encoder": True, "train.device": "cuda",
        "train.eval_batch_size": 128}))
    data = prepare_data(config)
    device = torch.device("cuda")
    spec = MODELS.get("whisper")
    model, featurizer = spec.build(config, data.num_outputs).to(device), spec.featurizer(config).to(device)
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    open_encoded(config, data, model, featurizer, device)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"clips": int(len(data.targets)), "clips_per_second": round(len(data.targets) / seconds, 1),
            "seconds": round(seconds, 2), "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20)}


def run_part(part: dict[str, Any], args: argparse.Namespace, scratch: Path, left: float) -> dict[str, Any]:
    if left < 30:
        return {"status": "skipped", "why": f"the {BUDGET_SECONDS} s budget is spent"}
    started = time.perf_counter()
    with PeakMemory() as memory:
        try:
            if part["argv"] is None:
                found = encoder_pass(args, scratch)
                status, tail = "ok", ""
            else:
                done = subprocess.run(part["argv"], capture_output=True, text=True, cwd=REPO,
                                      timeout=min(args.part_timeout, left))
                found = {"returncode": done.returncode}
                status, tail = ("ok", "") if done.returncode == 0 else ("failed", (done.stdout + done.stderr)[-2000:])
        except subprocess.TimeoutExpired:
            found, status, tail = {}, "failed", f"timed out after {min(args.part_timeout, left):.0f} s"
        except Exception as error:  # a check reports every failure; the next part still runs
            found, status, tail = {}, "failed", f"{type(error).__name__}: {error}"
    result = {"status": status, "seconds": round(time.perf_counter() - started, 1),
              "peak_gpu_mib": memory.peak or found.get("peak_mib"), **found}
    return {**result, "output_tail": tail} if tail else result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan:
        print(json.dumps({"budget_seconds": BUDGET_SECONDS, "parts": plan(args, Path(args.out or "SCRATCH"))},
                         indent=2))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); run it where one is "
              "(--plan shows what it runs)", file=sys.stderr)
        return 2
    if not (Path(args.weights) / "config.json").is_file():
        print(f"gpu_check: --weights {args.weights}: no pretrained Whisper folder there (config.json)",
              file=sys.stderr)
        return 2
    scratch = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="audiotune-gpu-check-"))
    started = time.perf_counter()
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    try:
        for part in plan(args, scratch):
            results[part["part"]] = run_part(part, args, scratch, BUDGET_SECONDS - (time.perf_counter() - started))
    finally:
        if not args.out:
            shutil.rmtree(scratch, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results, indent=2))
    return 0 if all(results[name]["status"] == "ok" for name in args.parts.split(",")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
