"""`python -m tune.predict --model DIR --data MANIFEST_OR_FOLDER`: run a saved model on new clips.

DIR is a model folder: the --out of `tune.final` (or a fold<N>/ of `core.train --out`). It is self-contained:
the training manifest, decode cache and pretrained checkpoint are never read.

--data is a manifest (CSV or Parquet with a `path` column, relative to the manifest's folder or --audio-root,
and any of `word`, `age`, `speaker` and the model's target column, e.g. `label`) or a folder, whose audio files
(wav, flac, ogg, mp3, aiff; any depth, sorted) are the clips. Clips are decoded as in training (soundfile, channels
averaged to mono, resampled, cut or zero-padded to the model's length). A model conditioned on age and word
(features.conditioning) needs both columns and only words it was trained on.

Writes --out (CSV): one row per clip with `path`, `predicted` and `p_<class>` for each class (a regressor:
`prediction`), then the manifest's other columns. When the manifest has the target column, also prints the
metrics and writes the clinical report (as tune.final's report.json) to `<out stem>_report.json`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.command_line import ArgumentParser, check_output_folder, run_command, write_json
from core.errors import DataError, UserError

if TYPE_CHECKING:  # pandas, torch and the data layer load once the command line is parsed (a light --help)
    import pandas as pd

    from core.config import Config
    from core.data.cache import WaveformStore
    from core.data.manifest import Manifest
    from core.model_folder import ModelFolder

EXAMPLES = """examples:
  python -m tune.predict --model runs/demo/final --data new_clips/ --out predictions.csv
  python -m tune.predict --model runs/demo/final --data data/demo/manifest.csv --out demo.csv   # + demo_report.json
  python -m tune.predict --model models/v1 --data clinic.parquet --device cuda --batch-size 64 --cache-dir ~/.cache/p
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tune.predict", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder (tune.final --out)")
    p.add_argument("--data", required=True, metavar="MANIFEST_OR_FOLDER",
                   help="manifest (CSV/Parquet) or a folder of audio files")
    p.add_argument("--out", default="predictions.csv", metavar="CSV", help="predictions file (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and its _report.json) if they exist")
    p.add_argument("--audio-root", metavar="DIR", help="folder the manifest's paths are relative to "
                                                       "(default: the manifest's folder)")
    p.add_argument("--batch-size", type=int, metavar="N", help="clips per forward pass "
                                                               "(default: the model's train.eval_batch_size)")
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="keep the decoded clips here for the next run "
                                                      "(default: a temporary folder, removed after)")
    return p


def report_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_report.json")


def check_outputs(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a folder, or that exists (or whose report exists) without --overwrite."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a CSV file name")
    for path in (out, report_path(out)):
        if path.exists() and not overwrite:
            what = "already exists" if path == out else f"its report {path} already exists"
            raise UserError(f"--out {out}: {what}; pass --overwrite to replace it, or another --out")
    check_output_folder(out.parent, "--out", [], overwrite)  # its folder can be made and written


# --- the clips -------------------------------------------------------------------------------------------------
def read_clips(data: Path, audio_root: str | None, config: Config, regression: bool) -> Manifest:
    """The clips to score, through the training loader (core/data/manifest.py) with labels optional: a manifest, an
    audiofolder, a `save_to_disk` folder, or a folder of audio files. Every clip's header is read here: an unreadable
    one is a DataError naming it, before any decoding or model work."""
    from core.data.dataset import manifest_columns
    from core.data.manifest import load_manifest

    return load_manifest(data, config.data.target, audio_root, regression=regression,
                         columns=manifest_columns(config), labelled=False)


def prediction_table(written: pd.DataFrame, outputs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """path, predicted, p_<class>... (or prediction), then the manifest's other columns as written."""
    import pandas as pd

    if classes:
        columns: dict[str, Any] = {"predicted": np.asarray(classes, dtype=object)[outputs.argmax(axis=1)]}
        columns.update({f"p_{name}": outputs[:, i] for i, name in enumerate(classes)})
    else:
        columns = {"prediction": outputs[:, 0]}
    clash = sorted(set(columns) & set(written.columns))
    if clash:
        raise DataError(f"--data: the manifest already has column(s) {', '.join(clash)}, which the predictions are "
                        "written to; rename them")
    rest = written.drop(columns=["path"])
    return pd.concat([written[["path"]].reset_index(drop=True), pd.DataFrame(columns),
                      rest.reset_index(drop=True)], axis=1)


def check_not_an_input(out: Path, model: Path, data: Path) -> None:
    """--out (and its report) never lands on what predict reads, even with --overwrite: a file of the model folder
    (it would replace part of the model) or the --data manifest itself (the clips' list would be lost)."""
    model_folder, manifest = model.expanduser().resolve(), data.expanduser().resolve()
    for path in (out, report_path(out)):
        target = path.expanduser().resolve()
        if target == model_folder or model_folder in target.parents:
            raise UserError(f"--out {out}: {path.name} would be written inside the model folder {model}, replacing "
                            "part of it; --overwrite does not allow that: give an --out outside it")
        if manifest.is_file() and (target == manifest or (target.exists() and target.samefile(manifest))):
            raise UserError(f"--out {out}: {path.name} is the --data manifest itself; --overwrite does not allow "
                            "replacing it: give another --out")


# --- the command -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from core.data.dataset import clips_for_inference
    from core.device_checks import check_device
    from core.model_folder import evaluate_model, read_model_folder, uses_covariates
    from core.report import positive_class

    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    check_device(args.device, "--device")
    out = Path(args.out)
    check_outputs(out, args.overwrite)
    folder = read_model_folder(args.model, "--model")
    check_not_an_input(out, folder.folder, Path(args.data))
    config = folder.config
    manifest = read_clips(Path(args.data), args.audio_root, config, folder.regression)
    written = manifest.written
    labelled = config.data.target in manifest.table.columns
    if labelled and not folder.regression:
        positive_class(folder.classes, config.data.positive_class)  # the report needs one
    with tempfile.TemporaryDirectory(prefix="audiotune-predict-") as scratch:
        cache = args.cache_dir or scratch
        data = clips_for_inference(manifest, folder.classes, folder.words, uses_covariates(config),
                                   folder.regression,
                                   waveforms=lambda paths: decode(folder, paths, cache, kept=bool(args.cache_dir)))
        loaded = folder.load(args.device)  # None: where it was trained if this machine has it, else auto
        rows = np.arange(len(manifest), dtype=np.int64)
        evaluation = evaluate_model(loaded, data, rows, labelled=labelled, report=config if labelled else None,
                                    batch_size=args.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    prediction_table(written, evaluation.outputs, folder.classes).to_csv(out, index=False)
    print(f"wrote {out} ({len(rows)} clips)")
    if evaluation.report is None:
        return None
    write_json(report_path(out), {**evaluation.report, "model": str(folder.folder), "data": str(manifest.source)})
    metrics = evaluation.report["metrics"]
    print(f"metrics on {len(rows)} labelled clips: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {report_path(out)}")
    return evaluation.report


def decode(folder: ModelFolder, paths: list[str], cache_dir: str, kept: bool) -> WaveformStore:
    """The clips decoded with the model's own settings, by the training decoder (core/data/audio.py)."""
    from core.data.cache import open_cache

    settings = folder.decoding
    return open_cache(paths, int(settings["sample_rate"]), float(settings["max_seconds"]), cache_dir,
                      progress=print if kept else None)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
