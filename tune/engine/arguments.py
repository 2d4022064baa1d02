"""`tune.run`'s command line and the run settings saved with every search (so `--resume` needs only the name)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import site
import sysconfig
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.command_line import ArgumentParser
from core.config import Config, parse_assignment, with_absolute_paths
from core.errors import ConfigError, UserError
from core.settings_files import excerpt, read_settings
from tune.engine.resources import default_resources
from tune.engine.trackers import TRACKERS, check_trackers, mlflow_uri, parse_trackers

if TYPE_CHECKING:  # the parser stays light: --help loads no torch, ray or optuna
    from search_spaces import SearchSpace



def bundled_demo() -> Path:
    """The demo manifest: the checkout's data/demo, or where a non-editable install put it (pyproject.toml's
    data-files: <prefix>/share/audiotune/demo)."""
    checkout = Path(__file__).resolve().parents[2] / "data" / "demo" / "manifest.csv"  # tune/engine/ -> checkout
    installed = [Path(base) / "share" / "audiotune" / "demo" / "manifest.csv"
                 for base in (sysconfig.get_path("data"), site.getuserbase())]
    return next((path for path in (checkout, *installed) if path.is_file()), checkout)


BUNDLED_DEMO = bundled_demo()
SETTINGS_NAME = "run.json"
DEMO_BUDGET = {"num_samples": 8, "max_concurrent": 2, "cpus_per_trial": 1.0}


EXAMPLES = """examples:
  python -m tune.run --space whisper_balancing --demo               # minutes on 2 CPU cores, bundled data
  python -m tune.run --space whisper_losses --data my/manifest.csv --num-samples 40 --gpus-per-trial 0.5
  python -m tune.run --config search.yaml --num-samples 60          # the file's settings; flags win over it
"""


SAMPLER_CHOICES = ("tpe", "gp", "random")  # tune/engine/search.py's SAMPLERS
SMALL_BUDGET = 30  # trials: up to here the default sampler is SMALL_BUDGET_SAMPLER
# Measured (bench/search_efficiency.py --space whisper_probe, 3 seeds x 24 trials, bench/README.md): gp's mean best
# 0.794 against tpe 0.758 and random 0.752; gp reached random's best in every seed, at 0.46 of its budget.
SMALL_BUDGET_SAMPLER = "gp"


def default_sampler(num_samples: int) -> str:
    return SMALL_BUDGET_SAMPLER if num_samples <= SMALL_BUDGET else "tpe"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m tune.run", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Cross-validated hyperparameter search: every trial trains one config on k speaker-grouped "
                    "folds; ASHA prunes on the fold-mean curve, Optuna (TPE) proposes configs.")
    p.add_argument("--config", metavar="FILE",
                   help="settings file, YAML or JSON: any flag below as a top-level key (num_samples or "
                        "num-samples), config keys under `set:` (optim.lr: 3e-4), or the run.json of an earlier "
                        "search; flags on the command line override it")
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
    p.add_argument("--k-fold", type=int, help="folds per trial, >= 2 (default: the space's, usually 5; --demo: 3)")
    p.add_argument("--epochs", type=int,
                   help="epochs per fold; ASHA may stop a trial earlier (default: the space's, usually 10; --demo: 12)")
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
    p.add_argument("--name", help="experiment name: one folder name of letters, digits, ., _, - (never a path) "
                                   "(default: SPACE-YYYYmmdd-HHMMSS; --demo: demo)")
    p.add_argument("--objective",
                   help="metric(s) to optimise, comma-separated, each in its own direction (e.g. uar,uar_age_gap: "
                        "maximise UAR, minimise the age-band gap); two or more give a multi-objective search that "
                        "writes the Pareto front (pareto.csv, pareto.png, pareto/TRIAL.json) and does not prune. "
                        "The first is train.metric and selects each trial's epoch (default: train.metric)")
    p.add_argument("--constraint", dest="constraints", action="append", metavar="METRIC<=X",
                   help="a bound every exported trial must meet, read at its e* like the score, repeatable: e.g. "
                        "\"uar_age_gap<=0.10\" or \"uar_speaker_p10>=0.5\". Trials breaking one are infeasible to "
                        "Optuna (TPE learns the feasible region; ASHA still prunes); the leaderboard marks them, the "
                        "export is the best feasible trial")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the splits, model init, batch order, augmentation and the TPE sampler: same seed, same "
                        "folds, configs and (on CPU) metrics (default: 0)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES,
                   help="Optuna's sampler: tpe, gp (Gaussian process; a conditional space falls back to tpe) or "
                        f"random (default: {SMALL_BUDGET_SAMPLER} up to {SMALL_BUDGET} trials, measured in "
                        "bench/README.md; tpe beyond)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable, e.g. --set optim.lr=3e-4 --set model.pretrained=none; a key the "
                        "space searches is pinned to this value (config keys: docs/config.md, core.train --help)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or HOST:6379); default: a local Ray on "
                                     "127.0.0.1")
    p.add_argument("--demo", action="store_true",
                   help="tiny from-scratch model and a small budget (minutes on 2 CPU cores); bundled data")
    p.add_argument("--log-to", metavar="TRACKERS",
                   help=f"also log every trial to these experiment trackers, comma-separated: {', '.join(TRACKERS)} "
                        "(TensorBoard files are written into each trial folder anyway; mlflow: mlruns/ in the run "
                        "folder unless --mlflow-uri; wandb: offline unless WANDB_MODE is set)")
    p.add_argument("--mlflow-uri", help="with --log-to mlflow: the MLflow tracking URI (default: sqlite:///RUN/mlruns/mlflow.db)")
    p.add_argument("--resume", action="store_true",
                   help="continue the experiment --name in --storage (after Ctrl-C, a crash or a killed driver) with "
                        "its stored settings, run.json; other flags are refused, not ignored")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing experiment of the same name (only a folder audiotune made, holding "
                        ".audiotune-experiment, and not while it runs)")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: continue although the manifest changed since the search recorded its "
                        "split (splits.json); clips it does not know are left out")
    # What --config FILE adds beneath the flags: a run.json's base config, and config keys set like --set.
    # config_space: the space of a run.json; file_constraints: its --constraint bounds, which a --constraint on the
    # command line replaces (an append flag's default would be appended to, and mutated)
    p.set_defaults(config_base={}, config_set={}, config_space=None, file_constraints=[])
    return p


# --- --config FILE ------------------------------------------------------------------------------------------------
FILE_ONLY_KEYS = ("set", "base", "pinned", "created", "objectives", "constraints")  # but `set`: run.json's fields


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """tune.run's flags, over the values of `--config FILE` when one is given (the command line wins)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**read_settings_file(Path(args.config), parser))
        args = parser.parse_args(argv)
    if args.constraints is None and args.file_constraints:
        args.constraints = list(args.file_constraints)
    return args


def _file_flags(parser: ArgumentParser) -> dict[str, argparse.Action]:
    """The flags a settings file may hold, by name with `_` (from `--num-samples`: num_samples)."""
    return {action.option_strings[-1][2:].replace("-", "_"): action for action in parser.arguments
            if action.option_strings and action.dest not in ("help", "config")}


def read_settings_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The parser defaults a settings file gives (YAML, or JSON by its .json suffix); every error names the file
    and the key."""
    raw = _load_mapping(path)
    flags = _file_flags(parser)
    known = sorted({*flags, *FILE_ONLY_KEYS})
    values: dict[str, Any] = {}
    config_set: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name == "set":
            config_set.update(_config_keys(path, "set", value))
        elif name == "pinned":  # a run.json's --set values (its base holds them too)
            config_set.update(_config_keys(path, "pinned", value))
        elif name == "base":
            values["config_base"] = {key: item for key, item in _config_keys(path, "base", value).items()
                                     if key != "data.splits_file"}  # the new search records its own split
        elif name == "created":
            continue  # when the earlier search started: nothing to set
        elif name == "objectives":  # a run.json's --objective, as a list
            if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
                raise UserError(f"{path}: objectives must be a list of metric names, got {excerpt(value)}")
            if value:
                values["objective"] = ",".join(value)
        elif name in ("constraints", "constraint"):  # a run.json's --constraint list, or a file's one bound
            items = [value] if isinstance(value, str) else value
            if not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
                raise UserError(f"{path}: {name} must be a bound (METRIC<=X) or a list of them, got {value!r:.60}")
            values["file_constraints"] = list(items)
        elif name in flags:
            values[flags[name].dest] = _flag_value(path, name, flags[name], value)
        else:
            raise UserError(f"{path}: unknown key {str(key)!r} (choices: {', '.join(known)})")
    values["config_set"] = config_set
    if "config_base" in values and isinstance(raw.get("space"), str):  # a run.json: its base is that space's
        values["config_space"] = raw["space"]
    return values


def _load_mapping(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise UserError(f"--config {path}: " + ("not a file" if path.exists() else "file not found"))
    raw = read_settings(path)  # size/depth capped before expansion, duplicate keys refused, BOM accepted
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of settings (key: value), got {type(raw).__name__}")
    return raw


def _config_keys(path: Path, key: str, value: Any) -> dict[str, Any]:
    """Dotted config keys from `set:`/`base:` (nested sections or dotted names, or a list of KEY=VALUE), each
    checked against the schema."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        flat: dict[str, Any] = dict(parse_assignment(item) for item in value)
    elif isinstance(value, dict):
        flat = {}
        for name, item in value.items():
            if isinstance(item, dict):
                flat.update({f"{name}.{inner}": v for inner, v in item.items()})
            else:
                flat[str(name)] = item
    else:
        raise UserError(f"{path}: {key!r} must be a mapping of config keys (optim.lr: 3e-4), got {excerpt(value)}")
    try:
        Config().with_overrides(flat)
    except ConfigError as error:
        raise UserError(f"{path}: {key}: {error}") from error
    return flat


def _flag_value(path: Path, name: str, action: argparse.Action, value: Any) -> Any:
    """`value` as the flag would have parsed it; an error names the file and the key."""
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif value is None:
        return None
    elif action.type is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif action.type is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    else:
        expected = "text"
    raise UserError(f"{path}: key {name!r} must be {expected}, got {excerpt(value)}")


@dataclass
class RunSettings:
    """Everything that defines a search, saved as run.json in the experiment folder."""

    space: str
    name: str
    base: dict[str, Any]  # Config.to_dict() every trial starts from
    num_samples: int
    cpus_per_trial: float
    gpus_per_trial: float | None  # None until resolved against the cluster (tune/engine/resources.py)
    max_concurrent: int | None
    grace_period: int
    seed: int
    demo: bool
    created: str
    fold_parallel: bool = False
    pinned: dict[str, Any] = field(default_factory=dict)  # --set values of keys the space would search
    log_to: str = ""  # --log-to: experiment trackers, comma-separated (tune/engine/trackers.py)
    mlflow_uri: str = ""  # --mlflow-uri ("" = mlruns/mlflow.db in the run folder)
    objectives: list[str] = field(default_factory=list)  # --objective metrics (empty: train.metric alone)
    constraints: list[str] = field(default_factory=list)  # --constraint bounds, as given (METRIC<=X)
    sampler: str = "tpe"  # --sampler, resolved (tpe | gp | random)

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
                raise UserError(f"{source}: field {name!r} is {excerpt(value)}, not {_kind_name(kinds[name])}")
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
    if typing.get_origin(kind) is list:
        return isinstance(value, list) and all(_is_a(item, typing.get_args(kind)[0]) for item in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_kind_name(part) for part in typing.get_args(kind))
    names = {str: "text", int: "an integer", float: "a number", bool: "true/false", type(None): "null"}
    if typing.get_origin(kind) is list:
        return f"a list of {_kind_name(typing.get_args(kind)[0])}"
    return names.get(kind, "an object")


def _positive(value: float | None, flag: str, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum:g}, got {value:g}")


def settings_from_args(args: argparse.Namespace, space: SearchSpace) -> RunSettings:
    """Layer the config: defaults < space base < --demo < a run.json's base < flags < `set:` of --config < --set;
    validate it."""
    from core.checks import check_config  # the registries (torch) load once parsing is done
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
    if args.config_space and args.config_space != space.name:  # its base holds the other space's settings
        raise UserError(f"--config {args.config}: a run of space {args.config_space!r} (its base config), not of "
                        f"--space {space.name}; use --space {args.config_space}, or a settings file without 'base'")
    overrides: dict[str, Any] = dict(space.base)
    if args.demo:
        overrides.update(space.demo_overrides())  # DEMO_OVERRIDES where the model reads them, then the space's
    overrides.update(args.config_base)  # a run.json's base config (--config)
    data = args.data or (None if "data.manifest" in args.config_base else str(BUNDLED_DEMO))
    if data == str(BUNDLED_DEMO) and not BUNDLED_DEMO.is_file():
        raise UserError("--data is required here: this installation has no bundled demo set (data/demo of a "
                        f"checkout, or {BUNDLED_DEMO}); give a manifest with --data")
    flags = {"data.manifest": data, "data.audio_root": args.audio_root, "data.target": args.target,
             "data.path_column": args.path_column, "data.speaker_column": args.speaker_column,
             "data.word_column": args.word_column, "data.age_column": args.age_column,
             "data.k_fold": args.k_fold, "train.epochs": args.epochs, "data.seed": args.seed,
             "train.seed": args.seed}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    assignments = {**args.config_set, **dict(parse_assignment(text) for text in args.overrides)}
    names = objective_names(args.objective, assignments)
    if names:
        overrides["train.metric"] = names[0]
    overrides.update(assignments)
    if args.demo:  # the demo's generic presets step back where the user's own settings leave them unread (a
        overrides = without_unread_demo_presets(overrides, space.base)  # --set model.pretrained=DIR: no model.size)
    config = with_absolute_paths(check_config(Config().with_overrides(overrides)))  # trials run in other folders
    check_objectives(names, config)
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
        pinned={key: config.get(key) for key in assignments}, objectives=names if len(names) > 1 else [],
        log_to=",".join(trackers), mlflow_uri=args.mlflow_uri or "",
        constraints=[constraint.text for constraint in check_constraints(args.constraints or [], config)],
        sampler=args.sampler or default_sampler(args.num_samples or budget.get("num_samples", 20)))


def without_unread_demo_presets(overrides: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """`overrides` with each DEMO_OVERRIDES preset the final model does not read put back to the space's base (or
    the default): a preset is the demo's choice, not the user's, so it never earns an inert-setting refusal."""
    from core.checks import ignored_keys
    from search_spaces import DEMO_OVERRIDES

    unread = set(ignored_keys(Config().with_overrides(overrides))) & set(DEMO_OVERRIDES)
    kept = {key: value for key, value in overrides.items()
            if key not in unread or overrides[key] != DEMO_OVERRIDES[key]}
    kept.update({key: base[key] for key in unread if key in base})
    return kept


def check_constraints(texts: list[str], config: Config) -> list:
    """The --constraint bounds (tune/results/constraints.py), each on a registered metric of the head's task."""
    from core.checks import head_task
    from core.metrics import METRICS
    from tune.results.constraints import parse_constraint

    constraints = [parse_constraint(text) for text in texts]
    for constraint in constraints:
        if constraint.metric not in METRICS:
            raise UserError(f"--constraint {constraint.text}: unknown metric {constraint.metric!r}; choose from "
                            f"{', '.join(METRICS.names())}")
        if METRICS.get(constraint.metric).task != head_task(config):
            raise UserError(f"--constraint {constraint.text}: model.head={config.model.head!r} is not scored by "
                            f"{constraint.metric}")
    return constraints


def objective_names(text: str | None, assignments: dict[str, Any]) -> list[str]:
    """The metrics of --objective, in order; the first must agree with a --set train.metric."""
    if text is None:
        return []
    from core.metrics import METRICS  # the registries (torch) load once parsing is done

    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UserError(f"--objective {text!r}: empty metric name (give metrics separated by commas, e.g. "
                        "uar,uar_age_gap)")
    if len(set(names)) < len(names):
        raise UserError(f"--objective {text!r}: a metric is named twice")
    for name in names:
        if name not in METRICS:
            raise UserError(f"--objective: unknown metric {name!r}; choose from {', '.join(METRICS.names())}")
    given = assignments.get("train.metric")
    if given is not None and given != names[0]:
        raise UserError(f"--objective {text}: its first metric is train.metric, but --set train.metric={given}")
    return names


def check_objectives(names: list[str], config: Config) -> None:
    """Every objective must score the head's task: a regressor has no UAR, so no bias metrics either."""
    from core.checks import head_task
    from core.metrics import METRICS
    from core.registry import REGRESSION

    task = head_task(config)
    wrong = [name for name in names if METRICS.get(name).task != task]
    if wrong:
        fitting = ", ".join(name for name in METRICS if METRICS.get(name).task == task)
        bias = " (a regression target has no per-age-band or per-speaker UAR)" if task == REGRESSION else ""
        raise UserError(f"--objective {','.join(wrong)}: model.head={config.model.head!r} is scored by {task} "
                        f"metrics{bias}; choose from {fitting}")
