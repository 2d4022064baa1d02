"""Manifest loading and validation: one clear `DataError` naming file, row and column, before any training.

Values are read as written. A CSV (UTF-8, comma-separated) is read as text with no list of "missing" spellings:
`NA`, `None`, `null` are real speaker ids, labels and words. A Parquet file keeps its types, and its ids and labels
are turned into text (speaker 12 is "12"). Then each column is checked and converted explicitly:

- `path`: resolved against the audio root (default: the manifest's folder). A clip listed twice, under any
  spelling of its path, is an error naming both rows (it could land in two splits); two paths whose files hold the
  same bytes are a `DuplicateAudioWarning` naming both.
- the target: never empty, nor the text `nan` (pandas' spelling of a missing value). For a classifier, text; two
  spellings of one class that differ only by case or surrounding spaces (`normal`, `normal `, `Normal`) are an
  error naming both, with a row of each. For a regressor, a finite number.
- `age`: years, as a non-negative number (`4.5`) or in the clinical `Y;M` notation, years;months with months
  0..11 (`4;6` is 4.5 years, `5;0` is 5). Anything else is an error naming the row. The column is optional, but
  when it is present every row needs an age: an empty cell is an error, never a silent NaN.
- `speaker`, `word`: text; when the column is present, an empty cell is an error.

Rows are named `row N (line L)`: the N-th data row, on line L = N + 1 of a CSV (the header is line 1).

Other names for these columns are mapped with `Columns` (data.path_column, data.speaker_column, ...: `--path-column`
etc.), for any manifest; a folder is read by core/data/sources.py (a Hugging Face `save_to_disk` dataset, whose clips
may be bytes rather than files, or an `audiofolder`, whose path column is `file_name`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from core.data.sources import (
    AUDIOFOLDER_PATH,
    EmbeddedAudio,
    FolderManifest,
    is_saved_dataset,
    metadata_file,
    read_folder,
)
from core.errors import DataError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
OPTIONAL_COLUMNS = ("age", "word", "speaker")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")  # a folder of clips (inference)
TEXT_COLUMNS = ("path", "word", "speaker")
CLINICAL_AGE = re.compile(r"\s*(\d+)\s*;\s*(\d+)\s*")  # Y;M
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only sample formats that can hold NaN or infinity
NON_FINITE_BLOCK = 1 << 16  # frames per block when scanning a float file for NaN/inf: bounded memory
HASH_EDGE_BYTES = 1 << 20


class DuplicateAudioWarning(UserWarning):
    """Two rows name different paths whose files hold the same bytes: one recording that may land in two splits."""


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: `table` has absolute `path`s; row order is the manifest's."""

    source: Path
    table: pd.DataFrame
    target: str
    embedded: EmbeddedAudio | None = None  # clips stored as bytes in a dataset: their `path` is a key, not a file
    written: pd.DataFrame | None = None  # the table as read, before any check or conversion (predict copies it out)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    def subset(self, keep: np.ndarray, table: pd.DataFrame) -> Manifest:
        """These rows (a boolean mask over this manifest's rows, whose table is `table`)."""
        embedded = self.embedded.subset(keep) if self.embedded is not None else None
        return Manifest(source=self.source, table=table, target=self.target, embedded=embedded)


@dataclass(frozen=True)
class Columns:
    """Which of the manifest's columns hold each clip's path, speaker, word and age (data.*_column)."""

    path: str = ""  # "": the layout's own (path; file_name in an audiofolder; the Audio column of a dataset)
    speaker: str = "speaker"
    word: str = "word"
    age: str = "age"

    def written(self, role: str, default_path: str = "path") -> str:
        return (getattr(self, role) or default_path) if role == "path" else getattr(self, role)


COLUMN_FLAGS = {"path": "--path-column / data.path_column", "speaker": "--speaker-column / data.speaker_column",
                "word": "--word-column / data.word_column", "age": "--age-column / data.age_column"}


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (UTF-8, every cell as text) or Parquet manifest into a DataFrame."""
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a manifest CSV or Parquet")
    if not path.exists():
        raise DataError(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        table = _read_csv(path)
    elif suffix in PARQUET_SUFFIXES:
        try:
            table = pd.read_parquet(path)
        except Exception as error:  # the library's own message says what is wrong in the file
            raise DataError(f"{path}: cannot read manifest ({error})") from error
        table.columns = [str(column) for column in table.columns]
    elif suffix == ".jsonl":  # an audiofolder's metadata.jsonl: one JSON object per clip, typed as in Parquet
        try:
            table = pd.read_json(path, lines=True, dtype=False)
        except ValueError as error:
            raise DataError(f"{path}: cannot read manifest ({error})") from error
        table.columns = [str(column) for column in table.columns]
    else:
        raise DataError(f"{path}: unknown manifest format {path.suffix!r}; use .csv or .parquet")
    if table.empty:
        raise DataError(f"{path}: manifest has no rows")
    return table


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as the text written; a row whose field count differs from the header's is an error naming its line
    (pandas would read a header one field short as an index column and shift every value)."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: manifest is empty")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: manifest is UTF-16 encoded; save it as UTF-8")
    if b"\x00" in raw:
        raise DataError(f"{path}: manifest is not a text CSV (it holds NUL bytes: binary data, or UTF-16 without "
                        "a byte-order mark); give a UTF-8 CSV or a Parquet file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: manifest is not UTF-8 (byte 0x{raw[error.start]:02x}); "
                        "save it as UTF-8") from error
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    try:
        for record in reader:
            if not record:  # a blank line, skipped as pandas does
                continue
            if header is None:
                header = record
                continue
            if len(record) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(record)} fields, but the header has "
                                f"{len(header)} ({','.join(header)}); a manifest is a table with one value per column")
            rows.append(record)
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: not a CSV table ({error})") from error
    if header is None:
        raise DataError(f"{path}: manifest has no header line")
    header = [name if name else f"Unnamed: {i}" for i, name in enumerate(header)]
    if len(header) == 1 and any(mark in header[0] for mark in ";\t|"):
        raise DataError(f"{path}: the header {header[0]!r} is a single column; separate fields with commas")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]!r} appears more than once in the header")
    return pd.DataFrame(rows, columns=header, dtype=str)


def load_manifest(path: str | Path, target: str = "label", audio_root: str | Path | None = None,
                  regression: bool = False, check_audio: bool = True, columns: Columns | None = None,
                  labelled: bool = True) -> Manifest:
    """Read and validate a manifest (a CSV or Parquet file, an audiofolder or a `save_to_disk` folder); map the
    `columns` to their roles; resolve `path` against `audio_root` (default: the manifest's folder). The one loader
    of training and inference.

    `check_audio=False` skips everything that opens the clips (existence, headers, samples, duplicate content).
    `labelled=False` (inference): the target column may be missing, and may hold a single class; a folder that is
    neither an audiofolder nor a dataset is read as its audio files (any depth, sorted)."""
    columns = columns or Columns()
    source = Path(path).expanduser().resolve()
    embedded, default_path, root = None, "path", source.parent
    if source.is_dir() and not labelled and not is_saved_dataset(source) and metadata_file(source) is None:
        table, root = audio_folder_table(source), source
    elif source.is_dir():
        read = read_folder(source, columns.path)
        if isinstance(read, FolderManifest):  # save_to_disk: the audio column is already `path`
            table, embedded, root = read.table, read.embedded, source
            columns = Columns(path="", speaker=columns.speaker, word=columns.word, age=columns.age)
        else:  # an audiofolder: its metadata file, beside the clips
            source, default_path = read, AUDIOFOLDER_PATH
            table, root = read_table(source), source.parent
    else:
        table = read_table(source)
    written = table.reset_index(drop=True)
    table = _map_columns(source, written.copy(), columns, default_path)
    _require_columns(source, table, target if labelled else None)
    has_target = target in table.columns
    root = Path(audio_root).expanduser().resolve() if audio_root else root
    names = {role: _column_name(columns, role, default_path) for role in COLUMN_FLAGS}
    for column in TEXT_COLUMNS + (() if regression or not has_target else (target,)):
        if column in table.columns:
            table[column] = [_text(value) for value in table[column]]
    table["path"] = [value if embedded is not None and embedded.has_bytes(row) else
                     _resolve(source, row, value, root, names["path"]) for row, value in enumerate(table["path"])]
    _check_listed_once(source, table["path"].tolist())
    if has_target:
        _require_values(source, table[target], f"target {target!r}", "is empty or NaN")
        _refuse_nan_text(source, table[target], target)
    for column in OPTIONAL_COLUMNS:
        if column in table.columns:
            _require_values(source, table[column], f"column {names[column]}")
    if "age" in table.columns and (regression or target != "age"):  # a classifier's age target is a class name
        table["age"] = [_age(source, row, value, names["age"]) for row, value in enumerate(table["age"])]
    if has_target:
        _check_target(source, table, target, regression, classes=2 if labelled else 1)
    if check_audio:
        files = [row for row in range(len(table)) if embedded is None or not embedded.has_bytes(row)]
        stats = [_check_audio(source, row, table["path"].iloc[row]) for row in files]
        _check_distinct_files(source, [table["path"].iloc[row] for row in files], stats)
        if embedded is not None:
            for row in range(len(table)):
                if embedded.has_bytes(row):
                    _check_audio_bytes(source, row, table["path"].iloc[row], embedded.read(row))
    return Manifest(source=source, table=table, target=target, embedded=embedded, written=written)


def audio_folder_table(folder: Path) -> pd.DataFrame:
    """A folder of audio files as a manifest table: `path` relative to the folder, sorted, any depth."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
    return pd.DataFrame({"path": [file.relative_to(folder).as_posix() for file in files]}, dtype=str)


def _column_name(columns: Columns, role: str, default_path: str) -> str:
    """How messages name a role's column: as the user wrote it, with its role when mapped."""
    written = columns.written(role, default_path)
    return repr(role) if written == role else f"{written!r} (as {role})"


def _map_columns(source: Path, table: pd.DataFrame, columns: Columns, default_path: str) -> pd.DataFrame:
    """Copy each mapped column to its role's name (`path`, `speaker`, `word`, `age`), which the rest reads."""
    present = ", ".join(map(str, table.columns))
    for role, flag in COLUMN_FLAGS.items():
        written = columns.written(role, default_path)
        if written == role:
            continue
        if written not in table.columns:
            if role == "path" and not columns.path:
                raise DataError(f"{source}: missing required column {written!r} (an audiofolder's metadata names "
                                f"each clip in {written}; or name the path column with {flag}; columns: {present})")
            raise DataError(f"{source}: {flag} {written!r}: no such column (columns: {present})")
        table[role] = table[written]
    return table


def row_name(row: int) -> str:
    """Human row number: data rows start at line 2 of a CSV (after the header). Every message naming a row uses it."""
    return f"{row + 1} (line {row + 2})"


def _require_columns(source: Path, table: pd.DataFrame, target: str | None) -> None:
    if "path" not in table.columns:
        raise DataError(f"{source}: missing required column 'path' (columns: {', '.join(map(str, table.columns))}); "
                        "name another with --path-column / data.path_column")
    if target is not None and target not in table.columns:
        raise DataError(f"{source}: target column {target!r} not found (columns: "
                        f"{', '.join(map(str, table.columns))}); pick one with --target / data.target")


def _text(value: object) -> str:
    """A cell as text: a CSV's text unchanged; a Parquet id without a spurious `.0` (an int column with a gap is
    stored as floats); a missing Parquet value as "" (then refused as empty)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _blank(value: object) -> bool:
    return _text(value).strip() == ""


def _require_values(source: Path, values: pd.Series, what: str, empty: str = "is empty") -> None:
    blank = [row for row, value in enumerate(values) if _blank(value)]
    if blank:
        raise DataError(f"{source}: row {row_name(blank[0])}: {what} {empty} ({len(blank)} such row(s))")


def _refuse_nan_text(source: Path, values: pd.Series, target: str) -> None:
    """A target spelled `nan` is how pandas writes a missing value as text (`astype(str)`): it would train as a class
    or a NaN target, so it is refused; every other spelling (`NA`, `None`, `null`) is a real value."""
    rows = [row for row, value in enumerate(values) if isinstance(value, str) and value.strip().lower() == "nan"]
    if rows:
        raise DataError(f"{source}: row {row_name(rows[0])}: target {target!r} is empty or NaN "
                        f"({values.iloc[rows[0]]!r}, as pandas writes a missing value; {len(rows)} such row(s))")


def _resolve(source: Path, row: int, value: str, root: Path, column: str = "'path'") -> str:
    if not value.strip():
        raise DataError(f"{source}: row {row_name(row)}: column {column} is empty")
    file = Path(value)
    # normpath: `clips/a.wav`, `./clips/a.wav` and `clips/x/../a.wav` are one clip, so they compare equal here and
    # in the cache key and pre-split overlap checks.
    return os.path.normpath(file if file.is_absolute() else root / file)


def _check_listed_once(source: Path, paths: Sequence[str]) -> None:
    first: dict[str, int] = {}
    for row, path in enumerate(paths):
        if path in first:
            raise DataError(f"{source}: clip {path} is listed twice, in row {row_name(first[path])} and row "
                            f"{row_name(row)}; list each clip once (a clip in two rows can land in two splits)")
        first[path] = row


def _number(value: object) -> float | None:
    """A finite float, or None: text must spell a number; NaN and infinity are not usable values."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _not_number(value: object) -> str:
    """Why `_number` refused a value (it parsed as NaN or infinity, or did not parse)."""
    try:
        float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "is not a number"
    return "is not a finite number"


def _age(source: Path, row: int, value: object, column: str = "'age'") -> float:
    """Years: a number, or the clinical `Y;M` (years;months, months 0..11)."""
    where = f"{source}: row {row_name(row)}: column {column}={value!r}"
    clinical = CLINICAL_AGE.fullmatch(value) if isinstance(value, str) else None
    if clinical:
        years, months = int(clinical.group(1)), int(clinical.group(2))
        if months > 11:
            raise DataError(f"{where}: months must be 0..11 in the Y;M (years;months) notation")
        return years + months / 12
    age = _number(value)
    if age is None:
        raise DataError(f"{where} {_not_number(value)}; give years (4.5) or years;months (4;6)")
    if age < 0:
        raise DataError(f"{where} is negative")
    return age


def _check_target(source: Path, table: pd.DataFrame, target: str, regression: bool, classes: int = 2) -> None:
    """The target's values: numbers for a regressor; for a classifier one spelling per class and at least
    `classes` classes (2 to train; inference may score clips of one class)."""
    values = table[target]
    if regression:
        numbers = [_number(value) for value in values]
        for row, number in enumerate(numbers):
            if number is None:
                raise DataError(f"{source}: row {row_name(row)}: target {target!r}={values.iloc[row]!r} "
                                f"{_not_number(values.iloc[row])} (a regressor head needs a numeric target)")
        table[target] = np.asarray(numbers, dtype=np.float64)
        return
    _check_spellings(source, values, target)
    if values.nunique() < classes:
        raise DataError(f"{source}: target {target!r} has a single class ({values.iloc[0]!r}); "
                        "a classifier needs at least two")


def _check_spellings(source: Path, values: pd.Series, target: str) -> None:
    """Refuse two spellings of one class (case, surrounding spaces): they would train as two classes."""
    first: dict[str, int] = {}
    by_key: dict[str, str] = {}
    for row, label in enumerate(values):
        first.setdefault(label, row)
        key = label.strip().casefold()
        other = by_key.setdefault(key, label)
        if other != label:
            raise DataError(f"{source}: target {target!r} spells one class two ways: {other!r} (row "
                            f"{row_name(first[other])}) and {label!r} (row {row_name(row)}); labels that differ only "
                            "by case or surrounding spaces are not allowed, use one spelling")


def _check_audio(source: Path, row: int, file: str) -> os.stat_result:
    where = f"{source}: row {row_name(row)}: audio file {file}"
    if not Path(file).is_file():
        raise DataError(f"{where} not found")
    try:
        info = soundfile.info(file)
    except Exception as error:
        raise DataError(f"{where} is unreadable ({error})") from error
    if info.frames == 0:
        raise DataError(f"{where} is empty (0 samples)")
    if info.subtype in FLOAT_SUBTYPES and not _all_finite(file):
        raise DataError(f"{where} contains NaN or infinite samples")
    return os.stat(file)


def _check_audio_bytes(source: Path, row: int, key: str, data: bytes) -> None:
    """A clip stored as bytes: readable by the decoder, not empty (NaN samples are refused when it is decoded)."""
    where = f"{source}: row {row_name(row)}: audio {key}"
    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception as error:
        raise DataError(f"{where} is unreadable ({error})") from error
    if info.frames == 0:
        raise DataError(f"{where} is empty (0 samples)")


def _all_finite(file: str) -> bool:
    """Read in blocks (bounded memory for any length); float32, as the decoder reads it (a double beyond float32's
    range is infinite there too)."""
    try:
        return all(np.isfinite(block).all()
                   for block in soundfile.blocks(file, blocksize=NON_FINITE_BLOCK, dtype="float32", always_2d=True))
    except Exception:  # a damaged body is reported by the decoder, with its own message, at cache-build time
        return True


def _check_distinct_files(source: Path, paths: Sequence[str], stats: Sequence[os.stat_result]) -> None:
    """Two paths to one file (a link) are an error; two files with the same bytes are a warning."""
    inode: dict[tuple[int, int], int] = {}
    by_size: dict[int, list[int]] = defaultdict(list)
    for row, stat in enumerate(stats):
        other = inode.setdefault((stat.st_dev, stat.st_ino), row)
        if other != row:
            raise DataError(f"{source}: row {row_name(other)} ({paths[other]}) and row {row_name(row)} ({paths[row]}) "
                            "are the same file; list each clip once")
        by_size[stat.st_size].append(row)
    same: list[tuple[int, int]] = []
    for rows in by_size.values():
        if len(rows) > 1:
            first: dict[bytes, int] = {}
            for row in rows:
                digest = _content_hash(paths[row], stats[row].st_size)
                if digest in first:
                    same.append((first[digest], row))
                else:
                    first[digest] = row
    if same:
        a, b = min(same)
        warnings.warn(f"{source}: {len(same)} clip(s) have the same bytes as another row's clip (first: row "
                      f"{row_name(b)} {paths[b]} = row {row_name(a)} {paths[a]}): one recording may land in two splits",
                      DuplicateAudioWarning, stacklevel=3)


def _content_hash(file: str, size: int) -> bytes:
    """BLAKE2 of the file's bytes. Only files of equal size are compared, and clips are small, so this reads little;
    a file over 2 MB is hashed by its first and last MB (with its size, already equal): a hint for a warning need
    not read hours of audio, and two different recordings sharing both ends byte for byte are not a real case."""
    digest = hashlib.blake2b(digest_size=16)
    with open(file, "rb") as handle:
        if size <= 2 * HASH_EDGE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(HASH_EDGE_BYTES))
            handle.seek(-HASH_EDGE_BYTES, os.SEEK_END)
            digest.update(handle.read(HASH_EDGE_BYTES))
    return digest.digest()
