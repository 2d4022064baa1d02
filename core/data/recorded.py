"""The split a search recorded (`splits.json`), applied again by clip path.

Final training, `--resume` and `core.train --config best_config.json` must score on the test set and folds the
search used, even if the manifest was re-sorted, moved or edited since: drawing the split again from an edited
manifest silently put clips the search had trained on into the "held-out" test set. So the record names every clip
by its path (relative to the audio root) with the row's content, and a hash of it; a manifest whose content changed
is refused, saying what changed, unless the user allows it (then clips the record does not know are left out).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from core.data.manifest import Manifest
from core.data.splits import Fold, Splits
from core.errors import DataError

VERSION = 2
COLUMNS = ("speaker", "word", "age")  # besides path and target: what a split and its statistics depend on


def clip_keys(manifest: Manifest, audio_root: str) -> list[str]:
    """Each clip's path relative to the audio root (so a moved data folder still matches), else absolute."""
    root = Path(audio_root).expanduser().resolve() if audio_root else manifest.source.parent
    keys = []
    for path in manifest.paths:
        file = Path(path)
        keys.append(file.relative_to(root).as_posix() if file.is_relative_to(root) else file.as_posix())
    return keys


def clip_rows(manifest: Manifest, keys: list[str]) -> dict[str, list[str]]:
    """{path key: [target, speaker, word, age]} as text: the content a split is recorded against."""
    table = manifest.table
    columns = [manifest.target, *(c for c in COLUMNS if c in table.columns)]
    values = table[columns].astype(str).to_numpy().tolist()
    return dict(zip(keys, values, strict=True))


def content_hash(rows: dict[str, list[str]]) -> str:
    text = json.dumps(sorted([key, *values] for key, values in rows.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record(manifest: Manifest, audio_root: str, splits: Splits) -> dict[str, Any]:
    """The splits.json document for `splits` of `manifest`."""
    keys = clip_keys(manifest, audio_root)
    rows = clip_rows(manifest, keys)
    named = np.asarray(keys, dtype=object)
    return {"version": VERSION, "manifest": str(manifest.source), "manifest_hash": content_hash(rows),
            "clips": [[key, *values] for key, values in rows.items()],
            "test": named[splits.test].tolist(),
            "folds": [{"fold": f.index, "train": named[f.train].tolist(), "valid": named[f.valid].tolist()}
                      for f in splits.folds]}


@dataclass(frozen=True)
class RecordedSplits:
    source: str
    manifest_hash: str
    clips: dict[str, list[str]]
    test: list[str]
    folds: list[tuple[int, list[str], list[str]]]


def read_recorded(location: str) -> RecordedSplits:
    """Read a splits.json (local path or storage URI) written by `record`."""
    try:
        fs, path = pafs.FileSystem.from_uri(location) if "://" in location else (pafs.LocalFileSystem(),
                                                                                 str(Path(location).resolve()))
        with fs.open_input_stream(path) as stream:
            raw = json.loads(stream.read())
        return RecordedSplits(source=location, manifest_hash=raw["manifest_hash"],
                              clips={row[0]: list(row[1:]) for row in raw["clips"]}, test=list(raw["test"]),
                              folds=[(int(f["fold"]), list(f["train"]), list(f["valid"])) for f in raw["folds"]])
    except FileNotFoundError as error:
        raise DataError(f"data.splits_file {location}: not found (the search's splits.json)") from error
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise DataError(f"data.splits_file {location}: not a splits.json written by a search "
                        f"({type(error).__name__}: {error})") from error


def beside_config(splits_file: str, config_file: str | Path) -> str:
    """The recorded split of an exported config: where the config says, or, when the run folder was moved or
    copied, the splits.json beside the config file."""
    beside = Path(config_file).expanduser().resolve().parent / "splits.json"
    if splits_file and "://" not in splits_file and not Path(splits_file).exists() and beside.is_file():
        return str(beside)
    return splits_file


def changes(recorded: RecordedSplits, rows: dict[str, list[str]]) -> str:
    """What differs between the recorded clips and the manifest's now, in a few words ('' when nothing)."""
    removed = sorted(set(recorded.clips) - set(rows))
    added = sorted(set(rows) - set(recorded.clips))
    edited = sorted(key for key in set(rows) & set(recorded.clips) if rows[key] != recorded.clips[key])
    parts = [f"{len(found)} clip(s) {what} (e.g. {found[0]})"
             for found, what in ((removed, "removed"), (added, "added"), (edited, "with changed label, speaker, "
                                                                                  "word or age")) if found]
    return "; ".join(parts)


def apply_recorded(recorded: RecordedSplits, manifest: Manifest, audio_root: str, allow_changed: bool
                   ) -> tuple[Splits, int]:
    """The recorded splits as row indices of `manifest`, and how many of its clips the record leaves out.

    A manifest whose content changed since the record is a DataError naming what changed, unless `allow_changed`:
    then removed clips drop out of their part, and clips the record does not know are used nowhere (they were
    neither validated on nor held out by the search)."""
    keys = clip_keys(manifest, audio_root)
    rows = clip_rows(manifest, keys)
    if content_hash(rows) != recorded.manifest_hash and not allow_changed:
        raise DataError(f"{manifest.source} changed since the search recorded its split in {recorded.source}: "
                        f"{changes(recorded, rows) or 'row content differs'}. Pass --allow-changed-data to use the "
                        "recorded split on the clips still there, or search again")
    index = {key: row for row, key in enumerate(keys)}

    def rows_of(named: list[str]) -> np.ndarray:
        return np.asarray(sorted(index[key] for key in named if key in index), dtype=np.int64)

    folds = [Fold(index=i, train=rows_of(train), valid=rows_of(valid)) for i, train, valid in recorded.folds]
    for fold in folds:
        if not len(fold.train) or not len(fold.valid):
            raise DataError(f"{manifest.source}: fold {fold.index} of {recorded.source} has no clips left")
    splits = Splits(test=rows_of(recorded.test), folds=folds)
    if not len(splits.test):
        raise DataError(f"{manifest.source}: none of the test clips of {recorded.source} is left")
    unknown = len(set(keys) - set(recorded.clips))
    return splits, unknown
