"""`AudioData`: everything `train_fold` needs about the clips, prepared once per process from a `Config`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import Config
from core.data.cache import WaveformStore, open_cache
from core.data.manifest import Manifest, load_manifest
from core.data.splits import Splits, make_splits
from core.errors import DataError


@dataclass
class AudioData:
    """Clips (memory-mapped), encoded targets and covariates, and the splits; rows follow the manifest."""

    manifest: Manifest
    waveforms: WaveformStore
    targets: np.ndarray  # int64 class ids, or float32 values for regression
    classes: list[str]  # class names by id; empty for regression
    word_ids: np.ndarray  # int64 codes into `words`
    words: list[str]
    ages: np.ndarray  # float32; NaN when the manifest has no age column
    speakers: np.ndarray | None
    splits: Splits

    @property
    def regression(self) -> bool:
        return not self.classes

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.classes else 1


def _filter_words(manifest: Manifest, words: list[str]) -> Manifest:
    if not words:
        return manifest
    if "word" not in manifest.table.columns:
        raise DataError(f"{manifest.source}: data.filter_words is set but the manifest has no 'word' column")
    table = manifest.table[manifest.table["word"].astype(str).isin(words)].reset_index(drop=True)
    missing = sorted(set(words) - set(table["word"].astype(str)))
    if missing:
        raise DataError(f"{manifest.source}: data.filter_words names words not in the manifest: {missing}")
    return Manifest(source=manifest.source, table=table, target=manifest.target)


def encode_targets(values: pd.Series, regression: bool) -> tuple[np.ndarray, list[str]]:
    """Class ids in sorted order of the class names (stable across runs), or float values."""
    if regression:
        return pd.to_numeric(values).to_numpy(np.float32), []
    names = values.astype(str)
    classes = sorted(names.unique())
    lookup = {name: i for i, name in enumerate(classes)}
    return names.map(lookup).to_numpy(np.int64), classes


def load_validated_manifest(config: Config) -> Manifest:
    """The manifest named by the config, validated (no audio decoded yet)."""
    d = config.data
    if not d.manifest:
        raise DataError("no manifest given: pass --data PATH (or set data.manifest)")
    manifest = load_manifest(d.manifest, d.target, d.audio_root or None,
                             regression=config.model.head == "regressor")
    return _filter_words(manifest, d.filter_words)


def prepare_data(config: Config, progress: Callable[[str], None] | None = None) -> AudioData:
    """Validate the manifest, open (or build) the decode cache and make the splits."""
    d = config.data
    manifest = load_validated_manifest(config)
    table = manifest.table
    waveforms = open_cache(manifest.paths, d.sample_rate, d.max_seconds, d.cache_dir or None, progress)
    targets, classes = encode_targets(table[d.target], regression=config.model.head == "regressor")
    word_column = table["word"].astype(str) if "word" in table.columns else pd.Series([""] * len(table))
    words = sorted(word_column.unique())
    word_ids = word_column.map({w: i for i, w in enumerate(words)}).to_numpy(np.int64)
    ages = (pd.to_numeric(table["age"], errors="coerce").to_numpy(np.float32) if "age" in table.columns
            else np.full(len(table), np.nan, np.float32))
    speakers = table["speaker"].astype(str).to_numpy() if "speaker" in table.columns else None
    try:
        labels = np.asarray(classes)[targets] if classes else targets
        splits = make_splits(labels, speakers, k_fold=d.k_fold, test_size=d.test_size,
                             valid_size=d.valid_size, seed=d.seed, shuffle=d.shuffle, stratify=bool(classes))
    except DataError as error:
        raise DataError(f"{manifest.source}: {error}") from error
    return AudioData(manifest=manifest, waveforms=waveforms, targets=targets, classes=classes,
                     word_ids=word_ids, words=words, ages=ages, speakers=speakers, splits=splits)
