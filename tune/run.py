"""`python -m tune.run --space NAME`: the cross-validated search, end to end.

Everything that can be wrong with the input (flags, config, manifest, audio, splits, model source, storage) is
checked before Ray starts, and reported as one line with exit code 2.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence

import numpy as np
import optuna
import torch

from core.data.dataset import AudioData, prepare_data
from core.errors import UserError
from core.models import MODELS
from core.statistics import FoldStatistics
from search_spaces import SPACES, SearchSpace, describe, format_distribution, sample_parameters
from tune.arguments import RunSettings, build_parser, settings_from_args
from tune.cluster import cluster_gpus, start_ray
from tune.export import build_export
from tune.leaderboard import build_leaderboard, format_leaderboard, to_csv_bytes, to_parquet_bytes
from tune.search import build_tuner, objective, restore_tuner
from tune.storage import RunStore
from tune.study import record_study
from tune.trainable import trial_config

SETTINGS_FILE = "run.json"


def list_spaces() -> str:
    lines = []
    for name in SPACES:
        space = SPACES.get(name)
        lines.append(f"{name}: {space.description}")
        lines.append("  base: " + ", ".join(f"{k}={v}" for k, v in space.base.items()))
        lines.extend(f"  {key}: {format_distribution(dist)}" for key, dist in describe(space).items())
    return "\n".join(lines)


def check_space(space: SearchSpace, settings: RunSettings) -> None:
    """Every key the space can suggest must be a valid config override (caught now, not in trial 1)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=settings.seed))
    for _ in range(8):
        trial_config(sample_parameters(space, study.ask()), settings.base)


def describe_data(data: AudioData) -> str:
    development = data.splits.development
    if data.regression:
        values = data.targets[development]
        target = f"target mean {values.mean():.3g}, range {values.min():.3g}..{values.max():.3g}"
    else:
        counts = np.bincount(data.targets[development], minlength=len(data.classes))
        target = ", ".join(f"{name} {count}" for name, count in zip(data.classes, counts, strict=True))
    speakers = len(np.unique(data.speakers)) if data.speakers is not None else "no"
    folds = " ".join(f"{len(f.train)}/{len(f.valid)}" for f in data.splits.folds)
    return (f"data: {len(data.targets)} clips, {speakers} speakers, {len(data.words)} words; "
            f"test {len(data.splits.test)} held out; development: {target}; folds (train/valid): {folds}")


def preflight_model(settings: RunSettings, data: AudioData) -> None:
    """Build the model once on CPU so a bad checkpoint path or shape fails here, not in every trial."""
    config = settings.config
    spec, stats = MODELS.get(config.model.name), FoldStatistics.from_data(data, data.splits.development)
    try:
        spec.build(config, data.num_outputs, stats)
        spec.featurizer(config, stats)  # age/word rows need ages: a manifest without them fails here
    except UserError:
        raise
    except OSError as error:
        raise UserError(f"model.pretrained={config.model.pretrained!r}: cannot load ({error}). Give a local "
                        "folder, a reachable hub id, or 'none'") from error


def resume_command(settings: RunSettings, store: RunStore) -> str:
    return shlex.join([sys.executable, "-m", "tune.run", "--space", settings.space, "--name", settings.name,
                       "--storage", store.storage, "--resume"])


def prepare(argv: Sequence[str] | None) -> tuple[RunSettings, SearchSpace, RunStore, AudioData, object]:
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        print(list_spaces())
        raise SystemExit(0)
    if not args.space:
        raise UserError("--space is required (see --list-spaces)")
    space = SPACES.get(args.space)
    if args.resume:
        if not args.name:
            raise UserError("--resume needs the --name of the experiment to continue")
        store = RunStore(args.storage, args.name)
        if not store.exists(SETTINGS_FILE):
            raise UserError(f"--resume: no experiment {args.name!r} in {store.storage}")
        settings = RunSettings.from_json(store.read_bytes(SETTINGS_FILE))
    else:
        settings = settings_from_args(args, space)
        store = RunStore(args.storage, settings.name)
        if store.exists() and not args.overwrite:
            raise UserError(f"experiment {store.location} exists: --resume to continue it, --name for a new one, "
                            "or --overwrite to replace it")
    store.check_writable()
    check_space(space, settings)
    data = prepare_data(settings.config, progress=print)
    print(describe_data(data), flush=True)
    preflight_model(settings, data)
    return settings, space, store, data, args


def main(argv: Sequence[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    try:
        settings, space, store, _, args = prepare(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if args.overwrite and not args.resume and store.exists():
        store.fs.delete_dir(store.path)
    start_ray(args.address)
    if settings.gpus_per_trial > 0 and cluster_gpus() < settings.gpus_per_trial:
        print(f"error: --gpus-per-trial {settings.gpus_per_trial:g} but the Ray cluster has {cluster_gpus():g} "
              "GPUs", file=sys.stderr)
        return 2
    if not args.resume:
        store.write_bytes(SETTINGS_FILE, settings.to_json())
    key, mode = objective(settings)
    print(f"search {settings.name}: space {settings.space}, {settings.num_samples} trials x "
          f"{settings.config.data.k_fold} folds x {settings.config.train.epochs} epochs, optimising {key} ({mode}); "
          f"results in {store.location}", flush=True)
    started = time.time()
    tuner = restore_tuner(settings, store) if args.resume else build_tuner(settings, space, store)
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        print(f"\ninterrupted; state is saved. Resume with:\n  {resume_command(settings, store)}", file=sys.stderr)
        return 130
    return finish(settings, space, store, grid, started)


def finish(settings: RunSettings, space: SearchSpace, store: RunStore, grid: object, started: float) -> int:
    metric = settings.config.train.metric
    _, mode = objective(settings)
    table = build_leaderboard(grid, metric, mode, settings.config.train.epochs)
    print("\nleaderboard (fold mean ± std of valid " + metric + "):")
    print(format_leaderboard(table, metric))
    written = [store.write_bytes("leaderboard.csv", to_csv_bytes(table)),
               store.write_bytes("leaderboard.parquet", to_parquet_bytes(table)),
               store.write_bytes("optuna.db", record_study(grid, space, metric, mode, settings.name))]
    if len(table) < settings.num_samples or table["status"].eq("error").all():
        print(f"\nsearch incomplete ({len(table)}/{settings.num_samples} trials). Resume with:\n  "
              f"{resume_command(settings, store)}", file=sys.stderr)
    metadata = {"name": settings.name, "space": settings.space, "num_samples": settings.num_samples,
                "trials": len(table), "seed": settings.seed, "storage": store.location,
                "created": settings.created, "seconds": round(time.time() - started, 1),
                "torch": torch.__version__}
    export = build_export(table, grid, settings.base, metric, metadata)
    if export is None:
        print("error: every trial failed; see the leaderboard's error column", file=sys.stderr)
        return 1
    written.append(store.write_bytes("best_config.json", (json.dumps(export, indent=2) + "\n").encode()))
    score = export["score"]
    print(f"\nbest: trial {export['trial_id']}  {metric} {score['mean']:.4f} ± {score['std']:.4f}  folds "
          + " ".join(f"{v:.3f}" for v in score["folds"]) + f"  (epochs for final training: "
          f"{export['config']['train']['epochs']})")
    print("wrote:\n  " + "\n  ".join(written))
    print(f"next: python -m tune.final --config {store.display('best_config.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
