"""The one schema: every CLI, search space, export and final training reads and writes a `Config`.

A `Config` is a tree of small dataclasses. Values are addressed by dotted keys (`optim.lr`), which is how the
CLI's `--set`, the search spaces and the exported JSON all speak about it.

This module is the bottom of core: it imports nothing of the project but `core.errors`, so every registry can
import it. `Config.validate()` checks the schema only (types, ranges, enums of plain values); what needs the
registries, the data or a checkpoint's files is checked in `core.checks`, which every entry point calls.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.settings_files import excerpt, parse_json, read_text


@dataclass
class DataConfig:
    """Where the clips are and how they are split."""

    manifest: str = ""  # CSV or Parquet, one row per clip; or an audiofolder or Hugging Face save_to_disk folder
    audio_root: str = ""  # folder that `path` is relative to; default: the manifest's folder
    target: str = "label"  # column to predict
    path_column: str = ""  # column of clip paths; default: path (audiofolder: file_name; save_to_disk: the Audio one)
    speaker_column: str = "speaker"  # column of speaker ids (optional: when absent, splits are not speaker-grouped)
    word_column: str = "word"  # column of target words (optional)
    age_column: str = "age"  # column of ages in years or Y;M (optional)
    filter_words: list[str] = field(default_factory=list)  # keep only these words (empty: all)
    train_file: str = ""  # pre-split manifests (optional): used instead of `manifest` when set
    valid_file: str = ""
    test_file: str = ""
    sample_rate: int = 16000
    max_seconds: float = 2.0  # clips are cut or zero-padded to this length
    test_size: float = 0.2  # held-out share (speaker-grouped)
    valid_size: float = 0.2  # hold-out share when k_fold == 1
    k_fold: int = 5
    seed: int = 0
    shuffle: bool = True
    cache_dir: str = ""  # decode cache; default: $AUDIOTUNE_CACHE or ~/.cache/audiotune
    cache_dtype: str = "float32"  # decode cache storage: float32 | float16 (half the size, ~1e-3 relative rounding)
    cache_workers: int = 0  # processes that decode clips when the cache is built (0: min(4, CPUs)); same bytes
    splits_file: str = ""  # a search's splits.json: reuse its test set and folds (clips by path) instead of drawing
    positive_class: str = ""  # the screen-positive class for sensitivity/specificity; default: a class `abnormal`
    age_bands: list[str] = field(default_factory=list)  # age band edges in years, e.g. 3,5,7 (empty: yearly)
    bias_min_clips: int = 5  # bias metrics: clips of each class an age band needs (a speaker: clips) to be scored


@dataclass
class FeatureConfig:
    """Log-mel front end, computed on the training device."""

    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160  # resnet50 computes its own hop so that a clip gives 224 frames
    normalize: str = "whisper"  # whisper (the recipe its weights expect) | clip (per clip, band means removed)
    conditioning: str = "none"  # none | rows (age, word rows in the log-mel) | embed (learned, joined) | film (scales)
    age_momentum: float = 1.0  # rows: the age row is the normalised age times this
    embed_dim: int = 16  # embed, film: size of the learned age and word embeddings


@dataclass
class AugmentConfig:
    """SpecAugment, applied to training batches only, to the mel rows only."""

    time_mask: int = 0  # widest time mask, in frames: each mask's width is drawn uniformly from 0..N inclusive (0: off)
    time_masks: int = 0  # how many time masks
    freq_mask: int = 0  # widest frequency mask, in mel bins: width drawn uniformly from 0..N inclusive (0: off)
    freq_masks: int = 0  # how many frequency masks (never over the age/word rows)


@dataclass
class ModelConfig:
    name: str = "whisper"
    pretrained: str = "none"  # hub id, local folder, or "none" (random init from `size`)
    size: str = "tiny"  # preset used when pretrained == "none"
    projection_dim: int = 256
    head: str = "classifier"  # classifier | regressor
    dropout: float = 0.1
    freeze_encoder: bool = False
    encoder_cache: bool = True  # frozen encoder, input unaugmented: its outputs cached per clip, only the head trains
    freeze_feature_encoder: bool = True  # wav2vec2: keep the convolutional feature encoder fixed
    train_positions: bool = False  # whisper: train the positional table (fixed sinusoids in Whisper: frozen)
    pooling: str = "audio"  # whisper: audio (mean of real-audio frames, no padding) | max (their max) | mean (all)
    layers: str = "last"  # whisper, wav2vec2: last | middle | weighted (learned softmax over all) | N (0: embeddings)


@dataclass
class LossConfig:
    name: str = "ce"
    smoothing: float = 1.0  # balancing: add-k smoothing of P(label | word)
    gamma: float = 2.0  # focal: focusing parameter (0 = cross-entropy)
    alpha: float = 0.0  # focal: weight of the positive class (data.positive_class), 1 - alpha the others; 0 = off
    beta: float = 0.999  # class_balanced: effective-number beta
    cb_base: str = "ce"  # class_balanced: applied over ce or focal
    difficulty_lambda: float = 1.0  # difficulty: weight = 1 + lambda * difficulty(word)
    difficulty_file: str = ""  # difficulty: CSV word,difficulty (default: the positive class's training rate)
    contrastive_weight: float = 0.1  # contrastive: CE + weight * pair term
    temperature: float = 0.1  # contrastive: cosine-similarity temperature
    huber_delta: float = 1.0  # huber (regression)


@dataclass
class OptimConfig:
    name: str = "adamw"  # sgd | adam | adamw | sam
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    sam_base: str = "adamw"  # sam: the optimiser it wraps
    sam_rho: float = 0.05  # sam: neighbourhood radius
    sam_adaptive: bool = False  # sam: adaptive (ASAM) scaling
    plateau_factor: float = 0.5  # reduce_on_plateau: lr multiplier
    plateau_patience: int = 1  # reduce_on_plateau: epochs without improvement before reducing
    scheduler: str = "warmup_cosine"
    warmup_ratio: float = 0.1  # share of all optimiser steps spent warming up
    min_lr_ratio: float = 0.01  # cosine floor, as a share of lr
    grad_clip: float = 1.0  # max grad norm (0: off)
    encoder_lr_scale: float = 0.1  # LP-FT: after train.probe_epochs the encoder trains at this x lr (the head at lr)


@dataclass
class TrainConfig:
    epochs: int = 10
    probe_epochs: int = 0  # LP-FT: train the head alone (encoder frozen) this many epochs, then fine-tune (0: off)
    stop_epoch: int = 0  # stop after this epoch (0: train.epochs); the lr schedule still spans train.epochs
    batch_size: int = 16
    metric: str = "uar"  # validation metric that selects epochs and configs
    select: str = "best"  # best | last epoch of each fold
    patience: int = 0  # early stopping within a fold (0: off)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    eval_batch_size: int = 64
    sampler: str = "random"  # training batch sampler (see core/data/samplers.py)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # --- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Inverse of `to_dict`; unknown sections or keys are errors, missing ones keep their defaults."""
        if not isinstance(raw, dict):
            raise ConfigError(f"expected an object of config sections ({', '.join(SECTIONS)}), got "
                              f"{_json_kind(raw)}")
        for name, section in raw.items():
            if name not in SECTIONS:
                hint = difflib.get_close_matches(str(name), SECTIONS, n=1)
                raise ConfigError(f"unknown config section {name!r}" + (f" (did you mean {hint[0]}?)" if hint else ""))
            if not isinstance(section, dict):
                raise ConfigError(f"config section {name!r} must be an object of its keys, got {_json_kind(section)}")
        return Config().with_overrides(flatten(raw))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # --- dotted access ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        section, name = _split_key(self, key)
        return getattr(section, name)

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted overrides applied; strings (from the CLI) are parsed to the field's type."""
        new = Config(**{f.name: dataclasses.replace(getattr(self, f.name)) for f in dataclasses.fields(self)})
        for key, value in overrides.items():
            section, name = _split_key(new, key)
            setattr(section, name, coerce(key, value, _field_type(section, name)))
        return new

    def validate(self) -> Config:
        """The schema check: raise `ConfigError` naming the first field whose value is out of range; return self.
        Names that must exist in a registry, and rules between fields that depend on what a registered entry is
        (a loss's task, a model's inputs), are `core.checks.check_config`'s, which runs this first."""
        for rule in _RULES:
            rule(self)
        return self


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


# --- helpers --------------------------------------------------------------------------------------------------
def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _json_kind(value: Any) -> str:
    """How JSON names a value's type, with the value when it is short."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    kind = kinds.get(type(value), "a number")
    return kind if isinstance(value, (dict, list)) or value is None else f"{kind} ({excerpt(value, 40)})"


def all_keys() -> list[str]:
    return sorted(flatten(Config().to_dict()))


def parse_assignment(text: str) -> tuple[str, str]:
    """'optim.lr=3e-4' -> ('optim.lr', '3e-4')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    return key.strip(), value.strip()


def _split_key(config: Config, key: str) -> tuple[Any, str]:
    parts = key.split(".")
    if len(parts) == 2 and hasattr(config, parts[0]):
        section = getattr(config, parts[0])
        if dataclasses.is_dataclass(section) and parts[1] in {f.name for f in dataclasses.fields(section)}:
            return section, parts[1]
    hint = difflib.get_close_matches(key, all_keys(), n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    raise ConfigError(f"unknown config key {key!r}{suggestion}")


def _field_type(section: Any, name: str) -> Any:
    return _type_hints(type(section))[name]


@functools.cache  # evaluating the string annotations took ~0.5 ms a call, thousands of calls a search
def _type_hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def coerce(key: str, value: Any, kind: Any) -> Any:
    """Turn `value` into `kind` (int, float, bool, str or list[str]) or raise a ConfigError naming `key`."""
    try:
        if typing.get_origin(kind) in (list, types.GenericAlias) or kind is list:
            if isinstance(value, str):
                return [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, (list, tuple)) and all(_scalar(part) for part in value):
                return [str(part) for part in value]
        elif kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _BOOLS:
                return _BOOLS[value.lower()]
        elif kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, int) else int(str(value), 10)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        elif kind is str and _scalar(value):  # a JSON number is fine as text (a class named 1); null, a list not
            return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond a float's range
        pass
    # an excerpt, never the whole repr: a YAML alias can make one value enormous
    raise ConfigError(f"{key}: expected {_type_name(kind)}, got {excerpt(value)}")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _type_name(kind: Any) -> str:
    return "a comma-separated list" if typing.get_origin(kind) is list else getattr(kind, "__name__", str(kind))


# --- schema rules: each names its field --------------------------------------------------------------------------
def require(condition: bool, key: str, message: str, config: Config) -> None:
    """Raise `ConfigError` "KEY=VALUE: message" unless `condition` holds (the one format of every config error)."""
    if not condition:
        raise ConfigError(f"{key}={config.get(key)!r}: {message}")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# Domains. Bounds beyond the mathematical ones keep a typo (an extra zero or three) from reaching a library that
# fails on it deep inside training, or from quietly asking for hours of compute or terabytes of memory.
SEED_LIMIT = 2**32  # numpy's seeds are 0 .. 2**32 - 1
SAMPLE_RATES = (8000, 192000)  # telephone speech .. the highest studio rate
# Every clip is padded to data.max_seconds in the decode cache and on the device: ten minutes is far beyond a recording
# of words or sentences, and more asks for gigabytes per clip. (A pretrained Whisper's own limit, its 30 s window of
# 1500 positions, is checked when the model is built: before Ray, by tune.run's preflight.)
MAX_CLIP_SECONDS = 600.0
MAX_FOLDS = 100
MAX_CACHE_WORKERS = 256
MAX_MELS = 512  # Whisper takes 80 or 128 mel rows, resnet50 222 or 224
FFT_SIZES = (16, 16384)  # 1 ms .. 1 s windows at 16 kHz
MAX_HOP = 16384
MAX_MASKS = 20  # SpecAugment masks per spectrogram (the paper uses 1 or 2)
MAX_EPOCHS = 10000
MAX_BATCH = 65536
MAX_WIDTH = 65536  # projection and embedding sizes
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _finite_floats(c: Config) -> None:
    """Every float field is a finite number: NaN passes no comparison and infinity passes `>= 0`, so the range rules
    below would otherwise name NaN with a misleading reason or let infinity through."""
    for section in dataclasses.fields(c):
        part = getattr(c, section.name)
        for item in dataclasses.fields(part):
            key = f"{section.name}.{item.name}"
            if _field_type(part, item.name) is float:
                require(math.isfinite(getattr(part, item.name)), key, "must be a finite number", c)


def _within(c: Config, key: str, low: float, high: float) -> None:
    """`low <= value <= high`, reported with the range."""
    require(low <= c.get(key) <= high, key, f"must be between {low:g} and {high:g}", c)


def _data_rules(c: Config) -> None:
    d = c.data
    require(0 < d.test_size < 1, "data.test_size", "must be between 0 and 1 (exclusive)", c)
    require(0 < d.valid_size < 1, "data.valid_size", "must be between 0 and 1 (exclusive)", c)
    require(d.k_fold >= 1, "data.k_fold", "must be >= 2 for cross-validation (1: a single hold-out split)", c)
    require(d.k_fold <= MAX_FOLDS, "data.k_fold", f"must be <= {MAX_FOLDS}", c)
    require(d.sample_rate > 0, "data.sample_rate", "must be positive", c)
    _within(c, "data.sample_rate", *SAMPLE_RATES)
    require(d.max_seconds > 0, "data.max_seconds", "must be positive", c)
    require(d.max_seconds <= MAX_CLIP_SECONDS, "data.max_seconds",
            f"must be <= {MAX_CLIP_SECONDS:g} (every clip is padded to this length)", c)
    require(d.sample_rate * d.max_seconds >= 1, "data.max_seconds", "gives clips of no samples", c)
    require(0 <= d.seed < SEED_LIMIT, "data.seed", f"must be between 0 and {SEED_LIMIT - 1} (numpy's seeds)", c)
    require(d.cache_dtype in ("float32", "float16"), "data.cache_dtype", "must be float32 or float16", c)
    require(0 <= d.cache_workers <= MAX_CACHE_WORKERS, "data.cache_workers",
            f"must be between 0 (automatic) and {MAX_CACHE_WORKERS}", c)
    require(bool(d.target.strip()), "data.target", "must name a manifest column", c)
    require(all(_is_number(edge) for edge in d.age_bands), "data.age_bands", "must be numbers (years), e.g. 3,5,7", c)
    edges = [float(edge) for edge in d.age_bands]
    require(all(edge >= 0 for edge in edges), "data.age_bands", "must be ages in years (>= 0)", c)
    require(len(set(edges)) == len(edges), "data.age_bands", "must not repeat an edge", c)
    _within(c, "data.bias_min_clips", 1, 100000)
    require(all(word.strip() for word in d.filter_words), "data.filter_words", "must not hold an empty word", c)


def _feature_rules(c: Config) -> None:
    f, a = c.features, c.augment
    require(f.n_mels > 0, "features.n_mels", "must be positive", c)
    require(f.n_mels <= MAX_MELS, "features.n_mels", f"must be <= {MAX_MELS}", c)
    require(f.n_fft > 0, "features.n_fft", "must be positive", c)
    _within(c, "features.n_fft", *FFT_SIZES)
    samples = int(round(c.data.sample_rate * c.data.max_seconds))
    require(f.n_fft <= samples, "features.n_fft",
            f"the window is longer than a clip ({samples} samples: data.sample_rate x data.max_seconds)", c)
    require(f.hop_length > 0, "features.hop_length", "must be positive", c)
    require(f.hop_length <= MAX_HOP, "features.hop_length", f"must be <= {MAX_HOP}", c)
    require(f.age_momentum >= 0, "features.age_momentum", "must be >= 0", c)
    _within(c, "features.embed_dim", 1, MAX_WIDTH)
    for key in ("time_mask", "time_masks", "freq_mask", "freq_masks"):
        require(getattr(a, key) >= 0, f"augment.{key}", "must be >= 0", c)
    for key in ("time_masks", "freq_masks"):
        require(getattr(a, key) <= MAX_MASKS, f"augment.{key}", f"must be <= {MAX_MASKS}", c)
    require(a.freq_mask <= f.n_mels, "augment.freq_mask", f"must be <= features.n_mels ({f.n_mels})", c)


def _model_rules(c: Config) -> None:
    m = c.model
    require(bool(m.pretrained.strip()), "model.pretrained", "must be a hub id, a local folder or 'none'", c)
    require(m.projection_dim > 0, "model.projection_dim", "must be positive", c)
    require(m.projection_dim <= MAX_WIDTH, "model.projection_dim", f"must be <= {MAX_WIDTH}", c)
    require(0 <= m.dropout < 1, "model.dropout", "must be in [0, 1)", c)
    require(m.head in ("classifier", "regressor"), "model.head", "must be classifier or regressor", c)
    require(m.layers in ("last", "middle", "weighted") or m.layers.strip().isdigit(), "model.layers",
            "must be last, middle, weighted or a layer index (0: the embeddings)", c)
    require(m.layers == "last" or m.name in ("whisper", "wav2vec2"), "model.layers",
            "only whisper and wav2vec2 have encoder layers to choose from; use last", c)


def _optim_rules(c: Config) -> None:
    o = c.optim
    require(o.lr > 0, "optim.lr", "must be positive", c)
    require(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0", c)
    require(0 <= o.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)", c)
    require(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]", c)
    require(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0: off)", c)
    require(o.momentum >= 0, "optim.momentum", "must be >= 0", c)
    require(o.momentum < 1, "optim.momentum", "must be < 1 (at 1 past gradients never fade)", c)
    require(not o.nesterov or o.momentum > 0, "optim.nesterov", "needs optim.momentum > 0", c)
    require(o.sam_rho > 0, "optim.sam_rho", "must be positive", c)
    require(0 < o.plateau_factor < 1, "optim.plateau_factor", "must be between 0 and 1 (exclusive)", c)
    require(o.plateau_patience >= 0, "optim.plateau_patience", "must be >= 0", c)
    require(o.plateau_patience <= MAX_EPOCHS, "optim.plateau_patience", f"must be <= {MAX_EPOCHS}", c)
    require(0 < o.encoder_lr_scale <= 1, "optim.encoder_lr_scale", "must be in (0, 1]", c)


def _loss_rules(c: Config) -> None:
    """Loss parameters, checked whichever loss is chosen: a wrong value is a mistake even where it is unused."""
    s = c.loss
    require(s.smoothing >= 0, "loss.smoothing", "must be >= 0", c)
    require(s.gamma >= 0, "loss.gamma", "must be >= 0 (0: cross-entropy)", c)
    require(0 <= s.alpha < 1, "loss.alpha", "must be in [0, 1) (0: off)", c)
    require(0 < s.beta < 1, "loss.beta", "must be between 0 and 1 (exclusive)", c)
    require(s.cb_base in ("ce", "focal"), "loss.cb_base", "must be ce or focal", c)
    require(s.difficulty_lambda >= 0, "loss.difficulty_lambda", "must be >= 0", c)
    require(s.contrastive_weight >= 0, "loss.contrastive_weight", "must be >= 0", c)
    require(s.temperature > 0, "loss.temperature", "must be positive", c)
    require(s.huber_delta > 0, "loss.huber_delta", "must be positive", c)


def _train_rules(c: Config) -> None:
    t = c.train
    require(t.epochs >= 1, "train.epochs", "must be >= 1", c)
    require(t.epochs <= MAX_EPOCHS, "train.epochs", f"must be <= {MAX_EPOCHS}", c)
    require(0 <= t.stop_epoch <= t.epochs, "train.stop_epoch", f"must be in [0, train.epochs={t.epochs}]", c)
    require(0 <= t.probe_epochs < t.epochs, "train.probe_epochs",
            f"must be in [0, train.epochs={t.epochs}): some epochs must be left to fine-tune", c)
    require(t.probe_epochs == 0 or not c.model.freeze_encoder, "train.probe_epochs",
            "LP-FT fine-tunes the encoder after the probe epochs; set model.freeze_encoder=false", c)
    require(t.probe_epochs == 0 or c.model.name in ("whisper", "wav2vec2"), "train.probe_epochs",
            "LP-FT needs a pretrained encoder (whisper or wav2vec2)", c)
    for key in ("train.batch_size", "train.eval_batch_size"):
        require(c.get(key) >= 1, key, "must be >= 1", c)
        require(c.get(key) <= MAX_BATCH, key, f"must be <= {MAX_BATCH}", c)
    require(t.select in ("best", "last"), "train.select", "must be best or last", c)
    require(t.patience >= 0, "train.patience", "must be >= 0", c)
    require(t.patience <= MAX_EPOCHS, "train.patience", f"must be <= {MAX_EPOCHS}", c)
    require(0 <= t.seed < SEED_LIMIT, "train.seed", f"must be between 0 and {SEED_LIMIT - 1} (numpy's seeds)", c)
    require(t.precision in PRECISIONS, "train.precision", "must be fp32, bf16 or fp16", c)
    require(DEVICE.fullmatch(t.device) is not None, "train.device", "must be auto, cpu, cuda or cuda:N", c)


_RULES = (_finite_floats, _data_rules, _feature_rules, _model_rules, _optim_rules, _loss_rules, _train_rules)


# Config fields that name local files or folders (a storage URI, `s3://...`, is left as it is).
PATH_FIELDS = ("data.manifest", "data.audio_root", "data.train_file", "data.valid_file", "data.test_file",
               "data.cache_dir", "data.splits_file", "loss.difficulty_file")


def with_absolute_paths(config: Config) -> Config:
    """The config with its relative local paths made absolute (from this process's working folder), and
    `model.pretrained` too when it names a folder here (a hub id stays): what a search stores and hands to trials,
    which Ray starts in folders of their own."""
    changes: dict[str, Any] = {key: str(Path(value).absolute()) for key in PATH_FIELDS
                               if (value := config.get(key)) and "://" not in value and not Path(value).is_absolute()}
    pretrained = config.model.pretrained
    if pretrained != "none" and not Path(pretrained).is_absolute() and Path(pretrained).exists():
        changes["model.pretrained"] = str(Path(pretrained).absolute())
    return config.with_overrides(changes) if changes else config


def load_config_file(path: str | Path) -> Config:
    """A config from JSON: either `Config.to_dict()` itself or an export (`best_config.json`) holding it under
    "config". UTF-8, with or without a byte-order mark (Windows editors write one); size- and depth-capped, a key
    given twice refused (core/settings_files.py); every error names the file."""
    file = Path(path)
    text = read_text(file)
    if not text.strip():
        raise ConfigError(f"{file}: config file is empty")
    raw = parse_json(file, text)
    if isinstance(raw, dict) and "config" in raw:  # an export: the recipe under "config", its evidence beside it
        raw = raw["config"]
        where = f"{file}: 'config'"
    else:
        where = f"{file}"
    try:
        return Config.from_dict(raw)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error
