"""Manifest validation: every bad input is one `DataError` naming the file and the row/column, before training."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from core.config import Config
from core.data.dataset import load_validated_manifest
from core.data.manifest import load_manifest
from core.errors import DataError, UserError


def write_clip(path: Path, seconds: float = 0.2, rate: int = 16000, cycles: float = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.sin(np.linspace(0, cycles, int(seconds * rate))).astype(np.float32), rate)


def small_set(folder: Path, rows: int = 4) -> pd.DataFrame:
    """A valid table of `rows` clips in `folder/clips`, with relative paths and two classes."""
    for i in range(rows):
        write_clip(folder / "clips" / f"c{i}.flac", cycles=100 + i)  # distinct bytes: no duplicate-audio warning
    return pd.DataFrame({
        "path": [f"clips/c{i}.flac" for i in range(rows)],
        "label": ["normal" if i % 2 else "abnormal" for i in range(rows)],
        "age": [4.0 + i for i in range(rows)],
        "word": ["sun"] * rows,
        "speaker": [f"s{i}" for i in range(rows)],
    })


def message(error: pytest.ExceptionInfo[DataError]) -> str:
    return str(error.value)


def test_csv_and_parquet_load_the_same(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table.to_csv(tmp_path / "m.csv", index=False)
    table.to_parquet(tmp_path / "m.parquet", index=False)
    from_csv = load_manifest(tmp_path / "m.csv")
    from_parquet = load_manifest(tmp_path / "m.parquet")
    expected = [str((tmp_path / "clips" / f"c{i}.flac").resolve()) for i in range(4)]
    assert from_csv.paths == expected and from_parquet.paths == expected
    assert len(from_csv) == 4
    assert from_csv.table["label"].tolist() == table["label"].tolist()
    assert from_parquet.table["speaker"].tolist() == table["speaker"].tolist()


def test_toy_manifest_loads(toy_dataset: Path) -> None:
    """The shared fixture is valid: 36 rows, mixed formats, all paths absolute and existing."""
    manifest = load_manifest(toy_dataset)
    assert len(manifest) == 36
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in manifest.paths)
    assert {Path(p).suffix for p in manifest.paths} == {".flac", ".wav"}
    assert set(manifest.table["label"]) == {"normal", "abnormal"}


def test_audio_root_resolves_relative_paths(tmp_path: Path) -> None:
    """Paths are relative to the manifest's folder unless `audio_root` says otherwise; absolute paths stay."""
    table = small_set(tmp_path / "audio")
    elsewhere = tmp_path / "manifests"
    elsewhere.mkdir()
    table.to_csv(elsewhere / "m.csv", index=False)
    with pytest.raises(DataError, match="not found"):  # relative to manifests/: no clips there
        load_manifest(elsewhere / "m.csv")
    manifest = load_manifest(elsewhere / "m.csv", audio_root=tmp_path / "audio")
    assert manifest.paths[0] == str((tmp_path / "audio" / "clips" / "c0.flac").resolve())
    table.loc[0, "path"] = str(tmp_path / "audio" / "clips" / "c0.flac")
    table.to_csv(elsewhere / "m.csv", index=False)
    assert load_manifest(elsewhere / "m.csv", audio_root=tmp_path / "audio").paths[0] == table.loc[0, "path"]
    config = Config().with_overrides({"data.manifest": str(elsewhere / "m.csv"),
                                      "data.audio_root": str(tmp_path / "audio")})
    assert len(load_validated_manifest(config)) == 4


def test_utf8_csv_with_hangul(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table["word"] = ["토끼", "사과", "토끼", "사과"]
    table.to_csv(tmp_path / "m.csv", index=False, encoding="utf-8")
    assert load_manifest(tmp_path / "m.csv").table["word"].tolist() == ["토끼", "사과", "토끼", "사과"]


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "nope.csv")
    assert "nope.csv" in message(caught) and "not found" in message(caught)
    with pytest.raises(DataError, match="no manifest given"):
        load_validated_manifest(Config())


def test_unknown_format(tmp_path: Path) -> None:
    small_set(tmp_path).to_json(tmp_path / "m.json")
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.json")
    assert "m.json" in message(caught) and "'.json'" in message(caught)


def test_missing_path_column(tmp_path: Path) -> None:
    small_set(tmp_path).rename(columns={"path": "file"}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "m.csv" in message(caught) and "'path'" in message(caught) and "file" in message(caught)


def test_absent_target_column(tmp_path: Path) -> None:
    small_set(tmp_path).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv", target="severity")
    assert "m.csv" in message(caught) and "'severity'" in message(caught)
    assert load_manifest(tmp_path / "m.csv", target="speaker").target == "speaker"  # any column may be it


def test_missing_audio_file_names_row(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    (tmp_path / "clips" / "c2.flac").unlink()
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    text = message(caught)
    assert "m.csv" in text and "c2.flac" in text and "not found" in text
    assert "row 3 (line 4)" in text  # third data row, fourth line of the CSV


def test_corrupt_audio_names_file_and_row(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    (tmp_path / "clips" / "c1.flac").write_bytes(b"this is not audio at all" * 100)
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "c1.flac" in message(caught) and "row 2 (line 3)" in message(caught)
    assert "unreadable" in message(caught)


def test_zero_length_audio(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    soundfile.write(tmp_path / "clips" / "empty.wav", np.zeros(0, np.float32), 16000)
    table.loc[3, "path"] = "clips/empty.wav"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "empty.wav" in message(caught) and "row 4 (line 5)" in message(caught)
    assert "0 samples" in message(caught)


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_empty_label_names_row_and_column(tmp_path: Path, blank: str | None) -> None:
    table = small_set(tmp_path, rows=5)
    table["label"] = table["label"].astype(object)
    table.loc[2, "label"] = blank
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "m.csv" in message(caught) and "row 3 (line 4)" in message(caught) and "'label'" in message(caught)


def test_nan_label_in_parquet(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table["label"] = table["label"].astype(object)
    table.loc[1, "label"] = None
    table.to_parquet(tmp_path / "m.parquet", index=False)
    with pytest.raises(DataError, match=re.escape("row 2 (line 3): target 'label' is empty or NaN")):
        load_manifest(tmp_path / "m.parquet")


def test_single_class_target(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table["label"] = "normal"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "m.csv" in message(caught) and "'label'" in message(caught) and "single class" in message(caught)


def test_empty_optional_column_and_empty_path(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table["speaker"] = table["speaker"].astype(object)
    table.loc[1, "speaker"] = None
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=re.escape("row 2 (line 3): column 'speaker' is empty")):
        load_manifest(tmp_path / "m.csv")
    table = small_set(tmp_path)
    table.loc[0, "path"] = ""
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=re.escape("row 1 (line 2): column 'path' is empty")):
        load_manifest(tmp_path / "m.csv")


def test_regression_target_must_be_numeric(tmp_path: Path) -> None:
    table = small_set(tmp_path)
    table["score"] = [1.5, 2.0, "high", 3.0]
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=re.escape("row 3 (line 4): target 'score'='high' is not a number")):
        load_manifest(tmp_path / "m.csv", target="score", regression=True)
    table["score"] = [1.5, 2.0, 2.5, 3.0]
    table.to_csv(tmp_path / "m.csv", index=False)
    assert load_manifest(tmp_path / "m.csv", target="score", regression=True).target == "score"


def test_filter_words_unknown_word(toy_dataset: Path) -> None:
    """`data.filter_words` naming a word the manifest lacks is a data error, not an empty training set."""
    config = Config().with_overrides({"data.manifest": str(toy_dataset), "data.filter_words": "sun,zebra"})
    with pytest.raises(DataError, match="zebra"):
        load_validated_manifest(config)
    kept = load_validated_manifest(config.with_overrides({"data.filter_words": "sun"}))
    assert len(kept) == 12 and set(kept.table["word"]) == {"sun"}


def test_data_errors_are_user_errors() -> None:
    assert issubclass(DataError, UserError) and DataError.exit_code == 2


def test_inference_uses_the_same_loader_with_labels_optional(tmp_path: Path) -> None:
    """`labelled=False` (what predict reads): no target column, or one class, is fine; every other rule is the
    training loader's own (here: an age in the clinical Y;M notation, and a missing clip named by its row)."""
    table = small_set(tmp_path).drop(columns=["label"]).assign(age=["4;6", "5", "6;0", "7"])
    table.to_csv(tmp_path / "new.csv", index=False)
    manifest = load_manifest(tmp_path / "new.csv", labelled=False)
    assert manifest.table["age"].tolist() == [4.5, 5.0, 6.0, 7.0]
    assert manifest.written["age"].tolist() == ["4;6", "5", "6;0", "7"]  # as the user wrote it, for the output
    with pytest.raises(DataError, match="target column 'label' not found"):
        load_manifest(tmp_path / "new.csv")
    table.assign(label="abnormal").to_csv(tmp_path / "one_class.csv", index=False)
    assert load_manifest(tmp_path / "one_class.csv", labelled=False).table["label"].nunique() == 1
    with pytest.raises(DataError, match="single class"):
        load_manifest(tmp_path / "one_class.csv")
    table.assign(path=["missing.wav", *table["path"][1:]]).to_csv(tmp_path / "gone.csv", index=False)
    with pytest.raises(DataError, match=r"row 1 \(line 2\): audio file .*missing.wav not found"):
        load_manifest(tmp_path / "gone.csv", labelled=False)


def test_a_folder_of_clips_is_a_manifest_only_for_inference(tmp_path: Path) -> None:
    (tmp_path / "child" / "day2").mkdir(parents=True)
    for cycles, name in enumerate(("child/b.wav", "child/a.flac", "child/day2/c.wav")):
        write_clip(tmp_path / name, cycles=100 + cycles)
    (tmp_path / "child" / "notes.txt").write_text("not audio")
    manifest = load_manifest(tmp_path / "child", labelled=False)
    assert manifest.written["path"].tolist() == ["a.flac", "b.wav", "day2/c.wav"]
    assert manifest.paths == [str((tmp_path / "child" / p).resolve()) for p in ("a.flac", "b.wav", "day2/c.wav")]
    with pytest.raises(DataError, match="is a folder; give a manifest"):
        load_manifest(tmp_path / "child")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        load_manifest(tmp_path / "empty", labelled=False)
