"""`python -m tune.final --config best_config.json`: train the winner on train+valid, test once, report.

The held-out test set was never seen by the search; it is used exactly once here. `--out` becomes a self-contained
model folder (core/model_folder.py: model.safetensors, config.json, model.json, MODEL_CARD.md) that
`python -m tune.predict --model OUT` runs on new clips, plus `report.json` (metrics, confusion matrix, per-word,
per-age-band and per-speaker UAR). `--eval-only --checkpoint OUT` scores a saved model folder on the test set again.

The screening decision (docs/clinical.md): a temperature is fitted on the search's out-of-fold predictions at e*
(best_config.json's `out_of_fold`; `--calibration none` turns it off) and a threshold on the positive class's
calibrated probability is chosen on them (`--operating-point`, never on the test set); both are stored in the model
folder. `--model folds` keeps the winner's k fold models (trained again to e* on their folds' training rows) as one
fold-ensemble folder whose probabilities are the mean of theirs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from core.command_line import ArgumentParser, check_output_folder, run_command, write_json
from core.config import Config, load_config_file, parse_assignment
from core.errors import UserError
from core.settings_files import parse_json, read_text
from tune.results.page import REPORT, write_final_report

if TYPE_CHECKING:  # torch and the data layer load once the command line is parsed (a light --help)
    import torch

    from core.data.dataset import AudioData
    from core.model_folder import LoadedModel
    from core.statistics import FoldStatistics

EXAMPLES = """examples:
  python -m tune.final --config runs/demo/best_config.json
  python -m tune.final --config runs/NAME/best_config.json --out models/v1 --set train.device=cuda:1 \\
      --set train.batch_size=8 --set train.precision=bf16
  python -m tune.final --config runs/demo/best_config.json --eval-only --checkpoint runs/demo/final
  python -m tune.final --config runs/demo/best_config.json --operating-point sensitivity=0.90
  python -m tune.final --config runs/demo/best_config.json --model folds      # -> runs/demo/final_folds
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tune.final", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="best_config.json from tune.run, a Pareto trial's "
                                                   "pareto/TRIAL.json, or a plain config JSON")
    p.add_argument("--out", help="output folder (default: final/ beside the config; final_TRIAL/ in the run folder "
                                 "for pareto/TRIAL.json)")
    p.add_argument("--data", help="manifest to use instead of the config's data.manifest")
    p.add_argument("--audio-root", help="folder the manifest's paths are relative to")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on the test set")
    p.add_argument("--checkpoint", help="with --eval-only: the model folder (--out) of an earlier tune.final")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of final training, repeatable, e.g. --set train.device=cuda:1 "
                        "--set train.batch_size=8 --set train.precision=bf16")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--calibration", choices=("temperature", "none"), default="temperature",
                   help="temperature: fit one temperature on the search's out-of-fold predictions at e* and give "
                        "calibrated probabilities; none: the model's own (default: %(default)s)")
    p.add_argument("--operating-point", metavar="RULE",
                   help="the threshold on the positive class's probability, chosen on the out-of-fold predictions: "
                        "youden (max sensitivity + specificity), sensitivity=0.90 (the most specific threshold "
                        "reaching it), specificity=0.90, or a threshold such as 0.5 (default: youden)")
    p.add_argument("--model", choices=("refit", "folds"), default="refit",
                   help="refit: one model trained on train+valid; folds: the winner's k fold models at e* as one "
                        "ensemble, the mean of their probabilities (default: %(default)s; --out default final/ or "
                        "final_folds/)")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="use the search's recorded split (splits.json) although the manifest changed since; "
                        "clips it does not know are left out")
    return p


def trained_model(config: Config, data: AudioData, model: torch.nn.Module, featurizer: torch.nn.Module
                  ) -> LoadedModel:
    """The model just trained, as a model folder would load it (statistics of all development rows)."""
    from core.devices import resolve_device
    from core.model_folder import LoadedModel, decoding_settings
    from core.statistics import FoldStatistics

    stats = FoldStatistics.from_data(data, data.splits.development)
    return LoadedModel(folder=Path(), config=config, model=model, featurizer=featurizer, stats=stats,
                       classes=list(data.classes), words=list(data.words), decoding=decoding_settings(config),
                       metadata={}, device=resolve_device(config.train.device))


def test_report(config: Config, data: AudioData, model: torch.nn.Module | LoadedModel,
                featurizer: torch.nn.Module | None = None) -> dict:
    """The clinical report (core/report.py) of the held-out test set."""
    from core.model_folder import LoadedModel

    loaded = model if isinstance(model, LoadedModel) else trained_model(config, data, model, featurizer)
    return test_evaluation(config, data, loaded)[0]


def test_evaluation(config: Config, data: AudioData, loaded: LoadedModel
                    ) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """(the clinical report of the held-out test set, the model's (calibrated) outputs on it, for the figures, and
    its outputs before calibration)."""
    from core.model_folder import evaluate_model

    rows = data.splits.test
    evaluation = evaluate_model(loaded, data, rows, report=config)
    report = {**evaluation.report, "test_clips": int(len(rows)), "train_clips": int(len(data.splits.development))}
    return report, evaluation.outputs, evaluation.raw


def calibration_report(calibration: dict[str, Any], targets: np.ndarray, raw: np.ndarray, outputs: np.ndarray
                       ) -> dict[str, Any]:
    """report.json's `calibration`: the temperature, and ECE (15 bins), Brier score and log-loss before and after
    it on the out-of-fold set (where it was fitted) and on the test set."""
    from core.calibration import calibration_scores

    return {"method": calibration.get("method"), "temperature": calibration.get("temperature"),
            "out_of_fold": calibration.get("out_of_fold"),
            "test": {"before": calibration_scores(raw, targets), "after": calibration_scores(outputs, targets),
                     "clips": int(len(targets))}}


def search_score(config_path: Path) -> dict[str, Any]:
    """The cross-validated evidence a search's best_config.json carries (`metric`, `validated`), for the
    model card; empty for a plain config."""
    raw = parse_json(config_path, read_text(config_path))  # as load_config_file reads it (a BOM, say)
    if not isinstance(raw, dict) or "config" not in raw:
        return {}
    return {key: raw[key] for key in ("metric", "validated") if key in raw}


def model_card(config: Config, data: AudioData, stats: FoldStatistics, report: dict[str, Any],
               evidence: dict[str, Any]) -> dict[str, Any]:
    """What the model card says about this final model."""
    d = config.data
    manifests = ", ".join(file for file in (d.train_file, d.valid_file, d.test_file) if file) or d.manifest
    trained_on: dict[str, Any] = {
        "manifest": manifests, "rows": "all rows but the held-out test set", "clips": int(len(data.splits.development)),
        "classes": {name: int(count) for name, count in zip(data.classes, stats.class_counts, strict=True)}}
    if np.isfinite(stats.age_min):
        trained_on["age_range"] = [stats.age_min, stats.age_max]
    return {"trained_on": trained_on, "metric": evidence.get("metric", config.train.metric),
            "cv_score": evidence.get("validated"),
            "test": report["metrics"], "test_clips": report["test_clips"]}


OUT_OF_FOLD = "oof_predictions.parquet"  # the search's file beside best_config.json (tune/engine/experiment.py)


def out_of_fold_file(config_path: Path) -> Path | None:
    """The out-of-fold predictions of the trial a search export describes: best_config.json's `out_of_fold` link
    (relative to its folder), or, for an export written before the link, oof_predictions.parquet beside a
    best_config.json; None for a plain config or a Pareto trial's (the file holds the winner's only)."""
    raw = parse_json(config_path, read_text(config_path))  # as load_config_file reads it (a BOM, say)
    if not isinstance(raw, dict) or "config" not in raw:
        return None
    link = raw.get("out_of_fold")
    if link:
        return config_path.resolve().parent / str(link)
    beside = config_path.resolve().parent / OUT_OF_FOLD
    return beside if config_path.name == "best_config.json" and beside.is_file() else None


def read_out_of_fold(path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [n, classes] in `classes` order, class ids) of the out-of-fold file; a UserError naming it
    when it is missing or lacks a column."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{path}: the out-of-fold predictions best_config.json names are missing (run the search "
                        "again, or pass --calibration none --operating-point 0.5)")
    table = pd.read_parquet(path)
    wanted = ["label", *(f"p_{name}" for name in classes)]
    absent = [column for column in wanted if column not in table.columns]
    if absent:
        raise UserError(f"{path}: no column(s) {', '.join(absent)} (the model's classes: {', '.join(classes)})")
    unknown = sorted(set(table["label"].astype(str)) - set(classes))
    if unknown:
        raise UserError(f"{path}: column 'label' has class(es) {', '.join(unknown)} the data does not have")
    targets = np.asarray([classes.index(str(label)) for label in table["label"]], dtype=np.int64)
    return table[wanted[1:]].to_numpy(dtype=np.float64), targets


def decision(config: Config, classes: list[str], source: Path | None, calibration: str, rule_text: str | None
             ) -> dict[str, Any]:
    """model.json's `calibration` and `operating_point` blocks from the out-of-fold predictions; cheap, so
    tune.final runs it before any training. A classifier only."""
    from core.calibration import (
        apply_temperature,
        calibration_scores,
        fit_temperature,
        operating_point,
        parse_operating_point,
    )
    from core.statistics import positive_class

    rule = parse_operating_point(rule_text or "youden")
    if source is None:
        if rule_text is not None and rule.kind != "fixed":
            raise UserError(f"--operating-point {rule_text}: the config names no out-of-fold predictions to choose "
                            "it on (only a search's best_config.json does); give a threshold such as 0.5")
        if rule_text is None:  # the defaults: say what is left out, and go on
            print("note: the config names no out-of-fold predictions (a plain config, or a Pareto trial's): no "
                  "calibration, decision at the most probable class", file=sys.stderr)
            return {}
        probabilities, targets = np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64)
    else:
        probabilities, targets = read_out_of_fold(source, classes)
    blocks: dict[str, Any] = {}
    temperature = 1.0
    if len(targets):
        temperature = fit_temperature(probabilities, targets) if calibration == "temperature" else 1.0
        calibrated = apply_temperature(probabilities, temperature)
        scores = {"before": calibration_scores(probabilities, targets),
                  "after": calibration_scores(calibrated, targets), "clips": int(len(targets))}
        blocks["calibration"] = {"method": calibration, "temperature": temperature, "clips": int(len(targets)),
                                 "fitted_on": str(source), "out_of_fold": scores}
    if len(classes) == 2:
        try:
            positive = positive_class(classes, config.data.positive_class)
        except UserError as error:
            if rule_text is not None:
                raise UserError(f"--operating-point {rule_text}: {error}") from error
            print(f"note: no operating point ({error})", file=sys.stderr)
            return blocks
        is_positive = targets == positive
        calibrated_positive = apply_temperature(probabilities, temperature)[:, positive] if len(targets) else \
            np.zeros(0)
        blocks["operating_point"] = operating_point(is_positive, calibrated_positive, rule, classes[positive])
    elif rule_text is not None:
        raise UserError(f"--operating-point {rule_text}: a threshold needs two classes; the data has "
                        f"{len(classes)}")
    return blocks


# What the search's trainable keeps in a trial's checkpoint (tune/engine/trainable.py's STATE_FILE and META_FILE;
# final imports no Ray, so the names are repeated here and a test checks they agree).
TRIAL_STATE, TRIAL_META = "fold{}.pt", "trial.json"


def checkpoint_members(config_path: Path, run_folder: Path, config: Config, data: AudioData
                       ) -> list[tuple[torch.nn.Module, torch.nn.Module, FoldStatistics]] | None:
    """The winner's k fold models at e* from its last checkpoint in the run folder (trial_<id>/checkpoint_*/), when
    that checkpoint is at e* (Tune keeps one per trial: the last epoch; e* is earlier when the fold-mean curve peaked
    before the end) and every fold's state is there; None, saying why, otherwise."""
    import torch

    from core.devices import resolve_device
    from core.models import MODELS
    from core.statistics import FoldStatistics

    export = parse_json(config_path, read_text(config_path))
    trial, epoch = export.get("trial_id"), (export.get("validated") or {}).get("epoch")
    checkpoints = sorted((run_folder / f"trial_{trial}").glob("checkpoint_*"))
    if not trial or not checkpoints or not (checkpoints[-1] / TRIAL_META).is_file():
        print(f"fold models: no checkpoint of trial {trial} in the run folder; training the {len(data.splits.folds)} "
              f"folds again to epoch {epoch}", flush=True)
        return None
    meta = json.loads((checkpoints[-1] / TRIAL_META).read_text())
    files = [checkpoints[-1] / TRIAL_STATE.format(fold.index) for fold in data.splits.folds]
    if int(meta.get("epoch", -1)) != epoch or not all(file.is_file() for file in files):
        print(f"fold models: trial {trial}'s checkpoint holds epoch {meta.get('epoch')}, not e* = {epoch}; training "
              f"the {len(files)} folds again to e*", flush=True)
        return None
    spec, device, members = MODELS.get(config.model.name), resolve_device(config.train.device), []
    for fold, file in zip(data.splits.folds, files, strict=True):
        stats = FoldStatistics.from_data(data, fold.train)
        model, featurizer = spec.build(config, data.num_outputs, stats), spec.featurizer(config, stats)
        try:
            model.load_state_dict(torch.load(file, weights_only=False)["model"])
        except (RuntimeError, KeyError) as error:  # e.g. a frozen encoder's probe, trained on cached outputs
            print(f"fold models: {file} does not load into the model ({str(error).splitlines()[0][:120]}); "
                  "training the folds again to e*", flush=True)
            return None
        members.append((model.to(device).eval(), featurizer.to(device).eval(), stats))
    print(f"fold models: the {len(members)} folds of trial {trial} at epoch {epoch}, from {checkpoints[-1]}",
          flush=True)
    return members


def train_members(config: Config, data: AudioData) -> list[tuple[torch.nn.Module, torch.nn.Module, FoldStatistics]]:
    """The winner's k fold models at e*: each fold trained again on its own training rows under the search's
    schedule (train.stop_epoch = e*), seeded as in the search (so, on CPU, the very models whose validation
    predictions are the out-of-fold file). The live model at e* is kept (train.select=last): e* is the fold-mean
    curve's epoch, not each fold's own best."""
    from core.statistics import FoldStatistics
    from core.train import train_fold

    at_e_star = config.with_overrides({"train.select": "last"})
    members = []
    for fold in data.splits.folds:
        result = None
        for result in train_fold(at_e_star, data, fold):
            print(f"fold {fold.index}: epoch {result.epoch}/{config.train.stop_epoch or config.train.epochs}  "
                  f"loss {result.train_loss:.4f}", flush=True)
        assert result is not None  # train.epochs >= 1 is validated
        members.append((result.model, result.featurizer, FoldStatistics.from_data(data, fold.train)))
    return members


def train_final(config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.nn.Module]:
    from core.data.splits import Fold
    from core.train import train_fold

    fold = Fold(index=0, train=data.splits.development, valid=np.zeros(0, dtype=np.int64))
    result = None
    last = config.train.stop_epoch or config.train.epochs  # the schedule spans train.epochs either way
    # a bar for a person at a terminal; plain lines for logs (Ray Job logs, files, CI)
    bar = tqdm(total=last, desc="final training", unit="epoch", file=sys.stderr) if sys.stderr.isatty() else None
    for result in train_fold(config, data, fold):
        if bar is None:
            print(f"final training: epoch {result.epoch}/{last}  loss {result.train_loss:.4f}", flush=True)
        else:
            bar.set_postfix(loss=f"{result.train_loss:.4f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    assert result is not None  # train.epochs >= 1 is validated
    return result.model, result.featurizer


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.checks import check_config, check_final_training, check_run
    from core.data.dataset import prepare_data
    from core.data.recorded import beside_config
    from core.devices import check_device
    from core.model_folder import FILES, data_for_model, decision_of, read_model_folder, save_model_folder
    from core.models.layers import learned_layer_weights
    from core.plots import PLOTS, write_final_plots

    config_path = Path(args.config)
    config = load_config_file(config_path)
    evidence = search_score(config_path)  # read now: a file that cannot be read again fails before training
    overrides = {k: v for k, v in {"data.manifest": args.data, "data.audio_root": args.audio_root}.items() if v}
    # A Pareto trial's config (pareto/<trial>.json) sits one folder below the run's splits.json and final/ folders.
    pareto = config_path.resolve().parent.name == "pareto"
    run_folder = config_path.resolve().parent.parent if pareto else config_path.resolve().parent
    overrides["data.splits_file"] = beside_config(config.data.splits_file, run_folder / config_path.name)
    overrides.update(parse_assignment(text) for text in args.overrides)  # --set: the device, batch size, ...
    config = check_config(config.with_overrides(overrides))
    if not args.eval_only:  # e.g. reduce_on_plateau: final training has no validation rows to step it on
        check_final_training(config)
    check_device(config.train.device, "train.device")  # final training runs here: on a device this machine has
    kind = "_folds" if args.model == "folds" else ""
    out = Path(args.out) if args.out else run_folder / (f"final_{config_path.stem}{kind}" if pareto else
                                                         f"final{kind}")
    if args.eval_only != bool(args.checkpoint):
        raise UserError("--eval-only needs --checkpoint MODEL_FOLDER" if args.eval_only else
                        "--checkpoint is only read with --eval-only")
    saved = read_model_folder(args.checkpoint, "--checkpoint") if args.eval_only else None
    if args.eval_only and (args.model != "folds") != (not saved.members):
        raise UserError(f"--model {args.model}: --checkpoint {args.checkpoint} is "
                        f"{'a fold ensemble' if saved.members else 'a single model'}")
    members = [f"fold{fold}" for fold in range(config.data.k_fold)] if args.model == "folds" else []
    written = ["eval_report.json"] if args.eval_only else ["report.json", *FILES, PLOTS, REPORT, *members]
    check_output_folder(out, "--out", written, args.overwrite)
    blocks: dict[str, Any] = dict(saved.metadata) if saved is not None else {}
    data = prepare_data(config, progress=print, allow_changed_data=args.allow_changed_data)
    check_run(config, data, [data.splits.development])  # what final training trains on
    if not args.eval_only and not data.regression:  # cheap, before any training: a bad --operating-point stops here
        blocks = decision(config, list(data.classes), out_of_fold_file(config_path), args.calibration,
                                      args.operating_point)
    started = time.time()
    trained_members: list[tuple[torch.nn.Module, torch.nn.Module, FoldStatistics]] = []
    if saved is not None:
        loaded = saved.load(config.train.device)
    else:
        temperature, threshold = decision_of(blocks)
        if members:
            trained_members = checkpoint_members(config_path, run_folder, config, data) or []
            source = "the search's checkpoint" if trained_members else "trained again to e*"
            trained_members = trained_members or train_members(config, data)
            ensemble = [trained_model(config, data, model, featurizer) for model, featurizer, _ in trained_members]
            loaded = dataclasses.replace(ensemble[0], members=ensemble)
        else:
            loaded = trained_model(config, data, *train_final(config, data))
        loaded = dataclasses.replace(loaded, temperature=temperature, threshold=threshold)
    report, outputs, raw_test = test_evaluation(config, data, loaded)
    report["model_kind"] = "fold ensemble" if loaded.members else "refit"
    if trained_members:
        report["fold_models"] = source
    if "calibration" in blocks:
        targets = data_for_model(loaded, data).targets[data.splits.test]
        report["calibration"] = calibration_report(blocks["calibration"], targets, raw_test, outputs)
    if (weights := learned_layer_weights(loaded.model)) is not None:  # model.layers=weighted: drawn in plots/
        report["layer_weights"] = [round(weight, 4) for weight in weights]
    if "validated" in evidence:  # the search's cross-validated score, beside the test score
        report["cv_score"] = evidence["validated"]
    report["seconds"] = round(time.time() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    name = "eval_report.json" if args.eval_only else "report.json"
    write_json(out / name, report)
    page = ""
    if saved is None:
        card = model_card(config, data, loaded.stats, report, evidence)
        if trained_members:  # each fold model a model folder of its own inside the ensemble's
            names = [f"fold{fold.index}" for fold in data.splits.folds]
            for member, (model, featurizer, stats), fold in zip(names, trained_members, data.splits.folds,
                                                                 strict=True):
                trained_on = {**card["trained_on"], "rows": f"fold {fold.index}'s training rows",
                              "clips": int(len(fold.train))}
                save_model_folder(out / member, model, featurizer, config, stats, {**card, "trained_on": trained_on})
            save_model_folder(out, None, None, config, loaded.stats, card, blocks, ensemble=names)
        else:
            save_model_folder(out, loaded.model, loaded.featurizer, config, loaded.stats, card, blocks)
        # the figures of the test report, and the run's page with them
        write_final_plots(out / PLOTS, report, data_for_model(loaded, data).targets[data.splits.test], outputs,
                          config.data.target, raw=raw_test)
        page = f"; figures in {out / PLOTS}/, the page {write_final_report(config_path, out)}"
    metrics = report["metrics"]
    print("test: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({report['test_clips']} clips)")
    print(f"wrote {out / name}" + ("" if args.eval_only else f" and the model folder {out} (tune.predict --model)")
          + page)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
