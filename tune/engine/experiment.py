"""One search experiment end to end (`python -m tune.run`, tune/run.py, is its command line): checks, Ray, the
search and its results.

Everything that can be wrong with the input (flags, config, manifest, audio, splits, model source, storage) is
checked before Ray starts, and reported as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import torch
from ray.tune import ResultGrid, Tuner

from core.checks import check_run, trial_config
from core.command_line import plain_json
from core.config import Config, parse_assignment
from core.data.dataset import AudioData, CheckedData, prepare_data
from core.data.recorded import record
from core.errors import ConfigError, UserError
from core.models import MODELS
from core.report import report_of_rows
from core.statistics import FoldStatistics
from search_spaces import SPACES, SearchSpace, describe, format_distribution
from search_spaces.pinning import PinnedSpace
from tune.engine.arguments import RunSettings, build_parser, parse_args, settings_from_args
from tune.engine.cluster import check_reachable, cluster_gpus, cluster_nodes, local_gpus, local_nodes, start_ray
from tune.engine.interrupt import Interruption
from tune.engine.private_api import grid_trials
from tune.engine.resources import check_device, check_fits, resolve_gpus, trial_resources
from tune.engine.search import build_tuner, check_objective_data, constraints, objective, objectives, restore_tuner
from tune.engine.storage_full import StorageFull, hide_storage_full_logs, out_of_space
from tune.engine.study import STUDY_FILE
from tune.engine.trainable import selected_predictions
from tune.results.export import build_export, out_of_fold
from tune.results.leaderboard import build_leaderboard, format_leaderboard, to_csv_bytes, to_parquet_bytes
from tune.results.storage import RunStore

# What only the results need (matplotlib comes with them: 1-2 s of a search's start here): imported by a thread while
# the trials train, when the driver only waits, rather than before the checks (see `search`).
RESULT_MODULES = ("tune.results.pareto", "tune.results.plots", "tune.results.page")

SETTINGS_FILE = "run.json"
SPLITS_FILE = "splits.json"


def list_spaces() -> str:
    lines = []
    for name in SPACES:
        space = SPACES.get(name)
        lines.append(f"{name}: {space.description}")
        lines.append("  base: " + ", ".join(f"{k}={v}" for k, v in space.base.items()))
        lines.extend(f"  {key}: {' or '.join(map(format_distribution, dists))}"
                     for key, dists in describe(space).items())
    return "\n".join(lines)


def check_space(space: SearchSpace, settings: RunSettings) -> None:
    """Every key the space can suggest must be a valid config override (caught now, not in trial 1)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=settings.seed))
    define = PinnedSpace(space.name, settings.pinned, settings.demo)
    for _ in range(8):
        trial_config(define.sample(study.ask()), settings.base)


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
            f"test {len(data.splits.test)} held out ({data.splits.test_share:.1%}); development: {target}; "
            f"folds (train/valid): {folds}")


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


def resume_command(settings: RunSettings, store: RunStore, address: str | None = None) -> str:
    cluster = ["--address", address] if address else []
    return shlex.join([sys.executable, "-m", "tune.run", "--space", settings.space, "--name", settings.name,
                       "--storage", store.storage, *cluster, "--resume"])


def splits_json(settings: RunSettings, data: AudioData) -> bytes:
    """The test set and every fold, clips by path, with the manifest's content hash (core/data/recorded.py): what
    trials, `--resume`, `core.train` and `tune.final` use instead of drawing the split again."""
    return (json.dumps(record(data.manifest, settings.config.data.audio_root, data.splits)) + "\n").encode()


def with_splits_file(settings: RunSettings, location: str) -> RunSettings:
    base = settings.config.with_overrides({"data.splits_file": location}).to_dict()
    return replace(settings, base=base)


def prepare(argv: Sequence[str] | None) -> tuple[RunSettings, SearchSpace, RunStore, AudioData, argparse.Namespace]:
    """Every check of tune.run, in order; raises UserError before Ray starts."""
    settings, space, store, args = parse_settings(argv)
    return settings, space, store, check_data(settings, args.allow_changed_data), args


def check_data(settings: RunSettings, allow_changed_data: bool = False) -> AudioData:
    """Manifest, audio, decode cache, splits and the model: the input checks that need the data."""
    data = prepare_data(settings.config, progress=print, allow_changed_data=allow_changed_data)
    print(describe_data(data), flush=True)
    check_run(settings.config, data)
    check_objective_data(settings, data)
    preflight_model(settings, data)
    return data


def parse_settings(argv: Sequence[str] | None) -> tuple[RunSettings, SearchSpace, RunStore, argparse.Namespace]:
    """Flags, config, space, storage and (local Ray) GPUs: the checks that need no data. tune.submit runs these
    even when the data is visible only on the cluster."""
    args = parse_args(argv)  # --config FILE beneath the flags
    if args.list_spaces:
        print(list_spaces())
        raise SystemExit(0)
    if not args.space and not args.resume:  # a resumed search's space is in its run.json
        raise UserError("--space is required (see --list-spaces)")
    space = SPACES.get(args.space) if args.space else None
    if args.resume:
        if args.name is None:
            raise UserError("--resume needs the --name of the experiment to continue")
        store = RunStore(args.storage, args.name)
        if not store.exists(SETTINGS_FILE):
            raise UserError(f"--resume: no experiment {args.name!r} in {store.storage}")
        store.check_free()
        if not Tuner.can_restore(store.location):
            raise UserError(f"--resume: experiment {store.location} has no saved search state (it stopped before "
                            "Tune saved any); start it again with --overwrite")
        settings = RunSettings.from_json(store.read_bytes(SETTINGS_FILE), store.display(SETTINGS_FILE))
        check_resume_flags(args, settings)
        space = SPACES.get(settings.space)
    else:
        assert space is not None
        settings = settings_from_args(args, space)
        store = RunStore(args.storage, settings.name)
        if store.exists() and not args.overwrite:
            raise UserError(f"experiment {store.location} exists: --resume to continue it, --name for a new one, "
                            "or --overwrite to replace it")
        if store.exists() and not store.is_ours():
            raise UserError(f"--overwrite: {store.location} was not created by audiotune; refusing to delete it: "
                            "pick another --name")
        store.check_free()
    store.check_writable()
    check_space(space, settings)
    if args.address:
        check_reachable(args.address)  # seconds, not the minutes ray.init would retry for
    else:  # a local Ray sees this machine's CPUs and GPUs: check them before starting it
        gpus = resolve_gpus(settings.gpus_per_trial, settings.config.model.name, local_gpus(),
                            "this machine (local Ray)")
        settings = replace(settings, gpus_per_trial=gpus)
        check_resources(settings, local_nodes(), "this machine (local Ray)")
    return settings, space, store, args


# Flags that set a run.json field directly (the rest set config keys of its base).
RESUME_FIELDS = {"num_samples": "num_samples", "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
                 "max_concurrent": "max_concurrent", "grace_period": "grace_period", "seed": "seed", "demo": "demo",
                 "fold_parallel": "fold_parallel", "log_to": "log_to", "mlflow_uri": "mlflow_uri",
                 "objective": "objectives", "constraints": "constraints", "sampler": "sampler"}
RESUME_KEYS = {"data": "data.manifest", "audio_root": "data.audio_root", "target": "data.target",
               "path_column": "data.path_column", "speaker_column": "data.speaker_column",
               "word_column": "data.word_column", "age_column": "data.age_column", "k_fold": "data.k_fold",
               "epochs": "train.epochs"}
RESUME_KEPT = {"space", "name", "storage", "address", "resume", "allow_changed_data", "config", "config_space",
               "file_constraints"}


def check_resume_flags(args: argparse.Namespace, settings: RunSettings) -> None:
    """`--resume` continues the stored run as it was (run.json). The same command with --resume appended is
    accepted: a flag equal to what is stored changes nothing. A flag that would change it is refused, naming the
    stored value, not silently dropped. --space may be left out (run.json has it)."""
    if args.space is not None and args.space != settings.space:
        raise UserError(f"--resume: experiment {settings.name!r} searches space {settings.space!r}, not "
                        f"{args.space!r}")
    defaults = build_parser().parse_args([])
    given = sorted(key for key, value in vars(args).items()
                   if key not in RESUME_KEPT and value != getattr(defaults, key))
    if not given:
        return
    # What these flags would start as a new search, compared with what is stored, flag by flag.
    as_new = argparse.Namespace(**{**vars(args), "space": settings.space})
    would = settings_from_args(as_new, SPACES.get(settings.space))
    stored, new = settings.config, would.config
    differing: list[str] = []
    for key in given:
        flag = "--" + key.replace("_", "-")
        if key in RESUME_FIELDS:
            field_ = RESUME_FIELDS[key]
            old, now = getattr(settings, field_), getattr(would, field_)
            if key == "objective":  # one objective is train.metric, several are listed
                old, now = (old or [stored.train.metric]), (now or [new.train.metric])
            if key == "seed":
                old, now = (old, stored.data.seed, stored.train.seed), (now, new.data.seed, new.train.seed)
            if old != now:
                differing.append(f"{flag} (stored: {_stored(old)})")
        elif key in RESUME_KEYS:
            if stored.get(RESUME_KEYS[key]) != new.get(RESUME_KEYS[key]):
                differing.append(f"{flag} (stored: {RESUME_KEYS[key]}={_stored(stored.get(RESUME_KEYS[key]))})")
        else:  # --set, and the config keys of a --config file (its set:/base:)
            keys = ({parse_assignment(text)[0] for text in args.overrides} if key == "overrides" else
                    set(getattr(args, key)))
            label = "--set" if key == "overrides" else f"--config {args.config}"
            differing.extend(f"{label} {k} (stored: {k}={_stored(stored.get(k))})" for k in sorted(keys)
                             if stored.get(k) != new.get(k))
    if differing:
        raise UserError(f"--resume continues {settings.name!r} with its stored settings (run.json); "
                        f"{', '.join(sorted(set(differing)))} cannot change them: drop it, or start a new search "
                        "under another --name")


def _stored(value: object) -> str:
    if isinstance(value, tuple):  # --seed: the one seed, as stored
        value = value[0]
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "none"
    return "none" if value in (None, "") else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run_search(argv)
    except KeyboardInterrupt:  # before or after the search itself (during it, Interruption takes Ctrl-C)
        print("\ninterrupted", file=sys.stderr)
        return 130


def run_search(argv: Sequence[str] | None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    with contextlib.ExitStack() as held:
        try:
            settings, space, store, args = parse_settings(argv)
            held.enter_context(store.reserve())  # the name is ours from now on: a second run is refused at once
            data = check_data(settings, args.allow_changed_data)
            lock = store.claim(resume=args.resume, overwrite=args.overwrite)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        with lock:  # held while this process searches: a second run or an --overwrite of this one is refused
            return search(settings, space, store, data, args)


def search(settings: RunSettings, space: SearchSpace, store: RunStore, data: AudioData,
           args: argparse.Namespace) -> int:
    try:
        start_ray(args.address)
        # a joined cluster's GPUs are known only now
        settings = replace(settings, gpus_per_trial=resolve_gpus(settings.gpus_per_trial, settings.config.model.name,
                                                                 cluster_gpus()))
        check_resources(settings, cluster_nodes(), "the Ray cluster")
    except UserError as error:
        if not args.resume:
            store.delete()  # nothing but its marker is in it yet: leave no half-made experiment behind
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if not args.resume:  # trials and everything after the search use the split recorded here
        store.write_bytes(SPLITS_FILE, splits_json(settings, data))
        settings = with_splits_file(settings, store.display(SPLITS_FILE))
        store.write_bytes(SETTINGS_FILE, settings.to_json())
    key, mode = objective(settings)
    print(f"search {settings.name}: space {settings.space}, {settings.num_samples} trials x "
          f"{settings.config.data.k_fold} folds x {settings.config.train.epochs} epochs, optimising {key} ({mode}); "
          f"results in {store.location}", flush=True)
    print(f"resources per trial: {describe_resources(settings)}", flush=True)
    started = time.time()
    checked = CheckedData.of(settings.config, data)  # trials reuse what was checked here: no clip is read again
    tuner = (restore_tuner(settings, store, checked) if args.resume else
             build_tuner(settings, space, store, checked))
    threading.Thread(target=import_modules, args=(RESULT_MODULES,), name="result-imports", daemon=True).start()
    interruption = Interruption()
    StorageFull.reset()
    hide_storage_full_logs()
    try:
        with interruption:
            grid = tuner.fit()
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: Tune's last state save was skipped, the one before it stands
    except Exception as error:  # Tune gives up on a state it could not save or read back: a full disk is ours to say
        if not (StorageFull.trial or out_of_space(error)):
            raise
        return storage_full(settings, store, args.address, stopped_at(settings))
    if StorageFull.trial:
        return storage_full(settings, store, args.address, stopped_at(settings))
    if interruption.received:
        print(f"\ninterrupted; the search state is saved. Resume with:\n  "
              f"{resume_command(settings, store, args.address)}", file=sys.stderr)
        return 130
    try:
        return finish(settings, space, store, grid, started, data)
    except OSError as error:  # the leaderboard, study or export did not fit: the search itself is saved
        if not out_of_space(error):
            raise
        return storage_full(settings, store, args.address, "the search ended but its results could not be written")


def import_modules(names: Sequence[str]) -> None:
    for name in names:
        importlib.import_module(name)


def stopped_at(settings: RunSettings) -> str:
    return (f"the search stopped with {StorageFull.finished} of {settings.num_samples} trials finished (kept, with "
            "the search state Tune last saved)")


def storage_full(settings: RunSettings, store: RunStore, address: str | None, what: str) -> int:
    """Exit 1 (not 2): the input was fine and the search ran; the disk under --storage filled up. Files there are
    replaced only by complete ones (tune/results/complete_files.py): the resume continues from the last saved state."""
    print(f"\nerror: --storage {store.storage} is full ({os.strerror(errno.ENOSPC)}); {what}. Free space on it "
          f"and resume with:\n  {resume_command(settings, store, address)}", file=sys.stderr)
    return 1


def check_resources(settings: RunSettings, nodes: list[dict[str, float]], where: str) -> None:
    gpus = settings.gpus_per_trial or 0.0
    check_device(settings.config.train.device, gpus)
    check_fits(settings.cpus_per_trial, gpus, settings.config.data.k_fold, settings.fold_parallel, nodes, where)


def describe_resources(settings: RunSettings) -> str:
    bundles = trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, settings.config.data.k_fold,
                              settings.fold_parallel).bundles
    text = " + ".join(", ".join(f"{amount:g} {name}" for name, amount in bundle.items()) for bundle in bundles)
    return f"{text} (trial + one bundle per fold)" if settings.fold_parallel else text


def write_out_of_fold(store: RunStore, grid: ResultGrid, export: dict, data: AudioData) -> list[str]:
    """The winner's out-of-fold predictions at e* (oof_predictions.csv/.parquet, from its last checkpoint) and
    their clinical report (report.json, core/report.py): every development clip, not just the test set."""
    result = next(r for r in grid if (r.metrics or {}).get("trial_id") == export["trial_id"])
    if result.checkpoint is None:
        print("note: the winner has no checkpoint; no out-of-fold predictions written", file=sys.stderr)
        return []
    with result.checkpoint.as_directory() as folder:
        epoch, outputs = selected_predictions(Path(folder))
    config = Config.from_dict(export["config"])
    table, rows, values = out_of_fold(config, data, outputs)
    written = [store.write_bytes("oof_predictions.csv", to_csv_bytes(table)),
               store.write_bytes("oof_predictions.parquet", to_parquet_bytes(table))]
    try:
        report = {**report_of_rows(config, data, rows, values), "rows": "out-of-fold (development clips)",
                  "epoch": epoch}
    except ConfigError as error:  # e.g. no positive class to name: the predictions stand without a report
        print(f"note: no out-of-fold report.json: {error}", file=sys.stderr)
        return written
    written.append(store.write_bytes("report.json", (json.dumps(plain_json(report), indent=2, allow_nan=False)
                                                     + "\n").encode()))
    return written


def finish(settings: RunSettings, space: SearchSpace, store: RunStore, grid: ResultGrid, started: float,
           data: AudioData) -> int:
    from tune.results.page import write_run_report
    from tune.results.pareto import (  # RESULT_MODULES: imported during the search
        describe_front,
        mark_pareto,
        write_pareto,
    )
    from tune.results.plots import write_search_plots

    metric = settings.config.train.metric
    _, mode = objective(settings)
    others = settings.objectives[1:]  # further objectives: leaderboard columns, a Pareto front (tune/results/pareto.py)
    table = mark_pareto(build_leaderboard(grid, metric, mode, settings.config.train.epochs, others,
                                          constraints(settings)), objectives(settings))
    print(f"\nleaderboard (score: fold-mean valid {metric} at the epoch {settings.config.train.select} picks, "
          "± sample std of the folds there):")
    print(format_leaderboard(table, metric, others=others))
    written = [store.write_bytes("leaderboard.csv", to_csv_bytes(table)),
               store.write_bytes("leaderboard.parquet", to_parquet_bytes(table))]
    if store.exists(STUDY_FILE):  # written trial by trial during the search (tune/engine/study.py)
        written.append(store.display(STUDY_FILE))
    if len(table) < settings.num_samples:
        print(f"\nsearch incomplete ({len(table)}/{settings.num_samples} trials). Resume with:\n  "
              f"{resume_command(settings, store)}", file=sys.stderr)
    metadata = {"name": settings.name, "space": settings.space, "num_samples": settings.num_samples,
                "trials": len(table), "seed": settings.seed, "storage": store.location,
                "created": settings.created, "seconds": round(time.time() - started, 1),
                "torch": torch.__version__}
    export = build_export(table, grid, settings.base, metric, metadata, others)
    if export is None and "feasible" in table.columns and (table["status"] != "error").any():
        print(f"error: no trial met --constraint {' '.join(settings.constraints)} (the leaderboard's feasible "
              f"column); no best_config.json written. Loosen the bound or search longer; leaderboard in "
              f"{store.display('leaderboard.csv')}", file=sys.stderr)
        return 1
    if export is None:
        print("error: every trial failed; see the leaderboard's error column", file=sys.stderr)
        return 1
    out_of_fold_files = write_out_of_fold(store, grid, export, data)
    if out_of_fold_files:  # tune.final fits the calibration and the operating point on them
        export["out_of_fold"] = "oof_predictions.parquet"
    written.append(store.write_bytes("best_config.json", (json.dumps(export, indent=2) + "\n").encode()))
    written.extend(write_pareto(store, table, grid, settings.base, objectives(settings), metadata))
    if "pareto" in table.columns:
        print(describe_front(table, objectives(settings)))
    written.extend(out_of_fold_files)
    written.extend(write_search_plots(store, table, grid, settings.space, metric, mode, settings.pinned,
                                      settings.demo, grid_trials(grid)))
    written.append(write_run_report(store))
    score = export["validated"]
    print(f"\nbest: trial {export['trial_id']}  {metric} {score['score']:.4f} ± {score['std']:.4f} at epoch "
          f"{score['epoch']} of {score['horizon']}  folds " + " ".join(f"{v:.3f}" for v in score["folds"])
          + f"  (final training: the {score['horizon']}-epoch schedule, stopped after epoch "
          f"{export['config']['train']['stop_epoch'] or score['horizon']})")
    print("wrote:\n  " + "\n  ".join(written))
    print(f"next: python -m tune.final --config {store.display('best_config.json')}")
    return 0

