"""`python -m tune.predict --model DIR --data MANIFEST_OR_FOLDER`: run a saved model on new clips.

DIR is a model folder: the --out of `tune.final` (or a fold<N>/ of `core.train --out`). It is self-contained:
the training manifest, decode cache and pretrained checkpoint are never read.

--data is a manifest (CSV or Parquet with a `path` column, relative to the manifest's folder or --audio-root,
and any of `word`, `age`, `speaker` and the model's target column, e.g. `label`) or a folder, whose audio files
(wav, flac, ogg, mp3, aiff; any depth, sorted) are the clips. Clips are decoded as in training (soundfile, channels
averaged to mono, resampled, cut or zero-padded to the model's length). A model conditioned on age and word
(features.conditioning) needs both columns and only words it was trained on; for a folder of one child's recordings
of one word, --age and --word give them.

Writes --out (CSV): one row per clip with `path`, `predicted` and `p_<class>` for each class (a regressor:
`prediction`), then the manifest's other columns. The probabilities are calibrated by the model folder's temperature
and `predicted` is the decision at its operating point (two classes: the positive class when its probability is at
least the threshold; `--threshold` overrides it for this run); `logit` keeps the model's raw log-odds of the positive
class (more classes: `logit_<class>`, its log-probabilities before calibration). When the manifest has the target
column, also prints the metrics and writes the clinical report (as tune.final's report.json) to
`<out stem>_report.json`.
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
    from core.data.sources import EmbeddedAudio
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
    p.add_argument("--threshold", type=float, metavar="P",
                   help="decide the positive class at this probability for this run, instead of the model folder's "
                        "operating point (two classes only)")
    p.add_argument("--age", type=float, metavar="YEARS",
                   help="the child's age for every clip (a folder of one child's recordings; the manifest must not "
                        "have an age column)")
    p.add_argument("--word", metavar="WORD", help="the target word of every clip (the manifest must not have a "
                                                  "word column)")
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
    import dataclasses

    from core.data.dataset import manifest_columns
    from core.data.manifest import load_manifest
    from core.data.sources import AUDIOFOLDER_PATH

    manifest = load_manifest(data, config.data.target, audio_root, regression=regression,
                             columns=manifest_columns(config), labelled=False)
    written = manifest.written
    if "path" not in written.columns:  # an audiofolder names its clips in file_name (or data.path_column)
        column = next(name for name in (config.data.path_column, AUDIOFOLDER_PATH) if name in written.columns)
        manifest = dataclasses.replace(manifest, written=written.rename(columns={column: "path"}))
    return manifest


def with_covariates(manifest: Manifest, age: float | None, word: str | None) -> Manifest:
    """--age / --word as every clip's `age` / `word` column (in the predictions too); refused where the manifest
    has that column already."""
    import dataclasses
    import math

    given = {"age": age, "word": word}
    if age is not None and not (math.isfinite(age) and age >= 0):
        raise UserError(f"--age {age:g}: give the child's age in years (a number >= 0)")
    if word is not None and not word.strip():
        raise UserError("--word: empty; give the target word the clips say")
    table, shown = manifest.table.copy(), manifest.written.copy()
    for column, value in given.items():
        if value is None:
            continue
        if column in table.columns:
            raise UserError(f"--{column}: the manifest {manifest.source} has its own {column!r} column; drop "
                            f"--{column} (it is for a folder of one child's recordings)")
        table[column] = float(value) if column == "age" else str(value).strip()
        shown[column] = table[column].to_numpy()
    return dataclasses.replace(manifest, table=table, written=shown)


def check_covariates(manifest: Manifest, folder: ModelFolder) -> None:
    """A model conditioned on age and word reads both for every clip: say how to give them."""
    from core.model_folder import uses_covariates

    if not uses_covariates(folder.config):
        return
    words = folder.words
    needed = ["age"] + (["word"] if words != [""] else [])  # a model trained without words has the one word ""
    absent = [column for column in needed if column not in manifest.table.columns]
    if absent:
        known = f" (words it knows: {', '.join(words)})" if "word" in absent else ""
        what = " and ".join({"age": "the child's age", "word": "the target word"}[c] for c in absent)
        raise DataError(f"--data {manifest.source}: no {' or '.join(repr(c) for c in absent)} column, but the model "
                        f"is conditioned on {what} (features.conditioning): give a manifest with "
                        f"{' and '.join(absent)} column{'s' if len(absent) > 1 else ''}, or, for a folder of one "
                        f"child's recordings, {' '.join(f'--{c} {c.upper()}' for c in absent)}{known}")


def prediction_table(written: pd.DataFrame, outputs: np.ndarray, classes: list[str], raw: np.ndarray | None = None,
                     positive: int | None = None, threshold: float | None = None) -> pd.DataFrame:
    """path, predicted, p_<class>... and the raw logit(s) (or prediction), then the manifest's other columns as
    written. With a `threshold` on the probability of class `positive`, `predicted` is that decision; else the most
    probable class."""
    import pandas as pd

    from core.calibration import log_probabilities

    if classes:
        chosen = outputs.argmax(axis=1)
        if threshold is not None and positive is not None and len(classes) == 2:
            chosen = np.where(outputs[:, positive] >= threshold, positive, 1 - positive)
        columns: dict[str, Any] = {"predicted": np.asarray(classes, dtype=object)[chosen]}
        columns.update({f"p_{name}": outputs[:, i] for i, name in enumerate(classes)})
        logs = log_probabilities(raw if raw is not None else outputs)
        if len(classes) == 2 and positive is not None:  # log-odds: exact, whatever constant log-softmax dropped
            columns["logit"] = logs[:, positive] - logs[:, 1 - positive]
        else:
            columns.update({f"logit_{name}": logs[:, i] for i, name in enumerate(classes)})
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
    from core.devices import check_device
    from core.model_folder import evaluate_model, read_model_folder, uses_covariates
    from core.report import positive_class

    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    check_device(args.device, "--device")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UserError(f"--threshold {args.threshold:g}: give a probability between 0 and 1")
    out = Path(args.out)
    check_outputs(out, args.overwrite)
    folder = read_model_folder(args.model, "--model")
    check_not_an_input(out, folder.folder, Path(args.data))
    config = folder.config
    if args.threshold is not None and len(folder.classes) != 2:
        raise UserError(f"--threshold: the model at {folder.folder} has {len(folder.classes) or 'no'} classes; a "
                        "threshold decides between two")
    manifest = with_covariates(read_clips(Path(args.data), args.audio_root, config, folder.regression), args.age,
                               args.word)
    written = manifest.written
    check_covariates(manifest, folder)
    labelled = config.data.target in manifest.table.columns
    if labelled and not folder.regression:
        positive_class(folder.classes, config.data.positive_class)  # the report needs one
    threshold, positive = decision_line(folder, args.threshold)
    with tempfile.TemporaryDirectory(prefix="audiotune-predict-") as scratch:
        cache = args.cache_dir or scratch
        data = clips_for_inference(manifest, folder.classes, folder.words, uses_covariates(config),
                                   folder.regression,
                                   waveforms=lambda paths: decode(folder, paths, cache, kept=bool(args.cache_dir),
                                                                  embedded=manifest.embedded))
        loaded = folder.load(args.device)  # None: where it was trained if this machine has it, else auto
        rows = np.arange(len(manifest), dtype=np.int64)
        evaluation = evaluate_model(loaded, data, rows, labelled=labelled, report=config if labelled else None,
                                    batch_size=args.batch_size, threshold=threshold)
    out.parent.mkdir(parents=True, exist_ok=True)
    prediction_table(written, evaluation.outputs, folder.classes, evaluation.raw, positive,
                     threshold).to_csv(out, index=False)
    print(f"wrote {out} ({len(rows)} clips)")
    if evaluation.report is None:
        return None
    write_json(report_path(out), {**evaluation.report, "model": str(folder.folder), "data": str(manifest.source)})
    metrics = evaluation.report["metrics"]
    print(f"metrics on {len(rows)} labelled clips: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {report_path(out)}")
    return evaluation.report


def decision_line(folder: ModelFolder, override: float | None) -> tuple[float | None, int | None]:
    """(the threshold this run decides at, the positive class's id), printing which it is and where it came from."""
    from core.model_folder import decision_of

    if folder.regression:
        return None, None
    temperature, stored = decision_of(folder.metadata)
    point = folder.metadata.get("operating_point") or {}
    positive = folder.classes.index(point["positive_class"]) if point.get("positive_class") in folder.classes \
        else None
    if positive is None and len(folder.classes) == 2:
        from core.statistics import positive_class

        try:
            positive = positive_class(folder.classes, folder.config.data.positive_class)
        except UserError:
            positive = None
    if override is not None and positive is None:
        raise UserError("--threshold: the model names no positive class (data.positive_class)")
    calibrated = f"calibrated probabilities (temperature {temperature:.4f})" if temperature != 1.0 else \
        "the model's own probabilities (no calibration in the model folder)"
    if override is not None:
        kept = f", instead of the model folder's {stored:.4f} ({point.get('rule')})" if stored is not None else ""
        print(f"decision: {folder.classes[positive]} when p >= {override:g} (--threshold, this run only{kept}); "
              f"{calibrated}")
        return override, positive
    if stored is not None:
        print(f"decision: {point['positive_class']} when p >= {stored:.4f} (operating point {point.get('rule')}, "
              f"chosen on the out-of-fold predictions); {calibrated}")
    else:
        print(f"decision: the most probable class (the model folder has no operating point); {calibrated}")
    return stored, positive


def decode(folder: ModelFolder, paths: list[str], cache_dir: str, kept: bool,
           embedded: EmbeddedAudio | None = None) -> WaveformStore:
    """The clips decoded with the model's own settings, by the training decoder (core/data/audio.py); `embedded`:
    the clips a save_to_disk dataset holds as bytes."""
    from core.data.cache import open_cache

    settings = folder.decoding
    return open_cache(paths, int(settings["sample_rate"]), float(settings["max_seconds"]), cache_dir,
                      progress=print if kept else None, embedded=embedded)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
