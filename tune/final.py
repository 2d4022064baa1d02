"""`python -m tune.final --config best_config.json`: train the winner on train+valid, test once, report.

The held-out test set was never seen by the search; it is used exactly once here. Writes `model.pt`,
`config.json` and `report.json` (metrics, confusion matrix, per-word UAR) to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.command_line import ArgumentParser, check_output_folder, write_json
from core.config import Config, load_config_file
from core.data.dataset import AudioData, prepare_data
from core.data.recorded import beside_config
from core.data.splits import Fold
from core.errors import UserError
from core.evaluate import predict
from core.models import MODELS
from core.report import positive_class, report_of_rows
from core.statistics import FoldStatistics
from core.train import resolve_device, train_fold


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tune.final", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="best_config.json from tune.run (or a plain config JSON)")
    p.add_argument("--out", help="output folder (default: final/ beside the config)")
    p.add_argument("--data", help="manifest to use instead of the config's data.manifest")
    p.add_argument("--audio-root", help="folder the manifest's paths are relative to")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on the test set")
    p.add_argument("--checkpoint", help="model.pt written by an earlier tune.final (with --eval-only)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="use the search's recorded split (splits.json) although the manifest changed since; "
                        "clips it does not know are left out")
    return p


def test_report(config: Config, data: AudioData, model: torch.nn.Module, featurizer: torch.nn.Module) -> dict:
    """The clinical report (core/report.py) of the held-out test set."""
    rows = data.splits.test
    outputs = predict(model, featurizer, data, rows, resolve_device(config.train.device),
                      config.train.eval_batch_size)
    return {**report_of_rows(config, data, rows, outputs), "test_clips": int(len(rows)),
            "train_clips": int(len(data.splits.development))}


def train_final(config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.nn.Module]:
    fold = Fold(index=0, train=data.splits.development, valid=np.zeros(0, dtype=np.int64))
    result = None
    last = config.train.stop_epoch or config.train.epochs  # the schedule spans train.epochs either way
    for result in train_fold(config, data, fold):
        print(f"final training: epoch {result.epoch}/{last}  loss {result.train_loss:.4f}", flush=True)
    assert result is not None  # train.epochs >= 1 is validated
    return result.model, result.featurizer


def load_checkpoint(path: Path, config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.nn.Module]:
    if not path.is_file():
        raise UserError(f"--checkpoint {path}: not found")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    spec = MODELS.get(config.model.name)
    stats = FoldStatistics.from_data(data, data.splits.development)  # what final training trained on
    model, featurizer = spec.build(config, data.num_outputs, stats), spec.featurizer(config, stats)
    model.load_state_dict(saved["model"])
    device = resolve_device(config.train.device)
    return model.to(device), featurizer.to(device)


def validated_score(path: Path) -> dict[str, Any] | None:
    """The `validated` block of a best_config.json export (the search's cross-validated score); None for a plain
    config."""
    raw = json.loads(path.read_text())
    return raw.get("validated") if isinstance(raw, dict) else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    config_path = Path(args.config)
    config = load_config_file(config_path)
    cv_score = validated_score(config_path)
    overrides = {k: v for k, v in {"data.manifest": args.data, "data.audio_root": args.audio_root}.items() if v}
    overrides["data.splits_file"] = beside_config(config.data.splits_file, config_path)
    config = config.with_overrides(overrides).validate()
    out = Path(args.out) if args.out else config_path.resolve().parent / "final"
    if args.eval_only and not args.checkpoint:
        raise UserError("--eval-only needs --checkpoint model.pt")
    written = ["eval_report.json"] if args.eval_only else ["report.json", "model.pt", "config.json"]
    check_output_folder(out, "--out", written, args.overwrite)
    data = prepare_data(config, progress=print, allow_changed_data=args.allow_changed_data)
    if not data.regression:
        positive_class(data.classes, config.data.positive_class)  # a report without one is refused before training
    started = time.time()
    if args.eval_only:
        model, featurizer = load_checkpoint(Path(args.checkpoint), config, data)
    else:
        model, featurizer = train_final(config, data)
    report = test_report(config, data, model, featurizer)
    if cv_score is not None:
        report["cv_score"] = cv_score
    report["seconds"] = round(time.time() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    name = "eval_report.json" if args.eval_only else "report.json"
    write_json(out / name, report)
    if not args.eval_only:
        config.to_json(out / "config.json")
        torch.save({"model": model.state_dict(), "config": config.to_dict(), "classes": data.classes,
                    "words": data.words}, out / "model.pt")
    metrics = report["metrics"]
    print("test: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({report['test_clips']} clips)")
    print(f"wrote {out / name}" + ("" if args.eval_only else f", {out / 'model.pt'}, {out / 'config.json'}"))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
