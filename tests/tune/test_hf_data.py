"""`--data` from a Hugging Face `save_to_disk` folder (clips as bytes or paths) and from an `audiofolder` layout, and
`--path/--speaker/--word/--age-column` for any manifest: the same clips, targets, covariates, waveforms and splits as
the equivalent CSV manifest of the toy set, through the same decode-once cache and the recorded split."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.hf_layouts import toy_table, write_audiofolder, write_saved_dataset
from support.toy_audio import make_toy_config

from core.config import load_config_file
from core.data.dataset import AudioData, prepare_data
from core.data.recorded import clip_keys, record
from core.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def same_data(a: AudioData, b: AudioData) -> None:
    rows = np.arange(len(a.targets))
    assert len(b.targets) == len(a.targets) == 36
    assert a.classes == b.classes == ["abnormal", "normal"] and np.array_equal(a.targets, b.targets)
    assert list(a.speakers) == list(b.speakers) and a.words == b.words and np.array_equal(a.word_ids, b.word_ids)
    assert np.array_equal(a.ages, b.ages) and not np.isnan(a.ages).any()
    assert np.array_equal(a.waveforms[rows], b.waveforms[rows])  # the same decoder, bit for bit
    assert np.array_equal(a.waveforms.lengths, b.waveforms.lengths)
    assert np.array_equal(a.splits.test, b.splits.test)
    for fa, fb in zip(a.splits.folds, b.splits.folds, strict=True):
        assert np.array_equal(fa.train, fb.train) and np.array_equal(fa.valid, fb.valid)


@pytest.fixture(scope="module")
def saved_dataset(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_saved_dataset(toy_dataset, tmp_path_factory.mktemp("hf") / "toy")


def test_audiofolder_reads_as_the_csv_manifest(toy_dataset: Path, toy_data: AudioData, toy_cache_dir: Path,
                                               tmp_path: Path) -> None:
    folder = write_audiofolder(toy_dataset, tmp_path / "af", speaker_column="child")
    data = prepare_data(make_toy_config(folder, toy_cache_dir, **{"data.speaker_column": "child"}))
    same_data(toy_data, data)
    assert data.manifest.source == folder / "metadata.csv"
    assert data.manifest.paths[0] == str(folder / "audio" / "s00_rabbit.flac")


def test_saved_dataset_clips_as_bytes_decode_into_the_cache(toy_data: AudioData, saved_dataset: Path,
                                                            tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    messages: list[str] = []
    data = prepare_data(make_toy_config(saved_dataset, cache), progress=messages.append)
    same_data(toy_data, data)
    # Clips are keyed by the stored file name (not a file on disk); one cache file, built once, then reused.
    assert data.manifest.paths[:2] == ["s00_rabbit.flac", "s00_sun.flac"] and data.manifest.embedded is not None
    assert [p.name for p in cache.glob("*.arrow")] == [data.waveforms.path.name]
    assert messages[-1].startswith("decode cache: wrote")
    again: list[str] = []
    assert prepare_data(make_toy_config(saved_dataset, cache), progress=again.append).waveforms.path == \
        data.waveforms.path
    assert again == [f"decode cache: reusing {data.waveforms.path} (36 clips)"]


def test_filter_words_on_a_saved_dataset_keeps_the_matching_bytes(toy_data: AudioData, saved_dataset: Path,
                                                                  toy_cache_dir: Path) -> None:
    data = prepare_data(make_toy_config(saved_dataset, toy_cache_dir, **{"data.filter_words": ["sun"]}))
    sun = np.flatnonzero(np.asarray(toy_data.words)[toy_data.word_ids] == "sun")
    assert len(data.targets) == len(sun) == 12
    assert data.manifest.paths == [f"s{s:02d}_sun.flac" for s in range(12)]
    assert np.array_equal(data.waveforms[np.arange(12)], toy_data.waveforms[sun])


def test_unnamed_byte_clips_keep_their_recorded_split_when_the_dataset_is_reordered(
        toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> None:
    """Without file names the key is the content hash: a re-sorted dataset still finds every recorded clip, so
    core.train / tune.final (data.splits_file) score on the search's own test set."""
    first = write_saved_dataset(toy_dataset, tmp_path / "a", named=False)
    data = prepare_data(make_toy_config(first, toy_cache_dir))
    assert all(key.startswith("sha-") and len(key) == 20 for key in data.manifest.paths)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps(record(data.manifest, "", data.splits)))
    order = list(range(36))
    random.Random(3).shuffle(order)
    reordered = write_saved_dataset(toy_dataset, tmp_path / "b", named=False, order=order)
    again = prepare_data(make_toy_config(reordered, toy_cache_dir, **{"data.splits_file": str(splits)}))
    test_keys = sorted(np.asarray(again.manifest.paths)[again.splits.test])
    assert test_keys == sorted(json.loads(splits.read_text())["test"]) == \
        sorted(np.asarray(data.manifest.paths)[data.splits.test])
    # The same clips in the held-out set: their waveforms, in key order, are the first dataset's.
    by_key = {key: row for row, key in enumerate(data.manifest.paths)}
    for row in again.splits.test:
        assert np.array_equal(again.waveforms[[row]], data.waveforms[[by_key[again.manifest.paths[row]]]])


def test_saved_dataset_of_paths_and_column_mapping_on_a_csv(toy_dataset: Path, toy_data: AudioData,
                                                            toy_cache_dir: Path, tmp_path: Path) -> None:
    """An audio column holding paths (datasets' Audio with bytes None) reads the files; and a CSV whose columns
    have other names reads as the toy manifest once they are mapped."""
    import pyarrow as pa
    from datasets import Dataset

    table = toy_table(toy_dataset)
    audio = pa.array([{"bytes": None, "path": str(toy_dataset.parent / p)} for p in table["path"]],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    Dataset(pa.table({"audio": audio, "label": table["label"], "spk": table["speaker"], "word": table["word"],
                      "age": table["age"].astype(float)})).save_to_disk(str(tmp_path / "paths"))
    data = prepare_data(make_toy_config(tmp_path / "paths", toy_cache_dir, **{"data.speaker_column": "spk"}))
    same_data(toy_data, data)
    assert data.waveforms.path == toy_data.waveforms.path  # the files' own cache entry: nothing decoded again
    renamed = table.rename(columns={"path": "clip", "speaker": "child", "word": "target_word", "age": "months"})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    (tmp_path / "audio").symlink_to(toy_dataset.parent / "audio")
    config = make_toy_config(tmp_path / "renamed.csv", toy_cache_dir, **{
        "data.path_column": "clip", "data.speaker_column": "child", "data.word_column": "target_word",
        "data.age_column": "months"})
    same_data(toy_data, prepare_data(config))


def error(config_path: Path, cache: Path, **overrides: object) -> str:
    with pytest.raises(DataError) as raised:
        prepare_data(make_toy_config(config_path, cache, **overrides))
    return str(raised.value)


def test_mapping_a_missing_column_names_the_flag_and_the_columns(toy_dataset: Path, saved_dataset: Path,
                                                                 toy_cache_dir: Path, tmp_path: Path) -> None:
    assert error(toy_dataset, toy_cache_dir, **{"data.speaker_column": "child"}) == (
        f"{toy_dataset}: --speaker-column / data.speaker_column 'child': no such column "
        "(columns: path, label, age, word, speaker)")
    assert error(toy_dataset, toy_cache_dir, **{"data.path_column": "file"}) == (
        f"{toy_dataset}: --path-column / data.path_column 'file': no such column "
        "(columns: path, label, age, word, speaker)")
    assert error(saved_dataset, toy_cache_dir, **{"data.age_column": "years"}) == (
        f"{saved_dataset}: --age-column / data.age_column 'years': no such column "
        "(columns: label, speaker, word, age, path)")
    assert error(saved_dataset, toy_cache_dir, **{"data.path_column": "wave"}) == (
        f"{saved_dataset}: --path-column / data.path_column 'wave': no such column "
        "(columns: audio, label, speaker, word, age)")
    folder = tmp_path / "af"
    folder.mkdir()
    toy_table(toy_dataset).to_csv(folder / "metadata.csv", index=False)  # `path`, not file_name
    assert "missing required column 'file_name'" in error(folder, toy_cache_dir)
    bad = toy_table(toy_dataset).rename(columns={"age": "years"})
    bad.loc[4, "years"] = "four"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "audio").symlink_to(toy_dataset.parent / "audio")
    assert "row 5 (line 6): column 'years' (as age)='four' is not a number" in \
        error(tmp_path / "bad.csv", toy_cache_dir, **{"data.age_column": "years"})


def test_unreadable_byte_clip_and_dataset_dict_are_one_line_errors(toy_dataset: Path, toy_cache_dir: Path,
                                                                   tmp_path: Path) -> None:
    from datasets import Audio, Dataset, DatasetDict

    table = toy_table(toy_dataset)
    blobs = [(toy_dataset.parent / p).read_bytes() for p in table["path"]]
    blobs[2] = b"not audio at all"
    dataset = Dataset.from_dict({"audio": [{"bytes": b, "path": f"c{i}.flac"} for i, b in enumerate(blobs)],
                                 "label": table["label"].tolist()}).cast_column("audio", Audio())
    dataset.save_to_disk(str(tmp_path / "broken"))
    message = error(tmp_path / "broken", toy_cache_dir)
    assert message.startswith(f"{tmp_path / 'broken'}: row 3 (line 4): audio c2.flac is unreadable")
    DatasetDict({"train": dataset, "test": dataset}).save_to_disk(str(tmp_path / "dict"))
    assert error(tmp_path / "dict", toy_cache_dir).startswith(
        f"{tmp_path / 'dict'} is a Hugging Face DatasetDict with splits train, test; give one split (--data "
        f"{tmp_path / 'dict' / 'train'})")


def test_without_the_datasets_package_the_cli_names_the_extra(saved_dataset: Path, tmp_path: Path) -> None:
    """`datasets` is the optional `hf` extra: without it (an import that fails, as on a bare install) tune.run says
    what to install, in one line, exit 2."""
    program = ("import sys; sys.modules['datasets'] = None; from tune.run import main; "
               f"sys.exit(main(['--space', 'whisper_balancing', '--demo', '--data', {str(saved_dataset)!r}, "
               f"'--storage', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: {saved_dataset} is a Hugging Face dataset (save_to_disk); reading it needs the datasets package: "
        "pip install 'audiotune[hf]'"]


def search(layout: Path, storage: Path, cache: Path, ray_address: str, ray_env: dict[str, str],
           *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tune.run", "--space", "whisper_balancing", "--demo", "--data", str(layout),
         *options, "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={cache}",
         "--set", "train.batch_size=8", "--set", "train.device=cpu", "--num-samples", "1", "--epochs", "1",
         "--grace-period", "1", "--storage", str(storage), "--name", "hf", "--address", ray_address],
        capture_output=True, text=True, env=ray_env, cwd=REPO, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["audiofolder", "save_to_disk"])
def test_a_one_trial_demo_search_on_each_layout(layout: str, toy_dataset: Path, ray_address: str,
                                                ray_env: dict[str, str], tmp_path: Path) -> None:
    if layout == "audiofolder":
        folder = write_audiofolder(toy_dataset, tmp_path / "af", speaker_column="child")
        options: tuple[str, ...] = ("--speaker-column", "child")
    else:
        folder, options = write_saved_dataset(toy_dataset, tmp_path / "hf", named=False), ()
    done = search(folder, tmp_path / "runs", tmp_path / "cache", ray_address, ray_env, *options)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "data: 36 clips, 12 speakers, 3 words" in done.stdout
    run = tmp_path / "runs" / "hf"
    board = pd.read_csv(run / "leaderboard.csv", dtype={"trial_id": str})
    assert len(board) == 1 and board.iloc[0]["status"] == "finished"
    # What core.train and tune.final load from the export is the search's split, by clip key.
    config = load_config_file(run / "best_config.json")
    data = prepare_data(config)
    recorded = json.loads((run / "splits.json").read_text())
    keys = np.asarray(clip_keys(data.manifest, config.data.audio_root))
    assert config.data.splits_file == str(run / "splits.json") and len(recorded["test"]) >= 6
    assert sorted(keys[data.splits.test]) == sorted(recorded["test"])
    for fold, (train, valid) in zip(data.splits.folds, [(f["train"], f["valid"]) for f in recorded["folds"]],
                                    strict=True):
        assert sorted(keys[fold.train]) == sorted(train) and sorted(keys[fold.valid]) == sorted(valid)
    assert all(key.startswith("sha-" if layout == "save_to_disk" else "audio/s") for key in recorded["test"])
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 1  # the driver's cache, reused by the trial


def test_a_class_label_of_minus_one_is_no_label_never_a_class(toy_dataset: Path, toy_cache_dir: Path,
                                                              tmp_path: Path) -> None:
    """-1 is ClassLabel's "no label": it was read as a third class '-1'. Now it is a missing label, which a search
    refuses naming the row (as an empty label in a CSV)."""
    from datasets import load_from_disk

    from core.data.sources import read_saved_dataset

    folder = write_saved_dataset(toy_dataset, tmp_path / "full")
    labels = load_from_disk(str(folder))["label"]
    unlabelled = load_from_disk(str(folder)).map(lambda row, i: {"label": -1 if i == 4 else labels[i]},
                                                 with_indices=True)
    unlabelled.save_to_disk(str(tmp_path / "minus-one"))
    table = read_saved_dataset(tmp_path / "minus-one").table
    assert pd.isna(table["label"].iloc[4]) and set(table["label"].dropna()) == {"abnormal", "normal"}
    config = make_toy_config(tmp_path / "minus-one", toy_cache_dir)
    with pytest.raises(DataError, match=r"minus-one: row 5 .*target 'label' is empty or NaN \(1 such row"):
        prepare_data(config)
