"""A trial starts from the data its search's driver checked (core/data/dataset.py `CheckedData`): the validated
manifest, the splits and the decode cache's path come with it, so its start looks at no clip (no stat, no open).

The clips' folder is renamed after the driver's check: any per-clip I/O left in a trial's start then fails. A node
where the driver's cache file is absent (a cluster's other machine) finds its own cache from the checked manifest.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from support.toy_audio import make_toy_config, write_toy_dataset

from core.data.dataset import AudioData, CheckedData, prepare_data
from tune.engine.folds import trial_data


@pytest.fixture
def checked(tmp_path: Path) -> tuple[Path, AudioData, CheckedData]:
    """(manifest, the driver's data, what the driver hands to trials, as Ray pickles it)."""
    manifest = write_toy_dataset(tmp_path / "toy", speakers=6)
    config = make_toy_config(manifest, tmp_path / "cache")
    data = prepare_data(config)  # the driver's checks: every clip opened, the cache built
    return manifest, data, pickle.loads(pickle.dumps(CheckedData.of(config, data)))


def assert_same_data(got: AudioData, want: AudioData) -> None:
    assert got.manifest.paths == want.manifest.paths
    np.testing.assert_array_equal(got.targets, want.targets)
    np.testing.assert_array_equal(got.splits.test, want.splits.test)
    for mine, theirs in zip(got.splits.folds, want.splits.folds, strict=True):
        np.testing.assert_array_equal(mine.train, theirs.train)
        np.testing.assert_array_equal(mine.valid, theirs.valid)
    rows = np.arange(len(want.targets))
    np.testing.assert_array_equal(got.waveforms[rows], want.waveforms[rows])


def test_a_trial_starts_without_touching_a_clip(checked: tuple[Path, AudioData, CheckedData],
                                                tmp_path: Path) -> None:
    manifest, data, handed = checked
    config = make_toy_config(manifest, tmp_path / "cache")
    (manifest.parent / "audio").rename(manifest.parent / "gone")  # every clip path now fails to stat or open
    started = trial_data(config, handed)
    assert started.waveforms.path == data.waveforms.path  # the driver's cache, mapped as it is
    assert_same_data(started, data)


def test_without_the_drivers_data_a_trial_still_stats_every_clip(checked: tuple[Path, AudioData, CheckedData],
                                                                 tmp_path: Path) -> None:
    """What `checked` saves: the cache key is every clip's size and mtime, so with the clips gone it fails."""
    manifest, _, _ = checked
    config = make_toy_config(manifest, tmp_path / "cache")
    (manifest.parent / "audio").rename(manifest.parent / "gone")
    with pytest.raises(FileNotFoundError, match="audio"):
        trial_data(config)


def test_a_node_without_the_drivers_cache_file_finds_its_own(checked: tuple[Path, AudioData, CheckedData],
                                                             tmp_path: Path) -> None:
    manifest, data, handed = checked
    elsewhere = tmp_path / "other-node-cache"
    config = make_toy_config(manifest, elsewhere)
    moved = CheckedData(data_config=config.data, cache_file=str(tmp_path / "not-here.arrow"), data=handed.data)
    started = trial_data(config, moved)  # builds this "node's" cache from the checked manifest's clips
    assert started.waveforms.path.parent == elsewhere
    assert_same_data(started, data)


def test_a_cache_file_of_other_clips_is_not_taken(checked: tuple[Path, AudioData, CheckedData],
                                                  tmp_path: Path) -> None:
    """A file at the given path whose rows are not these clips' (another set's cache): looked up again instead."""
    manifest, data, handed = checked
    other = write_toy_dataset(tmp_path / "other", speakers=4)
    other_data = prepare_data(make_toy_config(other, tmp_path / "other-cache"))
    config = make_toy_config(manifest, tmp_path / "cache")
    wrong = CheckedData(data_config=handed.data_config, cache_file=str(other_data.waveforms.path), data=handed.data)
    assert_same_data(trial_data(config, wrong), data)


def test_a_trial_with_other_data_settings_prepares_its_own(checked: tuple[Path, AudioData, CheckedData],
                                                           tmp_path: Path) -> None:
    manifest, data, handed = checked
    config = make_toy_config(manifest, tmp_path / "cache", **{"data.max_seconds": 0.5})
    started = trial_data(config, handed)
    assert started.waveforms.num_samples == 8000 != data.waveforms.num_samples
    assert started.manifest.paths == data.manifest.paths
