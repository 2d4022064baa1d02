"""`tune.run`'s command line and the run settings saved with every search (so `--resume` needs only the name)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.checks import check_config
from core.command_line import ArgumentParser
from core.config import Config, parse_assignment
from core.errors import ConfigError, UserError
from search_spaces import DEMO_OVERRIDES, SearchSpace
from tune.resources import default_resources
from tune.trackers import TRACKERS, check_trackers, mlflow_uri, parse_trackers

BUNDLED_DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "manifest.csv"
SETTINGS_NAME = "run.json"
DEMO_BUDGET = {"num_samples": 8, "max_concurrent": 2, "cpus_per_trial": 1.0}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m tune.run",
        description="Cross-validated hyperparameter search: every trial trains one config on k speaker-grouped "
                    "folds; ASHA prunes on the fold-mean curve, Optuna (TPE) proposes configs.")
    p.add_argument("--space", help="search space name (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="list the search spaces with their parameters")
    p.add_argument("--data", help="manifest (CSV or Parquet), audiofolder (metadata.csv with file_name) or Hugging "
                                  "Face save_to_disk folder; default: the bundled demo set")
    p.add_argument("--audio-root", help="folder the manifest's paths are relative to (default: its folder)")
    p.add_argument("--target", help="target column (default: label)")
    for role, default in (("path", "path; audiofolder: file_name; save_to_disk: its Audio column"),
                          ("speaker", "speaker"), ("word", "word"), ("age", "age")):
        p.add_argument(f"--{role}-column", metavar="COLUMN", help=f"the manifest's {role} column (default: {default})")
    p.add_argument("--num-samples", type=int, help="number of trials (default: 20; --demo: 8)")
    p.add_argument("--k-fold", type=int, help="folds per trial (default: the space's, usually 5)")
    p.add_argument("--epochs", type=int, help="epochs per fold (default: the space's)")
    p.add_argument("--cpus-per-trial", type=float,
                   help="CPUs per trial (default by model: whisper 1, resnet50 1, wav2vec2 2; --demo: 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial, fractions allowed (default: 0 without GPUs; else by model: whisper 0.25, "
                        "resnet50 0.25, wav2vec2 0.5)")
    p.add_argument("--fold-parallel", action="store_true",
                   help="run the k folds of a trial as parallel Ray actors, one placement-group bundle per fold "
                        "(the trial's CPUs/GPUs are shared between them, e.g. 0.25 GPU per fold)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    p.add_argument("--grace-period", type=int, default=2,
                   help="ASHA: epochs every trial gets before pruning (default: 2)")
    p.add_argument("--storage", default="./runs",
                   help="results folder or URI (s3://, gs://, file://) (default: ./runs)")
    p.add_argument("--name", help="experiment name (default: SPACE-YYYYmmdd-HHMMSS; --demo: demo)")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits, the training and the sampler (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable, e.g. --set optim.lr=3e-4 --set model.pretrained=none")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or HOST:6379); default: a local Ray on "
                                     "127.0.0.1")
    p.add_argument("--demo", action="store_true",
                   help="tiny from-scratch model and a small budget (minutes on 2 CPU cores); bundled data")
    p.add_argument("--log-to", metavar="TRACKERS",
                   help=f"also log every trial to these experiment trackers, comma-separated: {', '.join(TRACKERS)} "
                        "(TensorBoard files are written into each trial folder anyway; mlflow: mlflow.db in the run "
                        "folder unless --mlflow-uri; wandb: offline unless WANDB_MODE is set)")
    p.add_argument("--mlflow-uri", help="with --log-to mlflow: the MLflow tracking URI (default: sqlite:///RUN/mlflow.db)")
    p.add_argument("--resume", action="store_true", help="continue the experiment --name in --storage")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing experiment of the same name (only one this project created, and "
                        "not while it runs)")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: continue although the manifest changed since the search recorded its "
                        "split (splits.json); clips it does not know are left out")
    return p


@dataclass
class RunSettings:
    """Everything that defines a search, saved as run.json in the experiment folder."""

    space: str
    name: str
    base: dict[str, Any]  # Config.to_dict() every trial starts from
    num_samples: int
    cpus_per_trial: float
    gpus_per_trial: float | None  # None until resolved against the cluster (tune/resources.py)
    max_concurrent: int | None
    grace_period: int
    seed: int
    demo: bool
    created: str
    fold_parallel: bool = False
    pinned: dict[str, Any] = field(default_factory=dict)  # --set values of keys the space would search
    log_to: str = ""  # --log-to: experiment trackers, comma-separated (tune/trackers.py)
    mlflow_uri: str = ""  # --mlflow-uri ("" = mlflow.db in the run folder)

    @property
    def trackers(self) -> list[str]:
        return parse_trackers(self.log_to)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, source: str = SETTINGS_NAME) -> RunSettings:
        """The settings saved by `to_json`; a file damaged or edited by hand is a UserError naming `source` (and the
        field), never a TypeError from the constructor."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise UserError(f"{source}: not the run settings this project writes (not valid JSON: {error})") from error
        if not isinstance(raw, dict):
            raise UserError(f"{source}: not the run settings this project writes (expected a JSON object, got "
                            f"{type(raw).__name__})")
        kinds = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        missing = [name for name, f in fields.items() if name not in raw and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if unknown or missing:
            what = "; ".join(part for part in (f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                                              f"missing field(s) {', '.join(missing)}" if missing else "") if part)
            raise UserError(f"{source}: not the run settings this project writes ({what})")
        for name, value in raw.items():
            if not _is_a(value, kinds[name]):
                raise UserError(f"{source}: field {name!r} is {value!r:.60}, not {_kind_name(kinds[name])}")
        try:
            Config.from_dict(raw["base"])
        except ConfigError as error:
            raise UserError(f"{source}: base: {error}") from error
        return cls(**raw)

    @property
    def config(self) -> Config:
        return Config.from_dict(self.base)


def _is_a(value: Any, kind: Any) -> bool:
    """Whether a JSON value has a field's type (`float | None`, `dict[str, Any]`, ...); ints count as floats."""
    if isinstance(kind, types.UnionType):
        return any(_is_a(value, part) for part in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is dict:
        return isinstance(value, dict)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_kind_name(part) for part in typing.get_args(kind))
    names = {str: "text", int: "an integer", float: "a number", bool: "true/false", type(None): "null"}
    return names.get(kind, "an object")


def _positive(value: float | None, flag: str, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum:g}, got {value:g}")


def settings_from_args(args: argparse.Namespace, space: SearchSpace) -> RunSettings:
    """Layer the config: defaults < space base < --demo < flags < --set; validate it."""
    _positive(args.num_samples, "--num-samples")
    _positive(args.cpus_per_trial, "--cpus-per-trial", 0.01)
    _positive(args.gpus_per_trial, "--gpus-per-trial", 0)
    _positive(args.max_concurrent, "--max-concurrent")
    _positive(args.grace_period, "--grace-period")
    if args.k_fold is not None and args.k_fold < 2:
        raise UserError(f"--k-fold must be >= 2 for cross-validation, got {args.k_fold}")
    trackers = parse_trackers(args.log_to)
    check_trackers(trackers)
    if args.mlflow_uri and "mlflow" not in trackers:
        raise UserError("--mlflow-uri is read only with --log-to mlflow")
    if "mlflow" in trackers:
        mlflow_uri(args.mlflow_uri, "", "://" in args.storage)
    overrides: dict[str, Any] = dict(space.base)
    if args.demo:
        overrides.update(DEMO_OVERRIDES)
        overrides.update(space.demo)
    data = args.data or str(BUNDLED_DEMO)
    flags = {"data.manifest": data, "data.audio_root": args.audio_root, "data.target": args.target,
             "data.path_column": args.path_column, "data.speaker_column": args.speaker_column,
             "data.word_column": args.word_column, "data.age_column": args.age_column,
             "data.k_fold": args.k_fold, "train.epochs": args.epochs, "data.seed": args.seed,
             "train.seed": args.seed}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    assignments = dict(parse_assignment(text) for text in args.overrides)
    overrides.update(assignments)
    config = check_config(Config().with_overrides(overrides))
    if config.data.k_fold < 2:
        raise UserError(f"data.k_fold={config.data.k_fold}: a search cross-validates, use k >= 2")
    budget = DEMO_BUDGET if args.demo else {}
    cpus = args.cpus_per_trial or budget.get("cpus_per_trial") or default_resources(config.model.name).cpus
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return RunSettings(
        space=space.name, name=(args.name if args.name is not None else
                                ("demo" if args.demo else f"{space.name}-{stamp}")),
        base=config.to_dict(), num_samples=args.num_samples or budget.get("num_samples", 20),
        cpus_per_trial=cpus,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent or budget.get("max_concurrent"),
        grace_period=args.grace_period, seed=args.seed, demo=args.demo,
        created=datetime.datetime.now().isoformat(timespec="seconds"), fold_parallel=args.fold_parallel,
        pinned={key: config.get(key) for key in assignments}, log_to=",".join(trackers),
        mlflow_uri=args.mlflow_uri or "")
