"""`python -m tune.final --config best_config.json`: train the winner on train+valid, test once, report.

The held-out test set was never seen by the search; it is used exactly once here. `--out` becomes a self-contained
model folder (core/model_folder.py: model.safetensors, config.json, model.json, MODEL_CARD.md) that
`python -m tune.predict --model OUT` runs on new clips, plus `report.json` (metrics, confusion matrix, per-word,
per-age-band and per-speaker UAR). `--eval-only --checkpoint OUT` scores a saved model folder on the test set again.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--allow-changed-data", action="store_true",
                   help="use the search's recorded split (splits.json) although the manifest changed since; "
                        "clips it does not know are left out")
    return p


def trained_model(config: Config, data: AudioData, model: torch.nn.Module, featurizer: torch.nn.Module
                  ) -> LoadedModel:
    """The model just trained, as a model folder would load it (statistics of all development rows)."""
    from core.model_folder import LoadedModel, decoding_settings
    from core.statistics import FoldStatistics
    from core.train import resolve_device

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


def test_evaluation(config: Config, data: AudioData, loaded: LoadedModel) -> tuple[dict, np.ndarray]:
    """(the clinical report of the held-out test set, the model's outputs on it, for the figures)."""
    from core.model_folder import evaluate_model

    rows = data.splits.test
    evaluation = evaluate_model(loaded, data, rows, report=config)
    report = {**evaluation.report, "test_clips": int(len(rows)), "train_clips": int(len(data.splits.development))}
    return report, evaluation.outputs


def search_score(config_path: Path) -> dict[str, Any]:
    """The cross-validated evidence a search's best_config.json carries (`metric`, `validated`), for the
    model card; empty for a plain config."""
    raw = json.loads(config_path.read_text())
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
    from core.checks import check_config, check_run
    from core.data.dataset import prepare_data
    from core.data.recorded import beside_config
    from core.model_folder import FILES, data_for_model, read_model_folder, save_model_folder
    from core.models.layers import learned_layer_weights
    from core.plots import PLOTS, write_final_plots

    config_path = Path(args.config)
    config = load_config_file(config_path)
    overrides = {k: v for k, v in {"data.manifest": args.data, "data.audio_root": args.audio_root}.items() if v}
    # A Pareto trial's config (pareto/<trial>.json) sits one folder below the run's splits.json and final/ folders.
    pareto = config_path.resolve().parent.name == "pareto"
    run_folder = config_path.resolve().parent.parent if pareto else config_path.resolve().parent
    overrides["data.splits_file"] = beside_config(config.data.splits_file, run_folder / config_path.name)
    overrides.update(parse_assignment(text) for text in args.overrides)  # --set: the device, batch size, ...
    config = check_config(config.with_overrides(overrides))
    out = Path(args.out) if args.out else run_folder / (f"final_{config_path.stem}" if pareto else "final")
    if args.eval_only != bool(args.checkpoint):
        raise UserError("--eval-only needs --checkpoint MODEL_FOLDER" if args.eval_only else
                        "--checkpoint is only read with --eval-only")
    saved = read_model_folder(args.checkpoint, "--checkpoint") if args.eval_only else None
    written = ["eval_report.json"] if args.eval_only else ["report.json", *FILES, PLOTS, REPORT]
    check_output_folder(out, "--out", written, args.overwrite)
    data = prepare_data(config, progress=print, allow_changed_data=args.allow_changed_data)
    check_run(config, data, [data.splits.development])  # what final training trains on
    started = time.time()
    if saved is not None:
        report = test_report(config, data, saved.load(config.train.device))
    else:
        model, featurizer = train_final(config, data)
        loaded = trained_model(config, data, model, featurizer)
        report, outputs = test_evaluation(config, data, loaded)
        if (weights := learned_layer_weights(loaded.model)) is not None:  # model.layers=weighted: drawn in plots/
            report["layer_weights"] = [round(weight, 4) for weight in weights]
    evidence = search_score(config_path)
    if "validated" in evidence:  # the search's cross-validated score, beside the test score
        report["cv_score"] = evidence["validated"]
    report["seconds"] = round(time.time() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    name = "eval_report.json" if args.eval_only else "report.json"
    write_json(out / name, report)
    page = ""
    if saved is None:
        save_model_folder(out, loaded.model, loaded.featurizer, config, loaded.stats,
                          model_card(config, data, loaded.stats, report, evidence))
        # the figures of the test report, and the run's page with them
        write_final_plots(out / PLOTS, report, data_for_model(loaded, data).targets[data.splits.test], outputs,
                          config.data.target)
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
