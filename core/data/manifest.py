"""Manifest loading and validation: one clear `DataError` naming file, row and column, before any training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from core.errors import DataError

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
OPTIONAL_COLUMNS = ("age", "word", "speaker")


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: `table` has absolute `path`s; row order is the manifest's."""

    source: Path
    table: pd.DataFrame
    target: str

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (UTF-8) or Parquet manifest into a DataFrame."""
    if not path.exists():
        raise DataError(f"{path}: manifest not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown manifest format {path.suffix!r}; use .csv or .parquet")
    try:
        table = reader(path)
    except Exception as error:  # the library's own message says what is wrong in the file
        raise DataError(f"{path}: cannot read manifest ({error})") from error
    if table.empty:
        raise DataError(f"{path}: manifest has no rows")
    return table


def load_manifest(path: str | Path, target: str = "label", audio_root: str | Path | None = None,
                  regression: bool = False, check_audio: bool = True) -> Manifest:
    """Read and validate a manifest; resolve `path` against `audio_root` (default: the manifest's folder)."""
    source = Path(path).expanduser().resolve()
    table = read_table(source)
    _require_columns(source, table, target)
    root = Path(audio_root).expanduser().resolve() if audio_root else source.parent
    table = table.reset_index(drop=True).copy()
    table["path"] = [_resolve(source, row, value, root) for row, value in enumerate(table["path"])]
    _check_target(source, table, target, regression)
    for column in OPTIONAL_COLUMNS:
        if column in table.columns and table[column].isna().any():
            row = int(np.flatnonzero(table[column].isna().to_numpy())[0])
            raise DataError(f"{source}: row {_line(row)}: column {column!r} is empty")
    if check_audio:
        for row, file in enumerate(table["path"]):
            _check_audio(source, row, file)
    return Manifest(source=source, table=table, target=target)


def _line(row: int) -> str:
    """Human row number: data rows start at line 2 of a CSV (after the header)."""
    return f"{row + 1} (line {row + 2})"


def _require_columns(source: Path, table: pd.DataFrame, target: str) -> None:
    if "path" not in table.columns:
        raise DataError(f"{source}: missing required column 'path' (columns: {', '.join(map(str, table.columns))})")
    if target not in table.columns:
        raise DataError(f"{source}: target column {target!r} not found (columns: "
                        f"{', '.join(map(str, table.columns))}); pick one with --target / data.target")


def _resolve(source: Path, row: int, value: object, root: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{source}: row {_line(row)}: column 'path' is empty")
    file = Path(value)
    return str(file if file.is_absolute() else root / file)


def _check_target(source: Path, table: pd.DataFrame, target: str, regression: bool) -> None:
    values = table[target]
    blank = values.isna() | values.astype(str).str.strip().eq("")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{source}: row {_line(row)}: target {target!r} is empty or NaN "
                        f"({int(blank.sum())} such rows)")
    if regression:
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.isna().any():
            row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
            raise DataError(f"{source}: row {_line(row)}: target {target!r}={values.iloc[row]!r} is not a number "
                            "(a regressor head needs a numeric target)")
    elif values.nunique() < 2:
        raise DataError(f"{source}: target {target!r} has a single class ({values.iloc[0]!r}); "
                        "a classifier needs at least two")


def _check_audio(source: Path, row: int, file: str) -> None:
    where = f"{source}: row {_line(row)}: audio file {file}"
    if not Path(file).is_file():
        raise DataError(f"{where} not found")
    try:
        info = soundfile.info(file)
    except Exception as error:
        raise DataError(f"{where} is unreadable ({error})") from error
    if info.frames == 0:
        raise DataError(f"{where} is empty (0 samples)")
