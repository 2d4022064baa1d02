"""`python -m core.train`: one config over its folds, one after another, without Ray.

The original `main.py` workflow and the way to debug a recipe: prints one line per epoch per fold and the score
as the search computes it (core/scoring.py: the fold-mean curve at its best or last epoch, train.select, one epoch
for all folds); with --out, writes fold<N>.json (every epoch's numbers), fold<N>/ (the fold's selected model, a
self-contained model folder: see core/model_folder.py) and summary.json. --eval-only scores a saved model folder
(fold<N>/, or tune.final's --out) on the held-out test set, or with --fold N on that fold's validation rows. With
a best_config.json export each fold stops at the validated epoch (train.stop_epoch) under the search's schedule
horizon, and the score printed is the search's.

Config layers: defaults < --config (plain, or a best_config.json export) < --data < --set KEY=VALUE.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.command_line import ArgumentParser, check_output_folder, run_command, write_json
from core.config import Config, load_config_file, parse_assignment
from core.config_reference import config_help
from core.errors import UserError

if TYPE_CHECKING:  # torch and the registries load once the command line is parsed (a light --help)
    from core.data.dataset import AudioData
    from core.model_folder import ModelFolder

EXAMPLES = """examples:
  python -m core.train --config runs/demo/best_config.json --out runs/demo/cv      # every fold, in turn
  python -m core.train --data my.csv --set model.size=micro --set train.epochs=3 --fold 0
  python -m core.train --config runs/demo/best_config.json --eval-only --checkpoint runs/demo/final
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.train", description=__doc__, epilog=config_help() + "\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="JSON", help="config file: Config.to_dict() JSON or a best_config.json "
                                                    "export (default: the defaults below; with --eval-only: the "
                                                    "checkpoint's own config)")
    p.add_argument("--data", metavar="MANIFEST", help="manifest (CSV or Parquet); sets data.manifest")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable, e.g. --set optim.lr=3e-4 --set train.epochs=5")
    p.add_argument("--fold", type=int, metavar="N", help="run (or with --eval-only: validate on) fold N only "
                                                         "(default: every fold)")
    p.add_argument("--out", metavar="DIR", help="write fold<N>.json, fold<N>/ (the selected model, a model folder) "
                                                "and summary.json here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace files of an earlier run in --out")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="use the config's recorded split (data.splits_file) although the manifest changed since")
    p.add_argument("--eval-only", action="store_true", help="no training: score --checkpoint on the test set "
                                                            "(or on fold N's validation rows with --fold N)")
    p.add_argument("--checkpoint", metavar="PATH", help="with --eval-only: a model folder: fold<N>/ from --out, or "
                                                        "tune.final's --out")
    return p


# --- config and folds -------------------------------------------------------------------------------------------
def resolve_config(args: argparse.Namespace, checkpoint: ModelFolder | None) -> Config:
    from core.checks import check_config
    from core.data.recorded import beside_config

    if args.config:
        config = load_config_file(args.config)
        config = config.with_overrides({"data.splits_file": beside_config(config.data.splits_file, args.config)})
    elif checkpoint is not None:
        config = checkpoint.config
    else:
        config = Config()
    overrides: dict[str, Any] = {"data.manifest": args.data} if args.data else {}
    overrides.update(parse_assignment(text) for text in args.overrides)
    return check_config(config.with_overrides(overrides))


def chosen_folds(data: AudioData, fold: int | None) -> list[int]:
    indices = [f.index for f in data.splits.folds]
    if fold is None:
        return indices
    if fold not in indices:
        raise UserError(f"--fold {fold}: this config has folds {indices[0]}..{indices[-1]} (data.k_fold)")
    return [fold]


def metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())


# --- training ----------------------------------------------------------------------------------------------------
def run_fold(config: Config, data: AudioData, index: int, out: Path | None) -> dict[str, Any]:
    """Train one fold, printing each epoch; return (and write) its record with the selected epoch's metrics."""
    from core.model_folder import save_model_folder
    from core.statistics import FoldStatistics
    from core.train import EpochResult, train_fold

    fold = data.splits.folds[index]
    epochs: list[dict[str, Any]] = []
    last: EpochResult | None = None
    for last in train_fold(config, data, fold):
        epochs.append({"epoch": last.epoch, "train_loss": last.train_loss, "metrics": last.metrics})
        note = "  (early stop)" if last.stopped else ""
        print(f"fold {index}  epoch {last.epoch}/{config.train.epochs}  loss {last.train_loss:.4f}  "
              f"{metrics_text(last.metrics)}  best epoch {last.best_epoch}{note}", flush=True)
    assert last is not None  # train.epochs >= 1 is validated
    # best_epoch is 0 only if the metric was NaN in every epoch: then no epoch was selected (and no metrics shown).
    selected = last.best_epoch if config.train.select == "best" else last.epoch
    record = {"fold": index, "select": config.train.select, "selected_epoch": selected,
              "metrics": epochs[selected - 1]["metrics"] if selected else {}, "stopped_early": last.stopped,
              "epochs": epochs,
              "train_rows": int(len(fold.train)), "valid_rows": int(len(fold.valid))}
    if out is not None:
        write_json(out / f"fold{index}.json", record)
        stats = FoldStatistics.from_data(data, fold.train)  # what train_fold built the model with
        card = {"trained_on": {"manifest": str(data.manifest.source), "rows": f"fold {index}'s training rows",
                               "clips": int(len(fold.train)), "fold": index, "epoch": selected,
                               "classes": dict(zip(data.classes, stats.class_counts.tolist(), strict=True))},
                "metric": config.train.metric, "validation": record["metrics"], "validation_clips": len(fold.valid)}
        save_model_folder(out / f"fold{index}", last.model, last.featurizer, config, stats, card)
    return record


def summarise(config: Config, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The config's score (core/scoring.py, as the search computes it) from each fold's metric after every epoch:
    the fold-mean curve read at one epoch e* for all folds; and every metric's fold mean, sample std and per-fold
    values at e*."""
    from core.metrics import METRICS
    from core.scoring import cross_validated_score, finite_mean, fold_matrix, sample_std

    t = config.train
    names = list(dict.fromkeys(name for r in records for e in r["epochs"] for name in e["metrics"]))
    curves = {name: [[e["metrics"].get(name, math.nan) for e in r["epochs"]] for r in records] for name in names}
    score = cross_validated_score(curves.get(t.metric, [[] for _ in records]), METRICS.get(t.metric).mode, t.select)
    at = {name: fold_matrix(values)[:, score.epoch - 1] if score.epoch else np.full(len(records), np.nan)
          for name, values in curves.items()}
    return {"metric": t.metric, "select": t.select, "folds": [r["fold"] for r in records],
            "score": score.to_dict(), "epoch": score.epoch,
            "mean": {n: finite_mean(v) if np.isfinite(v).any() else None for n, v in at.items()},
            "std": {n: sample_std(v) if np.isfinite(v).sum() >= 2 else None for n, v in at.items()},
            "per_fold": {n: [float(x) for x in v] for n, v in at.items()}}


def train_folds(config: Config, data: AudioData, folds: list[int], out: Path | None) -> dict[str, Any]:
    records = [run_fold(config, data, index, out) for index in folds]
    summary = summarise(config, records)
    first = [config.train.metric] + [n for n in summary["mean"] if n != config.train.metric]
    parts = [f"{n} {summary['mean'][n]:.4f} ± " + ("n/a" if summary["std"][n] is None else f"{summary['std'][n]:.4f}")
             for n in first if summary["mean"].get(n) is not None]
    print(f"fold mean over {len(records)} fold(s), {config.train.select} epoch {summary['epoch']} of the fold-mean "
          f"curve: " + "  ".join(parts), flush=True)
    if out is not None:
        write_json(out / "summary.json", {**summary, "config": config.to_dict()})
    return summary


# --- evaluation --------------------------------------------------------------------------------------------------
def evaluate_checkpoint(config: Config, data: AudioData, saved: ModelFolder, fold: int | None,
                        out: Path | None) -> dict[str, float]:
    """Score a saved model folder on the test rows (or fold `fold`'s validation rows). The model is rebuilt from
    the folder alone: its config, the statistics of the rows it was trained on, its weights."""
    from core.model_folder import evaluate_model

    loaded = saved.load(config.train.device)
    rows = data.splits.test if fold is None else data.splits.folds[fold].valid
    metrics = evaluate_model(loaded, data, rows, batch_size=config.train.eval_batch_size).metrics or {}
    where = "test" if fold is None else f"fold {fold} valid"
    print(f"{where} ({len(rows)} clips): {metrics_text(metrics)}", flush=True)
    if out is not None:
        name = "eval_test.json" if fold is None else f"eval_fold{fold}.json"
        write_json(out / name, {"rows": where, "clips": int(len(rows)), "metrics": metrics})
    return metrics


def output_files(config: Config, eval_only: bool, fold: int | None) -> list[str]:
    """What `run` writes to --out (known from the config alone, so the check comes before any work)."""
    if eval_only:
        return ["eval_test.json" if fold is None else f"eval_fold{fold}.json"]
    folds = [fold] if fold is not None else range(1 if config.data.valid_file else config.data.k_fold)
    return ["summary.json", *(f"fold{i}{ext}" for i in folds for ext in (".json", ""))]


def run(args: argparse.Namespace) -> None:
    from core.checks import check_run
    from core.data.dataset import prepare_data
    from core.devices import check_device
    from core.model_folder import read_model_folder

    if args.eval_only != bool(args.checkpoint):
        raise UserError("--eval-only and --checkpoint go together" if args.eval_only else
                        "--checkpoint is only read with --eval-only")
    saved = read_model_folder(args.checkpoint, "--checkpoint") if args.eval_only else None
    config = resolve_config(args, saved)
    check_device(config.train.device, "train.device")  # training runs here: the device must be on this machine
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output_folder(out, "--out", output_files(config, args.eval_only, args.fold), args.overwrite)
    data = prepare_data(config, progress=print, allow_changed_data=args.allow_changed_data)
    check_run(config, data)
    folds = chosen_folds(data, args.fold)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if saved is not None:
        evaluate_checkpoint(config, data, saved, args.fold, out)
    else:
        train_folds(config, data, folds, out)


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.train import NonFiniteLossError  # torch loads once the command line is parsed

    with warnings.catch_warnings():
        warnings.showwarning = _warning_line  # one line each, as they happen; restored on leaving the block
        try:
            return run_command(lambda: run(args))
        except NonFiniteLossError as error:  # not bad input: the recipe diverged
            print(f"error: {error} (the config diverged; try a lower optim.lr)", file=sys.stderr)
            return 1
