"""The split a search records (splits.json) is the one final training, resume and core.train use: clips by path,
so a re-sorted or moved manifest keeps its test set, and an edited one is refused (saying what changed) unless
--allow-changed-data, which never lets a development clip into the test set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from support.toy_audio import make_toy_config

from core.data.dataset import prepare_data
from core.data.recorded import record
from core.errors import DataError
from tune.final import main as tune_final


def rows_of(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def recorded(toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    """splits.json of the toy set as tune.run writes it."""
    config = make_toy_config(toy_dataset, toy_cache_dir)
    data = prepare_data(config)
    document = record(data.manifest, config.data.audio_root, data.splits)
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(document))
    return path, document


def names(data, rows: np.ndarray) -> set[str]:
    return {Path(data.manifest.paths[row]).name for row in rows}


def test_a_record_names_clips_by_path_and_reapplies_exactly(recorded: tuple[Path, dict], toy_dataset: Path,
                                                            toy_cache_dir: Path) -> None:
    path, document = recorded
    assert all(key.startswith("audio/") for key in document["test"])  # relative to the audio root
    drawn = prepare_data(make_toy_config(toy_dataset, toy_cache_dir))
    again = prepare_data(make_toy_config(toy_dataset, toy_cache_dir, **{"data.splits_file": str(path),
                                                                         "data.seed": 7}))
    assert np.array_equal(again.splits.test, drawn.splits.test)  # the record wins over data.seed
    for a, b in zip(again.splits.folds, drawn.splits.folds, strict=True):
        assert np.array_equal(a.train, b.train) and np.array_equal(a.valid, b.valid)


def test_a_resorted_manifest_keeps_its_test_clips(recorded: tuple[Path, dict], toy_dataset: Path,
                                                  toy_cache_dir: Path) -> None:
    path, _ = recorded
    rows = rows_of(toy_dataset)
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    manifest = write_rows(toy_dataset.parent / "shuffled.csv", shuffled)
    drawn = prepare_data(make_toy_config(toy_dataset, toy_cache_dir))
    reused = prepare_data(make_toy_config(manifest, toy_cache_dir, **{"data.splits_file": str(path)}))
    assert names(reused, reused.splits.test) == names(drawn, drawn.splits.test)
    assert names(reused, reused.splits.folds[1].valid) == names(drawn, drawn.splits.folds[1].valid)


def test_an_edited_manifest_is_refused_saying_what_changed(recorded: tuple[Path, dict], toy_dataset: Path,
                                                           toy_cache_dir: Path) -> None:
    path, document = recorded
    rows = rows_of(toy_dataset)
    gone = rows[0]["speaker"]
    fewer = write_rows(toy_dataset.parent / "fewer.csv", [r for r in rows if r["speaker"] != gone])
    config = make_toy_config(fewer, toy_cache_dir, **{"data.splits_file": str(path)})
    with pytest.raises(DataError, match=r"changed since the search recorded its split .*: 3 clip\(s\) removed "
                                        r"\(e\.g\. audio/s00_.*--allow-changed-data"):
        prepare_data(config)
    kept = prepare_data(config, allow_changed_data=True)
    recorded_test = {Path(key).name for key in document["test"]}
    assert names(kept, kept.splits.test) <= recorded_test  # never a development clip in the test set
    assert not any(name.startswith("s00_") for name in names(kept, kept.splits.development))

    relabelled = [dict(r) for r in rows]
    relabelled[5]["label"] = "normal" if relabelled[5]["label"] == "abnormal" else "abnormal"
    edited = write_rows(toy_dataset.parent / "relabelled.csv", relabelled)
    with pytest.raises(DataError, match=r"1 clip\(s\) with changed label, speaker, word or age \(e\.g\. "
                                        + rows[5]["path"]):
        prepare_data(make_toy_config(edited, toy_cache_dir, **{"data.splits_file": str(path)}))


def test_clips_the_record_does_not_know_are_left_out(recorded: tuple[Path, dict], toy_dataset: Path,
                                                     toy_cache_dir: Path) -> None:
    path, document = recorded
    rows = rows_of(toy_dataset)
    document = dict(document, clips=[c for c in document["clips"] if c[0] != rows[0]["path"]],
                    test=[k for k in document["test"] if k != rows[0]["path"]],
                    folds=[{k: ([x for x in v if x != rows[0]["path"]] if isinstance(v, list) else v)
                            for k, v in f.items()} for f in document["folds"]])
    path.write_text(json.dumps(document))
    config = make_toy_config(toy_dataset, toy_cache_dir, **{"data.splits_file": str(path)})
    with pytest.warns(UserWarning, match="1 clip"):
        data = prepare_data(config, allow_changed_data=True)
    assert 0 not in data.splits.test and 0 not in data.splits.development


def test_tune_final_refuses_an_edited_manifest_before_training(recorded: tuple[Path, dict], toy_dataset: Path,
                                                                toy_cache_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = recorded
    rows = rows_of(toy_dataset)
    fewer = write_rows(toy_dataset.parent / "fewer-final.csv", [r for r in rows if r["speaker"] != "spk03"])
    config = tmp_path / "best_config.json"
    settings = make_toy_config(fewer, toy_cache_dir, **{"data.splits_file": str(path), "train.epochs": 1})
    config.write_text(json.dumps({"config": settings.to_dict()}))
    assert tune_final(["--config", str(config), "--out", str(tmp_path / "final")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "3 clip(s) removed" in err and "--allow-changed-data" in err
    assert not (tmp_path / "final").exists()

    (tmp_path / "moved").mkdir()  # a run folder moved: the splits.json beside the config is used
    (tmp_path / "moved" / "splits.json").write_text(path.read_text())
    path.unlink()
    (tmp_path / "moved" / "best_config.json").write_text(config.read_text())
    assert tune_final(["--config", str(tmp_path / "moved" / "best_config.json"), "--out", str(tmp_path / "final"),
                       "--allow-changed-data"]) == 0
    report = json.loads((tmp_path / "final" / "report.json").read_text())
    recorded_test = {key for key in json.loads((tmp_path / "moved" / "splits.json").read_text())["test"]}
    assert report["test_clips"] == len([k for k in recorded_test if not Path(k).name.startswith("s03_")])
