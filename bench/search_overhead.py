#!/usr/bin/env python3
"""What the search machinery costs: wall time of a real search (`python -m tune.run`) vs the time the same
fold-epochs take when `train_fold` runs them directly, as JSON.

The search: N trials x k folds x E epochs of the `whisper_balancing` space under --demo (micro Whisper from
scratch), one CPU per trial, one trial at a time. Two workloads (`--data`):
- `demo` (the default, what the goal is read on): the bundled demo data (1,200 clips of 2 s) searched as
  `--demo` searches it: its budget (8 trials x 3 folds x 12 epochs, from tune.engine.arguments.DEMO_BUDGET and
  search_spaces.DEMO_OVERRIDES), ASHA with its grace period of 2 (so some trials stop
  early, as they do for a user);
- `toy`: the test suite's toy set (72 clips of 1 s, written to a temp dir), 4 x 3 x 3, grace period = E: a quick
  check whose bare fold-epochs take seconds, so it mostly measures the search's fixed costs.
Then the same N configs (each trial's sampled parameters over the search's base config) are trained here with
`train_fold`, fold after fold, for the epochs each trial ran in the search, with nothing around them. Both use the
same decode cache, built beforehand, so neither decodes.
`ratio` = search wall time (process start to exit: imports, input checks, Ray start, trials, checkpoints, results)
/ direct `train_fold` time. Goal: <= 1.15. The search's time is also split into before the search starts
(imports, checks, Ray), the Tune run itself, and writing results and exiting; `tune_fit_ratio` = the Tune run
alone / direct (what every trial adds, without the fixed costs of one search).
`--compare REF` also runs the search from the code of git commit REF (exported with `git archive`), back to back
with this one on the same data: on a loaded machine, before/after ratios measured together.

Usage:
    python bench/search_overhead.py                              # demo data, --demo's 8 trials x 3 folds x 12 epochs
    python bench/search_overhead.py --data toy                   # toy set, 4 x 3 x 3: a minute or two
    python bench/search_overhead.py --data toy --compare main    # this code and main's, one after the other
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
from support.toy_audio import write_toy_dataset  # noqa: E402

from core.checks import trial_config  # noqa: E402
from core.config import Config  # noqa: E402
from core.data.dataset import prepare_data  # noqa: E402
from core.devices import resolve_device  # noqa: E402
from core.train import train_fold  # noqa: E402
from search_spaces import DEMO_OVERRIDES  # noqa: E402
from tune.engine.arguments import DEMO_BUDGET  # noqa: E402

SPACE = "whisper_balancing"
DEMO_MANIFEST = REPO / "data" / "demo" / "manifest.csv"
WORKLOADS = {  # --data: (trials, epochs, grace period (None: = epochs, nothing pruned), clip seconds)
    "demo": (DEMO_BUDGET["num_samples"], DEMO_OVERRIDES["train.epochs"], 2, 2.0),
    "toy": (4, 3, None, 1.0),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", choices=sorted(WORKLOADS), default="demo",
                        help="demo: the bundled demo data as --demo searches it; toy: the test suite's toy set")
    parser.add_argument("--trials", type=int, help="N: trials of the search (demo: 8, as --demo; toy: 4)")
    parser.add_argument("--folds", type=int, default=3, help="k: folds per trial")
    parser.add_argument("--epochs", type=int, help="E: epochs per fold (demo: 12, as --demo; toy: 3)")
    parser.add_argument("--grace-period", type=int, help="ASHA's (demo: 2, as --demo; toy: = epochs)")
    parser.add_argument("--speakers", type=int, default=24, help="toy set size (3 clips per speaker)")
    parser.add_argument("--max-seconds", type=float, help="clip length, data.max_seconds (demo: 2, toy: 1)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    parser.add_argument("--compare", metavar="REF", help="also run the search from git commit REF's code")
    args = parser.parse_args()
    trials, epochs, grace, seconds = WORKLOADS[args.data]
    args.trials = args.trials or trials
    args.epochs = args.epochs or epochs
    args.grace_period = args.grace_period or grace or args.epochs
    args.max_seconds = args.max_seconds or seconds
    return args


def run_search(args: argparse.Namespace, manifest: Path, scratch: Path, device: torch.device, code: Path = REPO,
               name: str = "overhead") -> tuple[dict[str, float], Path]:
    """Run tune.run (from the code in `code`) as a user would; return its phases' seconds and the experiment
    folder."""
    command = [sys.executable, "-m", "tune.run", "--space", SPACE, "--demo", "--data", str(manifest),
               "--num-samples", str(args.trials), "--k-fold", str(args.folds), "--epochs", str(args.epochs),
               "--grace-period", str(args.grace_period), "--max-concurrent", "1", "--cpus-per-trial", "1",
               "--gpus-per-trial", "1" if device.type == "cuda" else "0",
               "--storage", str(scratch / "runs"), "--name", name,
               "--set", f"data.cache_dir={scratch / 'cache'}", "--set", f"data.max_seconds={args.max_seconds}"]
    env = {**os.environ, "PYTHONPATH": str(code), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    marks: dict[str, float] = {}
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
    return phases, scratch / "runs" / name


def export_code(ref: str, folder: Path) -> Path:
    """The repository's files at commit `ref` (`git archive`), to run its tune.run beside this one."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def trials_run(experiment: Path) -> list[tuple[dict, int]]:
    """(sampled parameters, epochs it ran) of every trial of a finished search, from its trial folders."""
    trials = []
    for folder in sorted(experiment.glob("trial_*")):
        results = (folder / "result.json").read_text().splitlines()
        trials.append((json.loads((folder / "params.json").read_text()), int(json.loads(results[-1])["epoch"])))
    return trials


def summary(phases: dict[str, float], direct: float) -> dict:
    return {"search": {key: round(value, 2) for key, value in phases.items()},
            "tune_fit_ratio": round(phases["tune_fit_seconds"] / direct, 3),  # without the fixed costs
            "ratio": round(phases["wall_seconds"] / direct, 3)}


def direct_seconds(base: dict, trials: list[tuple[dict, int]], device: torch.device) -> tuple[float, int]:
    """Seconds `train_fold` takes for every fold-epoch of `trials` ((sampled parameters, epochs run)), one after
    another; a trial ASHA stopped at epoch e trains e epochs here too (of the same schedule)."""
    torch.set_num_threads(1)  # the trial's one CPU
    seconds, fold_epochs = 0.0, 0
    for params, epochs in trials:
        config = trial_config(params, base).with_overrides({"train.device": str(device)})
        data = prepare_data(config, check_audio=False, allow_changed_data=True)  # as a trial does; not timed
        started = time.perf_counter()
        for fold in data.splits.folds:
            for result in train_fold(config, data, fold):
                fold_epochs += 1
                if result.epoch >= epochs or result.stopped:
                    break
        seconds += time.perf_counter() - started
    return seconds, fold_epochs


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as folder:
        scratch = Path(folder)
        manifest = DEMO_MANIFEST if args.data == "demo" else write_toy_dataset(scratch / "toy", speakers=args.speakers)
        prepare_data(Config().with_overrides({"data.manifest": str(manifest), "data.cache_dir": str(scratch / "cache"),
                                              "data.max_seconds": args.max_seconds}).validate())  # warm the cache
        before = None
        if args.compare:  # first, so that the cache and the page cache are as warm for this code as for it
            code = export_code(args.compare, scratch / "compare")
            before, _ = run_search(args, manifest, scratch, device, code=code, name="compare")
            shutil.rmtree(code)
        search, experiment = run_search(args, manifest, scratch, device)
        base = json.loads((experiment / "run.json").read_text())["base"]
        trials = trials_run(experiment)
        direct, fold_epochs = direct_seconds(base, trials, device)
    report = {"space": SPACE, "data": args.data, "device": str(device), "trials": len(trials), "folds": args.folds,
              "epochs": args.epochs, "grace_period": args.grace_period, "fold_epochs": fold_epochs,
              "clips": 1200 if args.data == "demo" else 3 * args.speakers,
              "direct_train_fold_seconds": round(direct, 2), **summary(search, direct)}
    if before is not None:  # the other code's trials sample the same configs (same seed), so `direct` fits both
        report["compare"] = {"ref": args.compare, **summary(before, direct)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
