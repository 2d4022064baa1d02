"""`AudioData`: everything `train_fold` needs about the clips, prepared once per process from a `Config`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, DataConfig
from core.data.cache import WaveformStore, open_cache
from core.data.manifest import OPTIONAL_COLUMNS, Columns, Manifest, load_manifest, row_name
from core.data.recorded import apply_recorded, read_recorded
from core.data.sources import EmbeddedAudio
from core.data.splits import TEST, TRAIN, VALID, Splits, make_presplit, make_splits
from core.errors import ConfigError, DataError


class SpeakerOverlapWarning(UserWarning):
    """Pre-split files share speakers: the user's split, kept, but scores may be optimistic."""


class UnrecordedClipsWarning(UserWarning):
    """The manifest has clips the recorded split does not know: they are used nowhere."""


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
    shuffle: bool = True  # data.shuffle: False keeps training batches in row order too (see core/data/samplers.py)
    # Front-end key -> each clip's log-mel, shared by every fold given this object (core/log_mel_cache.py). Not an
    # __init__ argument: dataclasses.replace (other waveforms, say) starts with none.
    log_mels: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def regression(self) -> bool:
        return not self.classes

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.classes else 1


def _filter_words(manifest: Manifest, words: list[str]) -> Manifest:
    """Only the rows whose word is in `words` (all rows when empty); naming a word the manifest lacks is an error."""
    if not words:
        return manifest
    if "word" not in manifest.table.columns:
        raise DataError(f"{manifest.source}: data.filter_words is set but the manifest has no 'word' column")
    keep = manifest.table["word"].astype(str).isin(words).to_numpy()
    table = manifest.table[keep].reset_index(drop=True)
    missing = sorted(set(words) - set(table["word"].astype(str)))
    if missing:
        raise DataError(f"{manifest.source}: data.filter_words names words not in the manifest: {missing}")
    return manifest.subset(keep, table)


def encode_targets(values: pd.Series, regression: bool) -> tuple[np.ndarray, list[str]]:
    """Class ids in sorted order of the class names (stable across runs), or float values."""
    if regression:
        return pd.to_numeric(values).to_numpy(np.float32), []
    names = values.astype(str)
    classes = sorted(names.unique())
    lookup = {name: i for i, name in enumerate(classes)}
    return names.map(lookup).to_numpy(np.int64), classes


PRESPLIT_KEYS = {TRAIN: "data.train_file", VALID: "data.valid_file", TEST: "data.test_file"}


def manifest_columns(config: Config) -> Columns:
    d = config.data
    return Columns(path=d.path_column, speaker=d.speaker_column, word=d.word_column, age=d.age_column)


def presplit_files(config: Config) -> dict[int, str]:
    """{TRAIN/VALID/TEST: path} of the pre-split manifests the config names (empty: use `data.manifest`)."""
    d = config.data
    files = {part: file for part, file in ((TRAIN, d.train_file), (VALID, d.valid_file), (TEST, d.test_file)) if file}
    if files and TRAIN not in files:
        given = ", ".join(PRESPLIT_KEYS[part] for part in files)
        raise ConfigError(f"{given} given without data.train_file: pre-split data needs a training file")
    return files


def load_validated_manifest(config: Config) -> Manifest:
    """The manifest named by the config, validated (no audio decoded yet); pre-split files concatenated."""
    return _load(config)[0]


def _load(config: Config, check_audio: bool = True) -> tuple[Manifest, np.ndarray | None]:
    """The validated manifest and, for pre-split files, each row's origin (TRAIN/VALID/TEST)."""
    d = config.data
    regression = config.model.head == "regressor"
    files = presplit_files(config)
    if files:
        return _concatenate(files, config, check_audio)
    if not d.manifest:
        raise DataError("no manifest given: pass --data PATH (or set data.manifest, or data.train_file)")
    manifest = load_manifest(d.manifest, d.target, d.audio_root or None, regression=regression,
                             check_audio=check_audio, columns=manifest_columns(config))
    return _filter_words(manifest, d.filter_words), None


def _concatenate(files: dict[int, str], config: Config, check_audio: bool) -> tuple[Manifest, np.ndarray]:
    """One manifest of train, valid and test rows (in that order), each file validated on its own.

    The same clip in two files is a leak (it would be trained on and scored): DataError. Shared speakers are only
    warned about: the files are the user's own split (e.g. by recording session), which this respects.
    """
    d = config.data
    parts = {part: load_manifest(file, d.target, d.audio_root or None, regression=config.model.head == "regressor",
                                 check_audio=check_audio, columns=manifest_columns(config))
             for part, file in sorted(files.items())}
    train = parts[TRAIN]
    columns = {part: set(OPTIONAL_COLUMNS) & set(m.table.columns) for part, m in parts.items()}
    for part, manifest in parts.items():
        if columns[part] != columns[TRAIN]:
            raise DataError(f"{manifest.source}: optional columns differ from {PRESPLIT_KEYS[TRAIN]} {train.source} "
                            f"(in one but not the other: {sorted(columns[part] ^ columns[TRAIN])})")
    _check_disjoint(parts)
    table = pd.concat([m.table for m in parts.values()], ignore_index=True)
    origin = np.concatenate([np.full(len(m), part) for part, m in parts.items()])
    embedded = EmbeddedAudio.concatenate([(m.embedded, len(m)) for m in parts.values()])
    merged = _filter_words(Manifest(source=train.source, table=table, target=d.target, embedded=embedded),
                           d.filter_words)
    if d.filter_words:
        origin = origin[table["word"].astype(str).isin(d.filter_words).to_numpy()]
    for part, manifest in parts.items():
        if not np.any(origin == part):
            raise DataError(f"{PRESPLIT_KEYS[part]} {manifest.source}: no rows left after data.filter_words")
    return merged, origin


def _check_disjoint(parts: dict[int, Manifest]) -> None:
    """Refuse a clip that is in two of the files; warn about speakers that are."""
    seen: dict[str, int] = {}
    for part, manifest in parts.items():
        for path in manifest.paths:
            if seen.get(path, part) != part:
                raise DataError(f"{PRESPLIT_KEYS[part]} {manifest.source}: clip {path} is also in "
                                f"{PRESPLIT_KEYS[seen[path]]}; pre-split files must not share clips (it would be "
                                "trained on and scored)")
            seen[path] = part
    names = {part: set(m.table["speaker"].astype(str)) for part, m in parts.items() if "speaker" in m.table.columns}
    for a in names:
        for b in names:
            shared = sorted(names[a] & names[b]) if a < b else []
            if shared:
                warnings.warn(f"{PRESPLIT_KEYS[a]} and {PRESPLIT_KEYS[b]} share {len(shared)} speaker(s) "
                              f"({', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''}): scores on "
                              f"{PRESPLIT_KEYS[b]} may be optimistic", SpeakerOverlapWarning, stacklevel=2)


def draw_splits(config: Config, manifest: Manifest, targets: np.ndarray, classes: list[str],
                speakers: np.ndarray | None, origin: np.ndarray | None) -> Splits:
    d = config.data
    try:
        labels = np.asarray(classes)[targets] if classes else targets
        options = {"k_fold": d.k_fold, "test_size": d.test_size, "valid_size": d.valid_size, "seed": d.seed,
                   "shuffle": d.shuffle, "stratify": bool(classes)}
        return (make_splits(labels, speakers, **options) if origin is None else
                make_presplit(labels, speakers, origin, **options))
    except DataError as error:
        raise DataError(f"{manifest.source}: {error}") from error


def prepare_data(config: Config, progress: Callable[[str], None] | None = None,
                 check_audio: bool = True, allow_changed_data: bool = False) -> AudioData:
    """Validate the manifest, open (or build) the decode cache and make the splits (or, with `data.splits_file`,
    apply the recorded ones: see core/data/recorded.py; `allow_changed_data` accepts an edited manifest there).

    `check_audio=False` skips opening every file's header: for trials, whose driver already checked them all before
    Ray started (a file gone since then still fails, naming it, when this node builds its cache)."""
    d = config.data
    manifest, origin = _load(config, check_audio)
    recorded = None  # the recorded split is checked before the cache is built: a changed manifest fails fast
    if d.splits_file:
        recorded, unknown = apply_recorded(read_recorded(d.splits_file), manifest, d.audio_root, allow_changed_data)
        if unknown:
            warnings.warn(f"{manifest.source}: {unknown} clip(s) are not in {d.splits_file}; they are left out "
                          "(neither trained on nor tested)", UnrecordedClipsWarning, stacklevel=2)
    table = manifest.table
    waveforms = open_cache(manifest.paths, d.sample_rate, d.max_seconds, d.cache_dir or None, progress,
                           d.cache_dtype, d.cache_workers, manifest.embedded)
    targets, classes = encode_targets(table[d.target], regression=config.model.head == "regressor")
    word_column = table["word"].astype(str) if "word" in table.columns else pd.Series([""] * len(table))
    words = sorted(word_column.unique())
    word_ids = word_column.map({w: i for i, w in enumerate(words)}).to_numpy(np.int64)
    ages = (pd.to_numeric(table["age"], errors="coerce").to_numpy(np.float32) if "age" in table.columns
            else np.full(len(table), np.nan, np.float32))
    speakers = table["speaker"].astype(str).to_numpy() if "speaker" in table.columns else None
    splits = recorded or draw_splits(config, manifest, targets, classes, speakers, origin)
    return AudioData(manifest=manifest, waveforms=waveforms, targets=targets, classes=classes,
                     word_ids=word_ids, words=words, ages=ages, speakers=speakers, splits=splits, shuffle=d.shuffle)


@dataclass(frozen=True)
class CheckedData:
    """Prepared data as the process that checked it hands it on (a search's driver to its Ray trials): the validated
    manifest, encodings and splits, and the path of the decode cache it opened, without the memory map itself (small
    to pickle). `reopen` gives the `AudioData` back with no clip looked at again: no per-clip I/O at a trial's start."""

    data_config: DataConfig  # config.data it was prepared with: a config with other data settings prepares its own
    cache_file: str  # absolute path of the decode cache (core/data/cache.py) on the checking process's machine
    data: dict[str, Any]  # AudioData's fields but `waveforms`

    @classmethod
    def of(cls, config: Config, data: AudioData) -> CheckedData:
        kept = {item.name: getattr(data, item.name) for item in fields(data) if item.init and item.name != "waveforms"}
        return cls(data_config=config.data, cache_file=str(Path(data.waveforms.path).resolve()), data=kept)


def reopen(checked: CheckedData, config: Config, progress: Callable[[str], None] | None = None) -> AudioData:
    """`checked`'s data for a process with `config` (a trial's), mapping its decode cache where that file is here.

    On another machine (a node of a cluster, whose cache folder is its own) the cache is looked up, or built, from
    the checked manifest there (that stats each clip for the cache key, as `prepare_data` does). A config whose
    data settings differ from the checked ones (a space that searches `data.*`) gets `prepare_data`'s own data,
    without the audio checks the driver ran."""
    if config.data != checked.data_config:
        return prepare_data(config, progress, check_audio=False, allow_changed_data=True)
    manifest: Manifest = checked.data["manifest"]
    d = config.data
    waveforms = _mapped(Path(checked.cache_file), len(manifest), int(round(d.sample_rate * d.max_seconds)))
    if waveforms is None:
        waveforms = open_cache(manifest.paths, d.sample_rate, d.max_seconds, d.cache_dir or None, progress,
                               d.cache_dtype, d.cache_workers, manifest.embedded)
    return AudioData(waveforms=waveforms, **checked.data)


def _mapped(path: Path, clips: int, num_samples: int) -> WaveformStore | None:
    """The cache file at `path` if it exists here and holds `clips` rows of `num_samples` samples, else None."""
    if not path.is_file():
        return None
    store = WaveformStore(path)
    return store if len(store) == clips and store.num_samples == num_samples else None


def clips_for_inference(manifest: Manifest, classes: list[str], words: list[str], covariates: bool,
                        regression: bool, waveforms: Callable[[list[str]], WaveformStore]) -> AudioData:
    """Clips in a trained model's terms, every row a test row (no folds): labels, where the manifest has its
    target column, as ids of the model's `classes` (zeros, or NaN for a regressor, where it has none); words as ids
    of the model's word table `words`, unknown words appended after it (the report still groups by them); ages as
    given. With `covariates` (age/word conditioning) the model reads ages and word ids, so a missing `age` or
    `word` column, or a word the model never saw, is a DataError naming the column or row. Everything is checked
    before `waveforms(paths)` decodes the clips."""

    table, source = manifest.table, manifest.source
    trained_with_words = words != [""]  # a model trained without a word column has the one word ""
    if covariates:
        if "age" not in table.columns:
            raise DataError(f"{source}: no 'age' column, but the model is conditioned on the child's age "
                            "(features.conditioning); add each clip's age")
        if trained_with_words and "word" not in table.columns:
            raise DataError(f"{source}: no 'word' column, but the model is conditioned on the target word "
                            f"(features.conditioning); add each clip's word (one of: {', '.join(words)})")
    names = table["word"].astype(str) if "word" in table.columns else pd.Series([""] * len(table))
    unseen = sorted(set(names) - set(words))
    if unseen and covariates:
        row = int(np.flatnonzero(names.to_numpy() == unseen[0])[0])
        raise DataError(f"{source}: row {row_name(row)}: word {unseen[0]!r} is not one the model was trained on, and "
                        f"it is conditioned on the word (features.conditioning), so it cannot score it; known "
                        f"words: {', '.join(words) if trained_with_words else 'none (trained without words)'}")
    table_words = list(words) + unseen
    word_ids = names.map({w: i for i, w in enumerate(table_words)}).to_numpy(np.int64)
    target = manifest.target
    if target not in table.columns:
        targets = np.full(len(table), np.nan, np.float32) if regression else np.zeros(len(table), np.int64)
    elif regression:
        targets = pd.to_numeric(table[target]).to_numpy(np.float32)
    else:
        labels = table[target].astype(str)
        strange = sorted(set(labels) - set(classes))
        if strange:
            row = int(np.flatnonzero(labels.to_numpy() == strange[0])[0])
            raise DataError(f"{source}: row {row_name(row)}: {target!r}={strange[0]!r} is not a class of the model "
                            f"({', '.join(classes)})")
        targets = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    ages = (pd.to_numeric(table["age"], errors="coerce").to_numpy(np.float32) if "age" in table.columns
            else np.full(len(table), np.nan, np.float32))
    speakers = table["speaker"].astype(str).to_numpy() if "speaker" in table.columns else None
    splits = Splits(test=np.arange(len(table), dtype=np.int64), folds=[])
    return AudioData(manifest=manifest, waveforms=waveforms(manifest.paths), targets=targets,
                     classes=list(classes), word_ids=word_ids, words=table_words, ages=ages, speakers=speakers,
                     splits=splits, shuffle=False)
