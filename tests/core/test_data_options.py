"""Data options on the real toy clips: pre-split files, filter_words, hold-out without k-fold, shuffle=false (splits
and batch order), any target column, and evaluation untouched by SpecAugment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import Config
from core.data.batches import make_batch
from core.data.dataset import AudioData, SpeakerOverlapWarning, prepare_data
from core.data.samplers import SAMPLERS
from core.data.splits import make_splits
from core.errors import ConfigError, DataError
from core.evaluate import predict, score
from core.models import MODELS
from core.statistics import FoldStatistics
from core.train import train_fold

ConfigFactory = Callable[..., Config]


def toy_table(toy_dataset: Path) -> pd.DataFrame:
    """The toy manifest with absolute paths, so parts of it can be written anywhere."""
    table = pd.read_csv(toy_dataset)
    table["path"] = [str(toy_dataset.parent / p) for p in table["path"]]
    return table


def write_parts(folder: Path, table: pd.DataFrame, parts: dict[str, list[int]]) -> dict[str, str]:
    """{'train': [speaker numbers], ...} -> {'data.train_file': csv path, ...}."""
    files = {}
    for name, speakers in parts.items():
        path = folder / f"{name}.csv"
        table[table["speaker"].isin([f"spk{s:02d}" for s in speakers])].to_csv(path, index=False)
        files[f"data.{name}_file"] = str(path)
    return files


def paths_of(data: AudioData, rows: np.ndarray) -> set[str]:
    return set(data.manifest.table["path"].to_numpy()[rows])


def file_paths(file: str) -> set[str]:
    return set(pd.read_csv(file)["path"])


def speakers_of(data: AudioData, rows: np.ndarray) -> set[str]:
    assert data.speakers is not None
    return set(data.speakers[rows])


# --- pre-split files --------------------------------------------------------------------------------------------
def test_three_given_files_are_the_splits(toy_dataset: Path, toy_config_factory: ConfigFactory,
                                          tmp_path: Path) -> None:
    table = toy_table(toy_dataset)
    files = write_parts(tmp_path, table, {"train": [0, 1, 2, 3, 4], "valid": [6, 7, 8], "test": [9, 10, 11]})
    data = prepare_data(toy_config_factory(**files))  # data.manifest (the whole toy set) is replaced
    assert len(data.manifest) == 33  # speaker 5 is in no file
    assert list(data.manifest.table["path"]) == [p for k in ("train", "valid", "test")
                                                 for p in pd.read_csv(files[f"data.{k}_file"])["path"]]
    assert paths_of(data, data.splits.test) == file_paths(files["data.test_file"])
    assert len(data.splits.folds) == 1  # a given valid file is the one fold, whatever data.k_fold says
    fold = data.splits.folds[0]
    assert paths_of(data, fold.train) == file_paths(files["data.train_file"])
    assert paths_of(data, fold.valid) == file_paths(files["data.valid_file"])
    # The clips are the files' clips: waveforms of a row are the ones of the same path in the full toy set.
    full = prepare_data(toy_config_factory())
    where = {p: i for i, p in enumerate(full.manifest.table["path"])}
    rows = np.arange(len(data.manifest))
    np.testing.assert_array_equal(data.waveforms[rows], full.waveforms[[where[p] for p in data.manifest.table["path"]]])


def test_missing_valid_file_makes_folds_of_the_train_file(toy_dataset: Path, toy_config_factory: ConfigFactory,
                                                          tmp_path: Path) -> None:
    table = toy_table(toy_dataset)
    files = write_parts(tmp_path, table, {"train": list(range(9)), "test": [9, 10, 11]})
    data = prepare_data(toy_config_factory(**files, **{"data.k_fold": 3}))
    train_paths = file_paths(files["data.train_file"])
    assert paths_of(data, data.splits.test) == file_paths(files["data.test_file"])
    assert len(data.splits.folds) == 3
    valids = np.sort(np.concatenate([f.valid for f in data.splits.folds]))
    assert paths_of(data, valids) == train_paths and len(valids) == len(train_paths)  # each validated once
    for fold in data.splits.folds:
        assert not speakers_of(data, fold.train) & speakers_of(data, fold.valid)  # speaker-grouped
        assert paths_of(data, fold.train) | paths_of(data, fold.valid) == train_paths


@pytest.mark.parametrize("with_valid", [False, True])
def test_missing_test_file_splits_test_from_train(toy_dataset: Path, toy_config_factory: ConfigFactory,
                                                  tmp_path: Path, with_valid: bool) -> None:
    table = toy_table(toy_dataset)
    parts = {"train": list(range(9)), **({"valid": [9, 10, 11]} if with_valid else {})}
    files = write_parts(tmp_path, table, parts)
    data = prepare_data(toy_config_factory(**files, **{"data.k_fold": 1, "data.valid_size": 0.25,
                                                       "data.test_size": 0.25}))
    train_paths = file_paths(files["data.train_file"])
    test = data.splits.test
    assert paths_of(data, test) < train_paths and len(test) > 0
    fold = data.splits.folds[0]
    assert len(data.splits.folds) == 1
    assert not speakers_of(data, test) & (speakers_of(data, fold.train) | speakers_of(data, fold.valid))
    if with_valid:
        assert paths_of(data, fold.valid) == file_paths(files["data.valid_file"])
        assert paths_of(data, fold.train) == train_paths - paths_of(data, test)
    else:
        assert paths_of(data, fold.train) | paths_of(data, fold.valid) == train_paths - paths_of(data, test)


def test_presplit_errors_and_warnings(toy_dataset: Path, toy_config_factory: ConfigFactory, tmp_path: Path) -> None:
    table = toy_table(toy_dataset)
    files = write_parts(tmp_path, table, {"train": list(range(8)), "valid": [8, 9], "test": [10, 11]})
    with pytest.raises(ConfigError, match=r"data.valid_file given without data.train_file"):
        prepare_data(toy_config_factory(**{"data.valid_file": files["data.valid_file"]}))
    # The same clip in train and test: a leak, refused, naming both.
    leaky = tmp_path / "leaky_test.csv"
    pd.concat([pd.read_csv(files["data.test_file"]), table.iloc[[0]]]).to_csv(leaky, index=False)
    with pytest.raises(DataError, match=r"data.test_file .*leaky_test.csv: clip .*s00_rabbit.* also in "
                                        r"data.train_file"):
        prepare_data(toy_config_factory(**{**files, "data.test_file": str(leaky)}))
    # Shared speakers (other clips): the user's own split, kept with a warning naming the files.
    shared = tmp_path / "shared_valid.csv"
    valid = pd.read_csv(files["data.valid_file"])
    valid.loc[0, "speaker"] = "spk00"
    valid.to_csv(shared, index=False)
    with pytest.warns(SpeakerOverlapWarning, match=r"data.train_file and data.valid_file share 1 speaker\(s\) "
                                                   r"\(spk00\)"):
        data = prepare_data(toy_config_factory(**{**files, "data.valid_file": str(shared)}))
    assert paths_of(data, data.splits.folds[0].valid) == set(valid["path"])
    # Optional columns must match, or concatenating would invent empty ages/words/speakers.
    no_age = tmp_path / "no_age.csv"
    pd.read_csv(files["data.test_file"]).drop(columns=["age"]).to_csv(no_age, index=False)
    with pytest.raises(DataError, match=r"no_age.csv: optional columns differ .*\['age'\]"):
        prepare_data(toy_config_factory(**{**files, "data.test_file": str(no_age)}))


# --- filter_words, hold-out, target -----------------------------------------------------------------------------
def test_filter_words_keeps_only_those_words(toy_dataset: Path, toy_config_factory: ConfigFactory,
                                             tmp_path: Path) -> None:
    data = prepare_data(toy_config_factory(**{"data.filter_words": "sun,cat"}))
    table = pd.read_csv(toy_dataset)
    assert len(data.manifest) == int(table["word"].isin(["sun", "cat"]).sum()) == 24
    assert set(data.manifest.table["word"]) == {"sun", "cat"} and data.words == ["cat", "sun"]
    every = np.sort(np.concatenate([data.splits.test, data.splits.folds[0].train, data.splits.folds[0].valid]))
    np.testing.assert_array_equal(every, np.arange(24))  # splits index the filtered rows only
    with pytest.raises(DataError, match=r"filter_words names words not in the manifest: \['dog'\]"):
        prepare_data(toy_config_factory(**{"data.filter_words": "sun,dog"}))
    # With pre-split files the filter applies to each; a file left empty is named.
    files = write_parts(tmp_path, toy_table(toy_dataset), {"train": list(range(9)), "test": [9, 10, 11]})
    data = prepare_data(toy_config_factory(**files, **{"data.filter_words": "rabbit"}))
    assert set(data.manifest.table["word"]) == {"rabbit"} and len(data.splits.test) == 3


def test_hold_out_without_k_fold(toy_config_factory: ConfigFactory) -> None:
    """k_fold=1: one fold whose valid share of the development rows is about valid_size, speaker-grouped."""
    data = prepare_data(toy_config_factory(**{"data.k_fold": 1, "data.valid_size": 0.25, "data.test_size": 0.25}))
    assert len(data.splits.folds) == 1
    fold = data.splits.folds[0]
    development = data.splits.development
    np.testing.assert_array_equal(np.sort(np.concatenate([fold.train, fold.valid])), development)
    assert not speakers_of(data, fold.train) & speakers_of(data, fold.valid)
    speakers = len(speakers_of(data, development))
    assert abs(len(fold.valid) / len(development) - 0.25) <= 1 / speakers + 1e-9  # within one speaker's clips
    # With many speakers the share gets close; grouping still holds.
    groups = np.repeat([f"s{i:02d}" for i in range(80)], 4)
    labels = np.where(np.arange(len(groups)) % 3 == 0, "abnormal", "normal")
    splits = make_splits(labels, groups, k_fold=1, test_size=0.2, valid_size=0.25, seed=4)
    (only,) = splits.folds
    assert abs(len(only.valid) / len(splits.development) - 0.25) <= 0.02
    assert not set(groups[only.valid]) & set(groups[only.train])


def test_any_target_column(toy_dataset: Path, toy_config_factory: ConfigFactory, tmp_path: Path) -> None:
    table = toy_table(toy_dataset)
    table["rating"] = table["word"].map({"rabbit": "hard", "sun": "easy", "cat": "medium"})
    manifest = tmp_path / "rated.csv"
    table.to_csv(manifest, index=False)
    config = toy_config_factory(**{"data.manifest": str(manifest), "data.target": "rating", "train.epochs": 1})
    data = prepare_data(config)
    assert data.classes == ["easy", "hard", "medium"] and data.num_outputs == 3
    np.testing.assert_array_equal(np.asarray(data.classes)[data.targets], table["rating"].to_numpy())
    (result,) = train_fold(config, data, data.splits.folds[0])
    outputs = predict(result.model, result.featurizer, data, data.splits.test, torch.device("cpu"), 64)
    assert outputs.shape == (len(data.splits.test), 3)
    with pytest.raises(DataError, match=r"target column 'severity' not found"):
        prepare_data(toy_config_factory(**{"data.manifest": str(manifest), "data.target": "severity"}))


# --- shuffle=false ----------------------------------------------------------------------------------------------
def test_no_shuffle_splits_ignore_the_seed(toy_config_factory: ConfigFactory) -> None:
    def splits(seed: int, shuffle: bool) -> list[list[int]]:
        s = prepare_data(toy_config_factory(**{"data.seed": seed, "data.shuffle": shuffle})).splits
        return [s.test.tolist()] + [f.valid.tolist() for f in s.folds]

    assert splits(0, False) == splits(7, False)
    assert splits(0, True) != splits(7, True)
    # Without groups or strata the parts are consecutive blocks of rows.
    plain = make_splits(np.arange(20.0), None, k_fold=2, test_size=0.25, valid_size=0.2, seed=3, shuffle=False,
                        stratify=False)
    assert plain.test.tolist() == [0, 1, 2, 3, 4]
    assert plain.folds[0].valid.tolist() == list(range(5, 13)) and plain.folds[1].valid.tolist() == list(range(13, 20))


def test_no_shuffle_keeps_training_batches_in_row_order(toy_config_factory: ConfigFactory) -> None:
    ordered = prepare_data(toy_config_factory(**{"data.shuffle": False}))
    shuffled = prepare_data(toy_config_factory())
    rows = ordered.splits.folds[0].train
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    batches = list(SAMPLERS.get("random")(ordered, rows, 4, rng))
    assert [b.tolist() for b in batches] == [rows[i:i + 4].tolist() for i in range(0, len(rows), 4)]
    assert rng.bit_generator.state == before  # no permutation was drawn
    mixed = np.concatenate(list(SAMPLERS.get("random")(shuffled, rows, 4, rng)))
    assert sorted(mixed.tolist()) == rows.tolist() and mixed.tolist() != rows.tolist()


def test_no_shuffle_training_draws_no_batch_order(toy_config_factory: ConfigFactory) -> None:
    """The fold's own numpy stream drives the batch order; with shuffle=false two epochs leave it untouched."""
    for shuffle in (False, True):
        config = toy_config_factory(**{"data.shuffle": shuffle, "train.epochs": 2})
        data = prepare_data(config)
        first, second = train_fold(config, data, data.splits.folds[0])
        assert (first.state["random"]["numpy"] == second.state["random"]["numpy"]) is not shuffle


# --- SpecAugment ------------------------------------------------------------------------------------------------
def test_evaluation_is_never_augmented(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    heavy = {"augment.time_mask": 60, "augment.time_masks": 4, "augment.freq_mask": 40, "augment.freq_masks": 4}
    config = toy_config_factory(**heavy, **{"train.epochs": 1, "train.select": "last"})
    fold = toy_data.splits.folds[0]
    (result,) = train_fold(config, toy_data, fold)
    cpu = torch.device("cpu")
    first = predict(result.model, result.featurizer, toy_data, fold.valid, cpu, 5)
    second = predict(result.model, result.featurizer, toy_data, fold.valid, cpu, 64)
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)  # the batch size may move the last bit (GEMM)
    assert score(toy_data, fold.valid, second) == result.metrics  # training's own validation saw the same
    # The same weights behind a featurizer without SpecAugment give the very same outputs...
    stats = FoldStatistics.from_data(toy_data, fold.train)
    plain = MODELS.get(config.model.name).featurizer(toy_config_factory(), stats)
    np.testing.assert_array_equal(predict(result.model, plain, toy_data, fold.valid, cpu, 64), second)
    # ...while in training mode the heavy masks really do change the features.
    batch = make_batch(toy_data, fold.valid[:4], cpu)
    result.featurizer.train()
    with torch.no_grad():
        assert not torch.equal(result.featurizer(batch), plain(batch))
