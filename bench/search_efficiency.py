#!/usr/bin/env python3
"""Does TPE + cross-validated ASHA find good configs faster than random search? Best score vs fold-epochs spent,
for both, on the same budget and the same folds, over several sampler seeds, as JSON.

Both searches are real Ray Tune runs of the project's own pieces (tune/engine/search.py: the k-fold trainable with its
checkpoints, `DivergenceAwareOptunaSearch` over the space's `PinnedSpace`, the run config with its callbacks):
  (a) `tpe_asha`: what `tune.run` searches with - `tune.engine.search.build_sampler`'s TPE (random trials first scaled
      to the budget: 2 for N = 5; multivariate; grouped for conditional spaces) + ASHA (grace period 2,
      reduction 3) pruning on the fold-mean curve;
  (b) `tpe_default`: the same with Optuna's default TPESampler (10 random trials first, independent densities):
      the sampler before issue #9's settings;
  (c) `random`: Optuna's RandomSampler, no pruning (ASHA's grace period = the epoch count), N trials.
`tune.run` has no flag for the sampler, so the Tuners are built here, as `build_tuner` builds them. The budget is
random's: N trials x k folds x E epochs fold-epochs; a stopper ends the TPE + ASHA search once it has spent as many
(it runs as many trials as fit). The score is the project's: a trial's best fold-mean UAR over its epochs, so "best
so far" after b fold-epochs is the highest fold-mean reported by then. The data and training seeds are fixed (same
split and folds everywhere); only the sampler seed changes between repeats.

Default budget, chosen to fit 10 minutes on 2 cores (6.5 min idle): the whole bundled demo set (1,200 clips: 48
speakers, 3 folds), 1.25 s clips (every demo clip is <= 1.26 s), micro Whisper from scratch (--demo) with the
demo's from-scratch recipe (per-clip log-mel, max pooling: `RECIPE`), 6 epochs, random = 4 trials (72 fold-epochs
per search), 2 trials at a time, 3 seeds. `--words rabbit,red,...` restricts the set (8 words and 5 epochs: 3.5
min, but the model stays near chance there). The space is `whisper_conditioning` (learning rate 1e-5..1e-3, log,
and age/word conditioning none | rows | embed): it has structure a sampler can learn (from scratch, low rates do
not learn in a few epochs; the age and word inputs alone are worth ~0.6 UAR on the demo set).
`ratio` = the share of the budget at which TPE + ASHA first reaches random's final best (the median over seeds;
null when it never does within the budget), `tpe_default_ratio` the same for (b). Goal: <= 0.4.

`--space whisper_probe` (issue #22) compares the samplers of `tune.run --sampler` instead, on the frozen-encoder
probe (cheap trials after one encoder pass, built before any search is timed): real weights (`--weights DIR`, e.g.
../shared/models/whisper-tiny.en), the loss pinned to ce so the space is one fixed set of parameters and gp is
Optuna's GPSampler (in a conditional space it would fall back to TPE), `--trials` 24 for every sampler, no pruning
(a sampler is compared, not ASHA), 3 seeds. Each search runs its trials one after another in one process (the
sampler `tune.run --sampler` builds, each trial scored as the search scores it), `--max-concurrent` searches at a
time: Ray's per-trial start-up would be most of a probe trial's cost (bench/probe_trial.py measures it). It reports
each sampler's mean best and the share of random's budget it needs to reach random's best (per seed and the mean;
null when a seed never does).

Usage:
    python bench/search_efficiency.py
    python bench/search_efficiency.py --seeds 0,1,2,3,4 --random-trials 10 --epochs 8
    python bench/search_efficiency.py --space whisper_probe --weights ../shared/models/whisper-tiny.en
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, whichever folder it runs from

import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.samplers import RandomSampler, TPESampler  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler  # noqa: E402

from core.data.dataset import prepare_data  # noqa: E402
from search_spaces import SPACES  # noqa: E402
from search_spaces.pinning import PinnedSpace  # noqa: E402
from tune.engine.arguments import RunSettings, build_parser, settings_from_args  # noqa: E402
from tune.engine.cluster import start_ray  # noqa: E402
from tune.engine.search import (  # noqa: E402
    DivergenceAwareOptunaSearch,
    build_sampler,
    objective,
    run_config,
    trainable,
    trial_dirname,
)
from tune.results.storage import RunStore  # noqa: E402

SPACE = "whisper_conditioning"
# The demo's from-scratch recipe (search_spaces/whisper_balancing.py's demo settings): with Whisper's log-mel and mean
# pooling the micro model stayed at chance on this budget, so no sampler could show anything.
RECIPE = ("--set", "features.normalize=clip", "--set", "model.pooling=max")
METHODS = ("random", "tpe_default", "tpe_asha")
PROBE_SPACE = "whisper_probe"
PROBE_PINS = ("--set", "loss.name=ce", "--set", "train.batch_size=32")
SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "demo" / "manifest.csv"), help="manifest")
    parser.add_argument("--words", default="all", help="data.filter_words, comma-separated ('all': every word)")
    parser.add_argument("--max-seconds", type=float, default=1.25, help="clip length (data.max_seconds)")
    parser.add_argument("--folds", type=int, default=3, help="k")
    parser.add_argument("--epochs", type=int, default=6, help="E: epochs per fold")
    parser.add_argument("--random-trials", type=int, default=4, help="N: random search's trials (sets the budget)")
    parser.add_argument("--grace-period", type=int, default=2, help="ASHA's grace period for TPE + ASHA")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once (one CPU each)")
    parser.add_argument("--seeds", default="0,1,2", help="sampler seeds, comma-separated")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, 1/max-concurrent GPU a trial) | cpu")
    parser.add_argument("--space", default=SPACE, choices=(SPACE, PROBE_SPACE),
                        help="whisper_probe: compare tune.run's --sampler choices on the probe (see above)")
    parser.add_argument("--weights", help="whisper_probe: a pretrained Whisper folder (model.pretrained)")
    parser.add_argument("--trials", type=int, default=24, help="whisper_probe: trials per sampler")
    parser.add_argument("--samplers", default="tpe,gp,random", help="whisper_probe: samplers, comma-separated")
    args = parser.parse_args()
    if args.space == PROBE_SPACE and not (args.weights and (Path(args.weights) / "config.json").is_file()):
        parser.error(f"--weights {args.weights}: no pretrained Whisper folder there (config.json); --space "
                     f"{PROBE_SPACE} needs one")
    return args


class Budget(tune.Stopper):
    """Counts fold-epochs as results arrive (each result is one epoch of every fold of a trial), records the fold
    mean of each, and ends the whole search once the budget is spent."""

    def __init__(self, budget: int, folds: int, key: str) -> None:
        self.budget, self.folds, self.key = budget, folds, key
        self.used = 0
        self.reports: list[tuple[int, float]] = []  # (fold-epochs spent so far, fold-mean score of this result)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.used += self.folds - int(result.get("folds_stopped", 0))
        self.reports.append((self.used, float(result.get(self.key, math.nan))))
        return False

    def stop_all(self) -> bool:
        return self.used >= self.budget


def settings_for(args: argparse.Namespace, scratch: Path, gpus: float) -> RunSettings:
    """The search's settings as `tune.run --demo` makes them from these flags."""
    words = [] if args.words == "all" else ["--set", f"data.filter_words={args.words}"]
    argv = ["--space", SPACE, "--demo", "--data", args.data, "--k-fold", str(args.folds), "--epochs", str(args.epochs),
            "--cpus-per-trial", "1", "--gpus-per-trial", str(gpus), "--max-concurrent", str(args.max_concurrent),
            "--storage", str(scratch / "runs"), "--name", "efficiency", "--set", f"data.cache_dir={scratch / 'cache'}",
            "--set", f"data.max_seconds={args.max_seconds}", *words, *RECIPE]
    return settings_from_args(build_parser().parse_args(argv), SPACES.get(SPACE))


def search(settings: RunSettings, scratch: Path, name: str, sampler: optuna.samplers.BaseSampler, grace_period: int,
           num_samples: int, budget: Budget) -> float:
    """One search as `tune.engine.search.build_tuner` builds it, with this sampler and grace period; its seconds."""
    key, mode = objective(settings)
    epochs = settings.config.train.epochs
    store = RunStore(str(scratch / "runs"), name)
    searcher = DivergenceAwareOptunaSearch(space=PinnedSpace(settings.space, settings.pinned, settings.demo),
                                           metric=key, mode=mode, sampler=sampler)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace_period,
                              reduction_factor=3)
    config = run_config(settings, store)
    config.name, config.stop = name, budget
    tune_config = tune.TuneConfig(metric=key, mode=mode, search_alg=searcher, scheduler=scheduler,
                                  num_samples=num_samples, max_concurrent_trials=settings.max_concurrent,
                                  trial_dirname_creator=trial_dirname, reuse_actors=True)
    tuner = tune.Tuner(trainable(settings), run_config=config, tune_config=tune_config)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the per-trial lines; stdout carries only the JSON
        tuner.fit()
    return time.perf_counter() - started


def best_so_far(reports: list[tuple[int, float]], spent: int) -> float | None:
    scores = [score for used, score in reports if used <= spent and not math.isnan(score)]
    return max(scores) if scores else None


def first_reaching(reports: list[tuple[int, float]], target: float) -> int | None:
    return next((used for used, score in reports if score >= target), None)


def median_share(shares: list[float | None]) -> float | None:
    """The median over seeds, a seed that never reached the target counting as the worst (None when the median
    falls on one)."""
    ordered = sorted(shares, key=lambda share: (share is None, share or 0.0))
    median = ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else None
    if len(ordered) % 2 == 0 and None not in ordered[len(ordered) // 2 - 1: len(ordered) // 2 + 1]:
        median = statistics.median(ordered)
    return median


def probe_settings(args: argparse.Namespace, scratch: Path) -> RunSettings:
    """The probe search's settings as `tune.run --space whisper_probe` makes them from these flags."""
    words = [] if args.words == "all" else ["--set", f"data.filter_words={args.words}"]
    argv = ["--space", PROBE_SPACE, "--data", args.data, "--k-fold", str(args.folds), "--epochs", str(args.epochs),
            "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--max-concurrent", str(args.max_concurrent),
            "--storage", str(scratch / "runs"), "--name", "efficiency", "--set", f"data.cache_dir={scratch / 'cache'}",
            "--set", f"data.max_seconds={args.max_seconds}", "--set", "train.device=cpu",
            "--set", f"model.pretrained={Path(args.weights).resolve()}", *PROBE_PINS, *words]
    return settings_from_args(build_parser().parse_args(argv), SPACES.get(PROBE_SPACE))


def probe_search(job: tuple[RunSettings, str, int, int]) -> tuple[str, int, list[float], float]:
    """One search of `trials` on the probe in this process, sequentially (Ray's trial start-up would be most of a
    probe trial's cost, and a sampler is compared here, not Ray): the sampler `tune.run --sampler` builds, each
    trial scored as the search scores it (core/scoring.py: the fold-mean curve at e*). Returns (sampler, seed, each
    trial's score in order, seconds)."""
    from core.checks import trial_config
    from core.metrics import METRICS
    from core.scoring import cross_validated_score
    from core.train import train_fold

    settings, name, seed, trials = job
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = prepare_data(settings.config)
    space = PinnedSpace(settings.space, settings.pinned, settings.demo)
    study = optuna.create_study(direction="maximize", sampler=build_sampler(
        replace(settings, seed=seed, num_samples=trials, sampler=name), space))
    metric, select = settings.config.train.metric, settings.config.train.select
    scores, started = [], time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        config = trial_config(space.sample(trial), settings.base)
        curves = [[r.metrics.get(metric, math.nan) for r in train_fold(config, data, fold)]
                  for fold in data.splits.folds]
        value = cross_validated_score(curves, METRICS.get(metric).mode, select).score
        scores.append(value)
        study.tell(trial, value if math.isfinite(value) else None,
                   state=None if math.isfinite(value) else optuna.trial.TrialState.FAIL)
    print(f"seed {seed} {name}: best {max(scores):.4f}, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return name, seed, scores, time.perf_counter() - started


def probe_main(args: argparse.Namespace) -> None:
    """tune.run's samplers on the probe space: the same trials each, several seeds, `--max-concurrent` processes."""
    import multiprocessing

    from core.train import train_fold

    seeds = [int(seed) for seed in args.seeds.split(",")]
    samplers = args.samplers.split(",")
    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as folder:
        scratch = Path(folder)
        settings = probe_settings(args, scratch)
        data = prepare_data(settings.config)
        started = time.perf_counter()  # the one encoder pass, before any search is timed
        list(train_fold(settings.config.with_overrides({"train.epochs": 1}), data, data.splits.folds[0]))
        encoder_seconds = time.perf_counter() - started
        jobs = [(settings, name, seed, args.trials) for seed in seeds for name in samplers]
        with multiprocessing.get_context("spawn").Pool(args.max_concurrent) as pool:
            done = pool.map(probe_search, jobs, chunksize=1)
    runs = {(name, seed): (scores, seconds) for name, seed, scores, seconds in done}
    per_seed: dict[str, Any] = {}
    shares: dict[str, list[float | None]] = {name: [] for name in samplers}
    bests: dict[str, list[float]] = {name: [] for name in samplers}
    for seed in seeds:
        random_scores = runs.get(("random", seed), ([], 0.0))[0]
        target = max(random_scores) if random_scores else None
        per_seed[str(seed)] = {"random_best": target}
        for name in samplers:
            scores, seconds = runs[(name, seed)]
            best = max(scores)
            bests[name].append(best)
            reached = next((i + 1 for i, v in enumerate(scores) if target is not None and v >= target), None)
            share = reached / args.trials if reached is not None else None
            shares[name].append(share)
            per_seed[str(seed)][name] = {"best": round(best, 4), "share_to_reach_random_best": share,
                                         "best_so_far": [round(max(scores[:i + 1]), 4) for i in range(len(scores))],
                                         "seconds": round(seconds, 1)}
    report = {"space": PROBE_SPACE, "pinned": " ".join(PROBE_PINS[1::2]), "weights": str(Path(args.weights).name),
              "data": args.data, "clips": int(len(data.targets)), "folds": args.folds, "epochs": args.epochs,
              "trials": args.trials, "processes": args.max_concurrent, "metric": settings.config.train.metric,
              "encoder_pass_seconds": round(encoder_seconds, 1), "seeds": per_seed,
              "mean_best": {name: round(statistics.fmean(values), 4) for name, values in bests.items()},
              "mean_share_to_reach_random_best": {
                  name: (round(statistics.fmean(values), 3) if None not in values else None)
                  for name, values in shares.items()},
              "reached_random_best": {name: sum(v is not None for v in values) for name, values in shares.items()}}
    print(json.dumps(report, indent=2))


def main() -> None:
    args = parse_args()
    if args.space == PROBE_SPACE:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        probe_main(args)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="audiotune-bench-") as folder:
        scratch = Path(folder)
        settings = settings_for(args, scratch, 1 / args.max_concurrent if cuda else 0.0)
        data = prepare_data(settings.config)  # build the decode cache once, before any search is timed
        key, _ = objective(settings)
        budget = args.random_trials * args.folds * args.epochs
        start_ray(None, num_cpus=args.max_concurrent, num_gpus=1 if cuda else 0)
        for seed in seeds:
            runs[seed] = {}
            for method in METHODS:
                counter = Budget(budget, args.folds, key)
                if method == "random":
                    seconds = search(settings, scratch, f"random-{seed}", RandomSampler(seed=seed), args.epochs,
                                     args.random_trials, counter)
                else:  # Optuna's default TPE (10 random trials first), or tune.run's (tune.engine.search.build_sampler)
                    sampler = (TPESampler(seed=seed) if method == "tpe_default" else build_sampler(
                        replace(settings, seed=seed, num_samples=args.random_trials),
                        PinnedSpace(settings.space, settings.pinned, settings.demo)))
                    seconds = search(settings, scratch, f"{method}-{seed}", sampler, args.grace_period,
                                     10 * args.random_trials, counter)
                if not counter.reports:
                    sys.exit(f"{method} seed {seed}: no results reached the bench (did every trial fail?)")
                runs[seed][method] = {"seconds": seconds, "reports": counter.reports}
                print(f"seed {seed} {method}: {len(counter.reports)} results, {counter.used} fold-epochs, "
                      f"best {best_so_far(counter.reports, budget)}, {seconds:.0f}s", file=sys.stderr)
    per_seed: dict[str, Any] = {}
    shares: dict[str, list[float | None]] = {"tpe_default": [], "tpe_asha": []}
    for seed, methods in runs.items():
        target = best_so_far(methods["random"]["reports"], budget)
        reached_at = {}
        for method, found in shares.items():
            reached = first_reaching(methods[method]["reports"], target) if target is not None else None
            reached_at[f"{method}_reaches_it_at_share"] = share = (
                reached / budget if reached is not None and reached <= budget else None)
            found.append(share)
        per_seed[str(seed)] = {
            "random_final_best": target, **reached_at,
            **{method: {"seconds": round(run["seconds"], 1), "fold_epochs": run["reports"][-1][0],
                        "results": len(run["reports"]),
                        "best_at_share": {str(s): best_so_far(run["reports"], int(s * budget)) for s in SHARES}}
               for method, run in methods.items()}}
    report = {"space": SPACE, "data": args.data, "words": args.words, "clips": int(len(data.targets)),
              "folds": args.folds, "epochs": args.epochs, "random_trials": args.random_trials,
              "budget_fold_epochs": budget, "max_concurrent": args.max_concurrent, "device": "cuda" if cuda else "cpu",
              "metric": key, "recipe": " ".join(RECIPE[1::2]), "seeds": per_seed,
              "tpe_default_ratio": median_share(shares["tpe_default"]), "ratio": median_share(shares["tpe_asha"])}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
