"""Manifest values are read as written: ids and labels are text, ages and regression targets are numbers or a
`DataError` naming the row, a clip is listed once, and the cache decodes only the part of a clip it keeps."""

from __future__ import annotations

import re
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
import torchaudio

from core.data.audio import ClipDecoder
from core.data.cache import open_cache
from core.data.manifest import DuplicateAudioWarning, load_manifest
from core.errors import DataError


def write_clip(path: Path, seed: int, seconds: float = 0.2, rate: int = 16000) -> None:
    """A distinct clip per seed (noise), so no two test clips have the same bytes unless a test says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    soundfile.write(path, audio.astype(np.float32), rate)


def write_manifest(folder: Path, rows: int = 4, **columns: list[object]) -> Path:
    """`folder/m.csv` over `rows` distinct clips; `columns` replace or add columns (cells written as given)."""
    for i in range(rows):
        write_clip(folder / "clips" / f"c{i}.flac", seed=i)
    table = pd.DataFrame({
        "path": [f"clips/c{i}.flac" for i in range(rows)],
        "label": ["normal" if i % 2 else "abnormal" for i in range(rows)],
        "age": [str(4 + i) for i in range(rows)],
        "word": ["sun"] * rows,
        "speaker": [f"s{i}" for i in range(rows)],
    })
    for name, values in columns.items():
        table[name] = values
    table.to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def error_text(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        load_manifest(path, **options)
    return str(caught.value)


def test_na_like_text_stays_text(tmp_path: Path) -> None:
    """`NA`, `None`, `null`, `NaN` are real ids, labels and words (pandas' default NA list would erase them)."""
    source = write_manifest(tmp_path, speaker=["NA", "null", "s2", "NaN"], label=["None", "normal", "None", "normal"],
                            word=["null", "sun", "NA", "sun"])
    table = load_manifest(source).table
    assert table["speaker"].tolist() == ["NA", "null", "s2", "NaN"]
    assert table["label"].tolist() == ["None", "normal", "None", "normal"]
    assert table["word"].tolist() == ["null", "sun", "NA", "sun"]


@pytest.mark.parametrize("variant", ["normal ", "Normal", " NORMAL"])
def test_label_spelling_variants_are_an_error_naming_both(tmp_path: Path, variant: str) -> None:
    source = write_manifest(tmp_path, rows=5, label=["abnormal", "normal", "abnormal", variant, "normal"])
    text = error_text(source)
    assert "m.csv" in text and "'label'" in text
    assert "'normal'" in text and repr(variant) in text
    assert "row 2 (line 3)" in text and "row 4 (line 5)" in text


def test_clinical_age_notation_is_parsed(tmp_path: Path) -> None:
    """`Y;M` is years;months (months 0..11): 4;6 is 4.5 years. Plain numbers stay numbers."""
    source = write_manifest(tmp_path, age=["4;6", "5;0", "3", "6.25"])
    ages = load_manifest(source).table["age"]
    assert ages.dtype == np.float64
    assert ages.tolist() == pytest.approx([4.5, 5.0, 3.0, 6.25])


@pytest.mark.parametrize(("value", "why"), [("unknown", "not a number"), ("nan", "not a finite number"),
                                            ("inf", "not a finite number"), ("4;12", "months"), ("-1", "negative")])
def test_bad_age_names_row_column_and_value(tmp_path: Path, value: str, why: str) -> None:
    source = write_manifest(tmp_path, age=["4", "5", value, "6"])
    text = error_text(source)
    assert "m.csv" in text and "row 3 (line 4)" in text and "'age'" in text and repr(value) in text
    assert why in text


def test_empty_age_cell_is_an_error_when_the_column_exists(tmp_path: Path) -> None:
    source = write_manifest(tmp_path, age=["4", "", "5", "6"])
    assert "row 2 (line 3): column 'age' is empty" in error_text(source)


def test_regression_target_must_be_finite(tmp_path: Path) -> None:
    source = write_manifest(tmp_path, score=["1.5", "inf", "2", "3"])
    text = error_text(source, target="score", regression=True)
    assert "row 2 (line 3)" in text and "'score'" in text and "'inf'" in text
    source = write_manifest(tmp_path, score=["1.5", " 2.5", "2", "3e0"])
    assert load_manifest(source, target="score", regression=True).table["score"].tolist() == [1.5, 2.5, 2.0, 3.0]


def test_path_listed_twice_names_both_rows(tmp_path: Path) -> None:
    """The same clip under another speaker id would land in two splits: refused, whatever the spelling."""
    source = write_manifest(tmp_path, rows=5, path=["clips/c0.flac", "clips/c1.flac", "clips/c2.flac",
                                                    "./clips/../clips/c1.flac", "clips/c4.flac"])
    text = error_text(source)
    assert "m.csv" in text and "c1.flac" in text and "listed twice" in text
    assert "row 2 (line 3)" in text and "row 4 (line 5)" in text
    absolute = str(tmp_path / "clips" / "c0.flac")
    source = write_manifest(tmp_path, rows=4, path=["clips/c0.flac", "clips/c1.flac", absolute, "clips/c3.flac"])
    assert "row 1 (line 2)" in error_text(source, check_audio=False)  # a text check: no file is opened


def test_identical_content_under_two_paths_warns_naming_both(tmp_path: Path) -> None:
    source = write_manifest(tmp_path, rows=4)
    (tmp_path / "clips" / "c3.flac").write_bytes((tmp_path / "clips" / "c1.flac").read_bytes())
    with pytest.warns(DuplicateAudioWarning) as caught:
        load_manifest(source)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "c1.flac" in text and "c3.flac" in text and "row 2 (line 3)" in text and "row 4 (line 5)" in text
    with warnings.catch_warnings():  # distinct clips of equal size: no warning
        warnings.simplefilter("error")
        (tmp_path / "clips" / "c3.flac").unlink()
        write_clip(tmp_path / "clips" / "c3.flac", seed=3)
        load_manifest(source)


def test_ragged_csv_names_the_line(tmp_path: Path) -> None:
    """A row with more fields than the header (the two-line case pandas would read as an index) or fewer."""
    write_clip(tmp_path / "clips" / "c0.flac", seed=0)
    source = tmp_path / "m.csv"
    source.write_text("path,label\nclips/c0.flac,normal,extra\n")
    text = error_text(source)
    assert "m.csv" in text and "line 2" in text and "3 fields" in text and "header has 2" in text
    source.write_text("path,label\nclips/c0.flac,normal\nclips/c0.flac\n")
    assert "line 3" in error_text(source)


def test_manifest_that_is_not_a_table(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    assert "is a folder; give a manifest CSV or Parquet" in error_text(folder)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty.csv" in error_text(empty) and "empty" in error_text(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    assert "binary.csv" in error_text(binary) and "not a text" in error_text(binary)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("path,label\nclips/a.wav,normal\n", encoding="utf-16")
    assert "utf16.csv" in error_text(utf16) and "UTF-16" in error_text(utf16)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\nclips/é.wav,normal\n".encode("latin-1"))
    assert "latin.csv" in error_text(latin) and "UTF-8" in error_text(latin)
    garbage = tmp_path / "m.parquet"
    garbage.write_bytes(b"not parquet at all")
    assert "m.parquet" in error_text(garbage) and "cannot read" in error_text(garbage)


def test_parquet_ids_are_text_and_labels_checked(tmp_path: Path) -> None:
    for i in range(4):
        write_clip(tmp_path / "clips" / f"c{i}.flac", seed=i)
    table = pd.DataFrame({"path": [f"clips/c{i}.flac" for i in range(4)], "label": ["a", "b", "a", "b"],
                          "speaker": [12, 13, 12, 14], "age": [4.0, 5.5, 6.0, 7.0]})
    table.to_parquet(tmp_path / "m.parquet", index=False)
    loaded = load_manifest(tmp_path / "m.parquet").table
    assert loaded["speaker"].tolist() == ["12", "13", "12", "14"]
    assert loaded["age"].tolist() == [4.0, 5.5, 6.0, 7.0]
    table.assign(label=["a", "b", "A", "b"]).to_parquet(tmp_path / "m.parquet", index=False)
    assert "'a'" in error_text(tmp_path / "m.parquet") and "'A'" in error_text(tmp_path / "m.parquet")
    table.assign(age=[4.0, np.nan, 6.0, 7.0]).to_parquet(tmp_path / "m.parquet", index=False)
    assert "row 2 (line 3): column 'age' is empty" in error_text(tmp_path / "m.parquet")


def test_non_finite_samples_name_file_and_row(tmp_path: Path) -> None:
    source = write_manifest(tmp_path, rows=4, path=["clips/c0.flac", "clips/c1.flac", "clips/nan.wav",
                                                    "clips/c3.flac"])
    audio = np.full(1600, 0.1, np.float32)
    audio[800] = np.nan
    soundfile.write(tmp_path / "clips" / "nan.wav", audio, 16000, subtype="FLOAT")
    text = error_text(source)
    assert "m.csv" in text and "row 3 (line 4)" in text and "nan.wav" in text and "NaN or infinite" in text


def test_long_file_decodes_only_the_kept_head(tmp_path: Path) -> None:
    """A 10-minute 16 kHz file (9.6 M samples, 38 MB as float32) cropped to 2 s: the result is the head of the full
    decode, and decoding it allocates a small fraction of the full file."""
    rate, seconds = 16000, 600
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, rate * seconds).astype(np.float32)
    soundfile.write(tmp_path / "long.wav", samples, rate, subtype="PCM_16")
    del samples
    full, _ = soundfile.read(tmp_path / "long.wav", dtype="float32")
    tracemalloc.start()
    try:
        store = open_cache([str(tmp_path / "long.wav")], rate, 2.0, tmp_path / "cache")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.lengths.tolist() == [2 * rate]
    np.testing.assert_array_equal(store[np.array([0])][0], full[:2 * rate])
    assert peak < full.nbytes / 20, f"decoding 2 s allocated {peak / 1e6:.1f} MB of a {full.nbytes / 1e6:.0f} MB file"


def test_long_file_resampled_head_equals_full_resample(tmp_path: Path) -> None:
    """At another source rate the kept head reads a margin past the cut, so it equals resampling the whole file."""
    rate = 44100
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, rate * 30).astype(np.float32)
    soundfile.write(tmp_path / "long.wav", samples, rate, subtype="FLOAT")
    kept = 16000 * 2
    clip, length = ClipDecoder(16000, kept)(str(tmp_path / "long.wav"))
    whole = torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000).numpy()
    assert length == kept
    np.testing.assert_allclose(clip, whole[:kept], rtol=0, atol=1e-4)  # conv rounding differs with length
    assert not np.allclose(clip[-100:], 0)  # the end of the kept part is real audio, not the resampler's zero pad


def test_decode_error_messages_unchanged(tmp_path: Path) -> None:
    """The decoder still names the file for undecodable and empty input (the cache build reports these)."""
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + b"\x00" * 40)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "junk.wav")) + ".*cannot be decoded"):
        ClipDecoder(16000, 1600)(str(tmp_path / "junk.wav"))


def test_target_spelled_nan_is_refused_but_other_ids_named_nan_are_text(tmp_path: Path) -> None:
    """`nan` is pandas' text for a missing value: as a target it would be a class; as a speaker id it stays text."""
    source = write_manifest(tmp_path, label=["normal", "abnormal", "NaN", "normal"])
    assert "row 3 (line 4): target 'label' is empty or NaN ('NaN'" in error_text(source)
    source = write_manifest(tmp_path, score=["1", "2", "nan", "3"])
    assert "row 3 (line 4): target 'score' is empty or NaN" in error_text(source, target="score", regression=True)
    assert load_manifest(write_manifest(tmp_path, speaker=["nan", "s1", "s2", "s3"])).table["speaker"][0] == "nan"


def test_one_file_under_two_names_is_an_error(tmp_path: Path) -> None:
    """A symbolic link to a listed clip is the same clip: refused like a path listed twice."""
    source = write_manifest(tmp_path, rows=4, path=["clips/c0.flac", "clips/c1.flac", "clips/c2.flac",
                                                    "clips/link.flac"])
    (tmp_path / "clips" / "link.flac").symlink_to(tmp_path / "clips" / "c1.flac")
    text = error_text(source)
    assert "row 2 (line 3)" in text and "row 4 (line 5)" in text and "same file" in text


def test_clinical_age_as_regression_target(tmp_path: Path) -> None:
    source = write_manifest(tmp_path, age=["4;6", "5;3", "3", "6.5"])
    manifest = load_manifest(source, target="age", regression=True)
    assert manifest.table["age"].tolist() == pytest.approx([4.5, 5.25, 3.0, 6.5])
