"""The toy set in the Hugging Face layouts: an `audiofolder` (clips beside a metadata.csv) and a `save_to_disk`
dataset (clips as bytes), for the tests of training (tests/tune/test_hf_data.py) and inference
(tests/tune/test_predict.py) on them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd


def toy_table(manifest: Path) -> pd.DataFrame:
    return pd.read_csv(manifest, dtype=str)


def write_audiofolder(manifest: Path, folder: Path, speaker_column: str = "speaker") -> Path:
    """The toy clips copied under `folder` with a metadata.csv naming them in `file_name` (as `datasets`' audiofolder
    loader expects), the speaker in `speaker_column`."""
    table = toy_table(manifest)
    for path in table["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest.parent / path, folder / path)
    metadata = table.rename(columns={"path": "file_name", "speaker": speaker_column})
    metadata.to_csv(folder / "metadata.csv", index=False)
    return folder


def write_saved_dataset(manifest: Path, folder: Path, named: bool = True, order: list[int] | None = None) -> Path:
    """The toy set as `Dataset.save_to_disk`: an `audio` column (datasets.Audio) holding each file's bytes, named by
    the file's name (or unnamed), and the label as a ClassLabel (stored as ids)."""
    from datasets import Audio, ClassLabel, Dataset

    table = toy_table(manifest)
    rows = order if order is not None else list(range(len(table)))
    table = table.iloc[rows].reset_index(drop=True)
    dataset = Dataset.from_dict({
        "audio": [{"bytes": (manifest.parent / path).read_bytes(), "path": Path(path).name if named else None}
                  for path in table["path"]],
        "label": table["label"].tolist(), "speaker": table["speaker"].tolist(), "word": table["word"].tolist(),
        "age": table["age"].astype(float).tolist()})
    dataset = dataset.cast_column("audio", Audio()).cast_column("label", ClassLabel(names=["abnormal", "normal"]))
    dataset.save_to_disk(str(folder))
    return folder
