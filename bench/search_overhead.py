#!/usr/bin/env python3
"""What the search machinery costs: wall time of a small real search (`python -m tune.run`) vs the time the same
fold-epochs take when `train_fold` runs them directly, as JSON.

The search: N trials x k folds x E epochs of the `whisper_balancing` space under --demo (micro Whisper from
scratch) on the test suite's toy set (real audio files, written to a temp dir), one CPU per trial, one trial at a
time, ASHA's grace period = E so that no trial is pruned and every trial trains all its fold-epochs. Then the same
N configs (each trial's sampled parameters over the search's base config) are trained here with `train_fold`,
fold after fold, with nothing around them. Both use the same decode cache, built beforehand, so neither decodes.
`ratio` = search wall time (process start to exit: imports, input checks, Ray start, trials, checkpoints, results)
/ direct `train_fold` time. Goal: <= 1.15. The search's time is also split into before the search starts
(imports, checks, Ray), the Tune run itself, and writing results; `tune_fit_ratio` = the Tune run alone / direct
(what every trial adds, without the fixed costs of one search).

Usage:
    python bench/search_overhead.py                              # 4 trials x 3 folds x 3 epochs, toy set
    python bench/search_overhead.py --trials 8 --epochs 5 --speakers 48
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
from toy_audio import write_toy_dataset  # noqa: E402

from core.config import Config  # noqa: E402
from core.data.dataset import prepare_data  # noqa: E402
from core.train import resolve_device, train_fold  # noqa: E402
from tune.trainable import trial_config  # noqa: E402

SPACE = "whisper_balancing"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="N: trials of the search")
    parser.add_argument("--folds", type=int, default=3, help="k: folds per trial")
    parser.add_argument("--epochs", type=int, default=3, help="E: epochs per fold")
    parser.add_argument("--speakers", type=int, default=24, help="toy set size (3 clips per speaker)")
    parser.add_argument("--max-seconds", type=float, default=1.0, help="clip length (data.max_seconds)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    return parser.parse_args()


def run_search(args: argparse.Namespace, manifest: Path, scratch: Path, device: torch.device
               ) -> tuple[dict[str, float], Path]:
    """Run tune.run as a user would; return its phases' seconds and the experiment folder."""
    command = [sys.executable, "-m", "tune.run", "--space", SPACE, "--demo", "--data", str(manifest),
               "--num-samples", str(args.trials), "--k-fold", str(args.folds), "--epochs", str(args.epochs),
               "--grace-period", str(args.epochs), "--max-concurrent", "1", "--cpus-per-trial", "1",
               "--gpus-per-trial", "1" if device.type == "cuda" else "0",
               "--storage", str(scratch / "runs"), "--name", "overhead",
               "--set", f"data.cache_dir={scratch / 'cache'}", "--set", f"data.max_seconds={args.max_seconds}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    marks: dict[str, float] = {}
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", file=sys.stderr)
            if line.startswith("search ") and "search" not in marks:
                marks["search"] = time.perf_counter()
            if line.startswith("leaderboard") and "leaderboard" not in marks:
                marks["leaderboard"] = time.perf_counter()
    ended = time.perf_counter()
    if process.returncode != 0 or len(marks) < 2:
        sys.exit(f"tune.run failed (exit {process.returncode})")
    phases = {"wall_seconds": ended - started, "before_search_seconds": marks["search"] - started,
              "tune_fit_seconds": marks["leaderboard"] - marks["search"],
              "results_seconds": ended - marks["leaderboard"]}
    return phases, scratch / "runs" / "overhead"


def direct_seconds(base: dict, trials: list[dict], device: torch.device) -> tuple[float, int]:
    """Seconds `train_fold` takes for every fold-epoch of `trials` (sampled parameters), run one after another."""
    torch.set_num_threads(1)  # the trial's one CPU
    seconds, fold_epochs = 0.0, 0
    for params in trials:
        config = trial_config(params, base).with_overrides({"train.device": str(device)})
        data = prepare_data(config, check_audio=False, allow_changed_data=True)  # as a trial does; not timed
        started = time.perf_counter()
        for fold in data.splits.folds:
            fold_epochs += sum(1 for _ in train_fold(config, data, fold))
        seconds += time.perf_counter() - started
    return seconds, fold_epochs


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as folder:
        scratch = Path(folder)
        manifest = write_toy_dataset(scratch / "toy", speakers=args.speakers)
        prepare_data(Config().with_overrides({"data.manifest": str(manifest), "data.cache_dir": str(scratch / "cache"),
                                              "data.max_seconds": args.max_seconds}).validate())  # warm the cache
        search, experiment = run_search(args, manifest, scratch, device)
        base = json.loads((experiment / "run.json").read_text())["base"]
        trials = [json.loads(path.read_text()) for path in sorted(experiment.glob("trial_*/params.json"))]
        direct, fold_epochs = direct_seconds(base, trials, device)
    report = {"space": SPACE, "device": str(device), "trials": len(trials), "folds": args.folds,
              "epochs": args.epochs, "fold_epochs": fold_epochs, "clips": 3 * args.speakers,
              "search": {key: round(value, 2) for key, value in search.items()},
              "direct_train_fold_seconds": round(direct, 2),
              "tune_fit_ratio": round(search["tune_fit_seconds"] / direct, 3),  # without the fixed costs
              "ratio": round(search["wall_seconds"] / direct, 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
