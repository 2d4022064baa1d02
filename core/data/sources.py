"""Manifests that are folders: a Hugging Face `save_to_disk` dataset and an `audiofolder` layout.

- **audiofolder**: `metadata.csv` (or `.parquet`/`.jsonl`) with a `file_name` column naming each clip relative to
  the folder, beside the audio files. It is a plain manifest whose path column is called `file_name`; reading it
  needs no extra package.
- **save_to_disk**: `state.json` + Arrow files, read with the `datasets` package (the optional `hf` extra). The
  audio column (a `datasets.Audio` feature, stored as `{bytes, path}` whatever its `decode` setting) holds either the
  encoded file (bytes) or a path to one. Clips given as bytes are never written out as files: the decode-once cache
  decodes them from memory (`EmbeddedAudio.read`), and each is named by a stable key (below) wherever a path would be
  used (splits.json, out-of-fold predictions, messages).

The key of a byte clip is the row's `path` field when every byte clip has one and no two share it (that is the
original file name, e.g. `clip_0012.wav`); otherwise `sha-<content hash>`, with `~2`, `~3` for repeated bytes in row
order. Both survive re-sorting and filtering the dataset; a row index would not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError

AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.parquet", "metadata.jsonl")
AUDIOFOLDER_PATH = "file_name"  # the column an audiofolder's metadata names each clip in
INSTALL_HF = "pip install 'audiotune[hf]'"
NO_FILE = -1  # EmbeddedAudio.sources: this row's clip is the file at its path, not bytes in a dataset


@dataclass(frozen=True, eq=False)
class EmbeddedAudio:
    """Which manifest rows are encoded bytes inside a `save_to_disk` dataset: row i is row `rows[i]` of
    `folders[sources[i]]` (its audio column `columns[...]`), or a file at its path where `sources[i]` is NO_FILE."""

    folders: tuple[str, ...]
    columns: tuple[str, ...]
    fingerprints: tuple[str, ...]  # of each dataset's Arrow files: a dataset saved again gives a new cache
    sources: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)

    def has_bytes(self, index: int) -> bool:
        return int(self.sources[index]) != NO_FILE

    def identity(self, index: int) -> list[object]:
        """What the cache key records for a byte clip (files are keyed by size and mtime instead)."""
        source = int(self.sources[index])
        return [self.fingerprints[source], int(self.rows[index])]

    def read(self, index: int) -> bytes:
        source = int(self.sources[index])
        return _audio_bytes(self.folders[source], self.columns[source], int(self.rows[index]))

    def subset(self, keep: np.ndarray) -> EmbeddedAudio:
        return EmbeddedAudio(self.folders, self.columns, self.fingerprints, self.sources[keep], self.rows[keep])

    @staticmethod
    def concatenate(parts: list[tuple[EmbeddedAudio | None, int]]) -> EmbeddedAudio | None:
        """One EmbeddedAudio for tables concatenated in this order ((part, its row count)); None when no part has
        byte clips."""
        if all(part is None for part, _ in parts):
            return None
        folders: list[str] = []
        columns: list[str] = []
        fingerprints: list[str] = []
        sources, rows = [], []
        for part, length in parts:
            if part is None:
                sources.append(np.full(length, NO_FILE, np.int64))
                rows.append(np.zeros(length, np.int64))
                continue
            offset = len(folders)
            folders += part.folders
            columns += part.columns
            fingerprints += part.fingerprints
            sources.append(np.where(part.sources == NO_FILE, NO_FILE, part.sources + offset))
            rows.append(part.rows)
        return EmbeddedAudio(tuple(folders), tuple(columns), tuple(fingerprints), np.concatenate(sources),
                             np.concatenate(rows))


@dataclass(frozen=True, eq=False)
class FolderManifest:
    """A folder read as a manifest: its table, the file messages name, the path column of its layout, and where
    clips given as bytes are (None: every clip is a file)."""

    table: pd.DataFrame
    source: Path
    path_column: str
    embedded: EmbeddedAudio | None = None


def is_saved_dataset(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()


def metadata_file(folder: Path) -> Path | None:
    return next((folder / name for name in AUDIOFOLDER_METADATA if (folder / name).is_file()), None)


def read_folder(folder: Path, path_column: str) -> FolderManifest | Path:
    """A `save_to_disk` dataset as a FolderManifest, or an audiofolder's metadata file (read as any manifest)."""
    if is_saved_dataset(folder):
        return read_saved_dataset(folder, path_column)
    metadata = metadata_file(folder)
    if metadata is not None:
        return metadata
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        raise DataError(f"{folder} is a Hugging Face DatasetDict with splits {', '.join(splits)}; give one split "
                        f"(--data {folder / (splits[0] if splits else 'train')}) or each as data.train_file / "
                        "data.valid_file / data.test_file")
    raise DataError(f"{folder} is a folder; give a manifest CSV or Parquet, an audiofolder ({AUDIOFOLDER_METADATA[0]} "
                    f"with {AUDIOFOLDER_PATH} beside the clips) or a Hugging Face save_to_disk folder (state.json)")


def _datasets(folder: Path):  # noqa: ANN202  (the module, imported only for these folders)
    try:
        import datasets
    except ImportError as error:
        raise DataError(f"{folder} is a Hugging Face dataset (save_to_disk); reading it needs the datasets "
                        f"package: {INSTALL_HF}") from error
    datasets.disable_progress_bars()
    return datasets


@functools.lru_cache(maxsize=8)
def _open(folder: str):  # noqa: ANN202  (a datasets.Dataset, memory-mapped; one per folder and process)
    datasets = _datasets(Path(folder))
    try:
        dataset = datasets.load_from_disk(folder)
    except Exception as error:  # the library's message says what is wrong with the folder
        raise DataError(f"{folder}: cannot read the Hugging Face dataset ({error})") from error
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(f"{folder}: a DatasetDict; give one of its splits")
    return dataset


def _audio_bytes(folder: str, column: str, row: int) -> bytes:
    """Row `row`'s encoded audio, read from the Arrow table (never through `datasets`' decoder, which needs
    torchcodec)."""
    value = _open(folder).data.column(column)[row]["bytes"]
    return value.as_buffer().to_pybytes()


def _is_audio(feature: object) -> bool:
    """A `datasets.Audio` feature, or the struct it is stored as (`{bytes, path}`)."""
    if type(feature).__name__ == "Audio":
        return True
    return isinstance(feature, dict) and set(feature) == {"bytes", "path"}


def read_saved_dataset(folder: Path, path_column: str = "") -> FolderManifest:
    """Every column but the audio one as the manifest's table (ClassLabel ids as their names), plus a `path`
    column: the resolved file for clips given as paths, the key for clips given as bytes."""
    dataset = _open(str(folder))
    features = dataset.features
    audio = [name for name, feature in features.items() if _is_audio(feature)]
    column = path_column or (audio[0] if len(audio) == 1 else "audio" if "audio" in features else "path")
    if column not in features:
        flag = "--path-column / data.path_column"
        raise DataError(f"{folder}: {flag} {column!r}: no such column (columns: {', '.join(features)})"
                        if path_column else
                        f"{folder}: no audio column (an Audio feature, or one named 'audio' or 'path'; columns: "
                        f"{', '.join(features)}); name it with {flag}")
    table = dataset.remove_columns([column]).to_pandas()
    for name, feature in features.items():
        if type(feature).__name__ == "ClassLabel" and name in table.columns:
            names = feature.names
            # -1 is ClassLabel's "no label" (Hugging Face test splits are often all -1): missing, never a class
            table[name] = [None if isinstance(value, int | np.integer) and value == -1 else
                           names[value] if isinstance(value, int | np.integer) and 0 <= value < len(names)
                           else value for value in table[name]]
    stored = dataset.data.column(column)
    if not _is_audio(features[column]):  # a text column of file paths
        table["path"] = [value if value is not None else "" for value in stored.to_pylist()]
        return FolderManifest(table=table, source=folder, path_column="path")
    clips = stored.combine_chunks()
    blobs = clips.field("bytes")
    paths = clips.field("path").to_pylist()
    with_bytes = np.asarray([blob.is_valid for blob in blobs], dtype=bool)
    keys = _keys(blobs, paths, with_bytes)
    table["path"] = [key if has else (paths[row] or "") for row, (key, has) in enumerate(zip(keys, with_bytes,
                                                                                              strict=True))]
    embedded = EmbeddedAudio(folders=(str(folder),), columns=(column,), fingerprints=(_fingerprint(dataset),),
                             sources=np.where(with_bytes, 0, NO_FILE).astype(np.int64),
                             rows=np.arange(len(table), dtype=np.int64))
    return FolderManifest(table=table, source=folder, path_column="path", embedded=embedded)


def _keys(blobs: object, paths: list[str | None], with_bytes: np.ndarray) -> list[str]:
    """Each byte clip's key (see the module's docstring); "" for clips given as paths."""
    named = [posixpath.normpath(paths[row]) if paths[row] else "" for row in np.flatnonzero(with_bytes)]
    if all(named) and len(set(named)) == len(named):
        keys = iter(named)
        return [next(keys) if has else "" for has in with_bytes]
    seen: dict[str, int] = {}
    out = []
    for row, has in enumerate(with_bytes):
        if not has:
            out.append("")
            continue
        digest = hashlib.blake2b(blobs[row].as_buffer(), digest_size=8).hexdigest()  # type: ignore[index]
        seen[digest] = seen.get(digest, 0) + 1
        out.append(f"sha-{digest}" + (f"~{seen[digest]}" if seen[digest] > 1 else ""))
    return out


def _fingerprint(dataset: object) -> str:
    entries = []
    for entry in dataset.cache_files:  # type: ignore[attr-defined]
        stat = os.stat(entry["filename"])
        entries.append([os.path.basename(entry["filename"]), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]
