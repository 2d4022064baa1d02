"""A self-contained model folder: everything needed to run a trained model, and nothing else. Loading one never
reads the training manifest, the decode cache or the pretrained checkpoint it started from.

    model.safetensors  weights: the model's state ("model." keys) and the featurizer's buffers ("featurizer.")
    config.json        the full Config (`Config.to_dict()`)
    model.json         format and version, classes, word table, the fold statistics the model, featurizer and
                       loss were built with (age range, class and word-label counts, target mean/std), decoding
                       settings, the backbone's Hugging Face config (pretrained models), what it was trained on
    MODEL_CARD.md      for people: what it was trained on, scores, date, versions

model.json may also hold `calibration` (the temperature fitted on the search's out-of-fold predictions,
core/calibration.py) and `operating_point` (the threshold on the positive probability and how it was chosen); every
evaluation then gives calibrated probabilities and decides at that threshold. A fold-ensemble folder (`ensemble` in
model.json) holds no weights of its own but one model folder per fold (`fold<N>/`); its probabilities are the mean of
theirs, calibrated by its own temperature.

`tune.final --out` is such a folder; `core.train --out` writes one per fold (`fold<N>/`). `read_model_folder`
checks a folder from its JSON alone (cheap: before any data or model work); `.load()` then builds the model.
`evaluate_model` is the one way every entry point runs a loaded model on rows of data.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.calibration import apply_temperature
from core.command_line import write_json
from core.config import Config, load_config_file
from core.data.dataset import AudioData, clips_for_inference
from core.devices import check_device, loading_device, resolve_device
from core.errors import UserError
from core.evaluate import predict, score
from core.models import MODELS
from core.report import report_of_rows
from core.settings_files import excerpt, parse_json, read_text
from core.statistics import FoldStatistics

FORMAT = "audiotune-model"
VERSION = 1
WEIGHTS, CONFIG, METADATA, CARD = "model.safetensors", "config.json", "model.json", "MODEL_CARD.md"
FILES = (WEIGHTS, CONFIG, METADATA, CARD)


def decoding_settings(config: Config) -> dict[str, Any]:
    """How a clip becomes the model's input waveform (core/data/audio.py): what predict must repeat exactly."""
    d = config.data
    return {"sample_rate": d.sample_rate, "max_seconds": d.max_seconds,
            "num_samples": int(round(d.sample_rate * d.max_seconds)), "channels": "mean",
            "crop": "head", "pad": "zeros", "decoder": "soundfile"}


def uses_covariates(config: Config) -> bool:
    """Age/word conditioning: the model reads each clip's age and word id (core/models/conditioning.py)."""
    return config.features.conditioning != "none"


def versions() -> dict[str, str]:
    import transformers

    try:
        own = importlib.metadata.version("audiotune")
    except importlib.metadata.PackageNotFoundError:  # run from a source checkout that was never installed
        own = "unknown"
    return {"audiotune": own, "torch": torch.__version__, "transformers": transformers.__version__}


# --- saving ------------------------------------------------------------------------------------------------------
def save_model_folder(folder: Path, model: nn.Module | None, featurizer: nn.Module | None, config: Config,
                      stats: FoldStatistics, card: dict[str, Any], decision: dict[str, Any] | None = None,
                      ensemble: list[str] | None = None) -> Path:
    """Write the four files into `folder` (made if needed; the caller checked it may replace them). `stats` are
    those the model was built with (from `FoldStatistics.from_data`: they carry the class and word names); `card`
    holds what the model card reports (`trained_on`, `cv_score`, `test`, ... : see `card_text`); `decision`: the
    `calibration` and `operating_point` blocks of model.json. With `ensemble` (the member folders' names, already
    written inside `folder`) there is no model of its own (`model`, `featurizer`: None) and no weights file."""
    if len(stats.words) != stats.num_words:
        raise ValueError("save_model_folder needs statistics with word names (FoldStatistics.from_data)")
    folder.mkdir(parents=True, exist_ok=True)
    spec = MODELS.get(config.model.name)
    config.to_json(folder / CONFIG)
    if model is not None and featurizer is not None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"featurizer.{k}": v for k, v in featurizer.state_dict().items()})
        # safetensors refuses tensors that share memory (a sliced table, a tied weight): give each its own copy.
        save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
                  str(folder / WEIGHTS), metadata={"format": FORMAT, "version": str(VERSION)})
        # safetensors creates its file readable by the owner only; give it the umask's mode, as the JSON files have.
        (folder / WEIGHTS).chmod((folder / CONFIG).stat().st_mode & 0o777)
    architecture = spec.architecture(model) if spec.architecture is not None and model is not None else None
    metadata = {"format": FORMAT, "version": VERSION, "model": config.model.name, "classes": list(stats.classes),
                "words": list(stats.words), "statistics": stats.to_dict(), "decoding": decoding_settings(config),
                "conditioning": config.features.conditioning, "target": config.data.target,
                "task": "regression" if config.model.head == "regressor" else "classification",
                "positive_class": config.data.positive_class or None,
                "architecture": architecture,
                **(decision or {}),
                **({"ensemble": {"members": list(ensemble), "combine": "mean of the members' probabilities"}}
                   if ensemble else {}),
                "card": {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                         "versions": versions(), **card}}
    write_json(folder / METADATA, metadata)
    (folder / CARD).write_text(card_text(config, metadata))
    return folder


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4f}"


def card_text(config: Config, metadata: dict[str, Any]) -> str:
    """MODEL_CARD.md from model.json's card block."""
    card = metadata["card"]
    trained = card.get("trained_on", {})
    lines = [f"# audiotune model: {config.model.name} ({metadata['task']})", "",
             f"- date: {card['date']}",
             "- versions: " + ", ".join(f"{name} {version}" for name, version in card["versions"].items()),
             f"- target: `{config.data.target}`; classes: {', '.join(metadata['classes']) or 'none (regression)'}",
             f"- conditioning: {config.features.conditioning}; words: {len(metadata['words'])}",
             f"- input: {config.data.max_seconds:g} s at {config.data.sample_rate} Hz, channels averaged to mono, "
             "longer clips cut, shorter ones zero-padded", "", "## Trained on", "",
             f"- manifest: `{trained.get('manifest', 'unknown')}` ({trained.get('rows', 'unknown')})",
             f"- clips: {trained.get('clips', 'unknown')}"]
    if trained.get("classes"):
        lines.append("- clips per class: " + ", ".join(f"{k} {v}" for k, v in trained["classes"].items()))
    if trained.get("age_range"):
        lines.append(f"- ages: {trained['age_range'][0]:g} to {trained['age_range'][1]:g} years")
    cv = card.get("cv_score")
    lines += ["", "## Scores", ""]
    if cv:
        folds = ", ".join(_number(v) for v in cv.get("folds", []))
        lines.append(f"- cross-validated {card.get('metric', config.train.metric)} (search): "
                     f"{_number(cv.get('score'))} ± {_number(cv.get('std'))} at epoch {cv.get('epoch')} of "
                     f"{cv.get('horizon')} (folds: {folds})")
    else:
        lines.append("- cross-validated score: not recorded (the config was not a search's best_config.json)")
    for name, metrics in (("test", card.get("test")), ("validation", card.get("validation"))):
        if metrics:
            clips = card.get(f"{name}_clips")
            lines.append(f"- {name}{f' ({clips} clips)' if clips else ''}: "
                         + ", ".join(f"{k} {_number(v)}" for k, v in metrics.items()))
    lines += decision_lines(metadata)
    lines += ["", "## Use", "", "```", "python -m tune.predict --model THIS_FOLDER --data MANIFEST_OR_FOLDER "
              "--out predictions.csv", "```", ""]
    return "\n".join(lines)


def decision_lines(metadata: dict[str, Any]) -> list[str]:
    """The model card's lines on the ensemble, the calibration and the operating point."""
    lines = []
    if metadata.get("ensemble"):
        members = metadata["ensemble"]["members"]
        lines.append(f"- fold ensemble: the mean of the probabilities of {len(members)} fold models "
                     f"({', '.join(members)})")
    calibration = metadata.get("calibration")
    if calibration:
        lines.append(f"- calibration: temperature {calibration['temperature']:.4f}, fitted on "
                     f"{calibration.get('clips')} out-of-fold predictions")
    point = metadata.get("operating_point")
    if point:
        lines.append(f"- decision: {point['positive_class']} when its probability >= {point['threshold']:.4f} "
                     f"(chosen by {point['rule']}; {point['chosen_on']})")
    return ["", "## Decision", "", *lines] if lines else []


# --- loading -----------------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model folder built and ready: `model` and `featurizer` in eval mode on `device`."""

    folder: Path
    config: Config
    model: nn.Module
    featurizer: nn.Module
    stats: FoldStatistics
    classes: list[str]
    words: list[str]
    decoding: dict[str, Any]
    metadata: dict[str, Any]
    device: torch.device
    temperature: float = 1.0  # calibration (core/calibration.py); 1: the model's own probabilities
    threshold: float | None = None  # the operating point on the positive probability; None: argmax
    members: list[LoadedModel] = field(default_factory=list)  # a fold ensemble's models (this one's are the first's)


def decision_of(metadata: dict[str, Any]) -> tuple[float, float | None]:
    """(temperature, threshold) from model.json (1.0 and None where it has none)."""
    calibration, point = metadata.get("calibration") or {}, metadata.get("operating_point") or {}
    threshold = point.get("threshold")
    return float(calibration.get("temperature", 1.0)), (float(threshold) if threshold is not None else None)


@dataclass
class ModelFolder:
    """A model folder read and checked from its JSON files (no weights loaded yet)."""

    folder: Path
    flag: str  # the option that named it, for messages
    config: Config
    metadata: dict[str, Any]
    stats: FoldStatistics

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def words(self) -> list[str]:
        return list(self.metadata["words"])

    @property
    def regression(self) -> bool:
        return not self.classes

    @property
    def decoding(self) -> dict[str, Any]:
        return dict(self.metadata["decoding"])

    def where(self) -> str:
        return f"{self.flag} {self.folder}"

    @property
    def members(self) -> list[str]:
        """A fold ensemble's member folders (names inside this folder); empty for a single model."""
        return list((self.metadata.get("ensemble") or {}).get("members", []))

    def load(self, device: str | torch.device | None = None) -> LoadedModel:
        """Build the model (a fold ensemble: each member) and load its weights, with this folder's calibration and
        operating point."""
        temperature, threshold = decision_of(self.metadata)
        if self.members:
            members = [read_model_folder(self.folder / name, self.flag).load(device) for name in self.members]
            first = members[0]
            return dataclasses.replace(first, folder=self.folder, config=self.config, stats=self.stats,
                                       metadata=self.metadata, temperature=temperature, threshold=threshold,
                                       members=members)
        return dataclasses.replace(self.load_weights(device), temperature=temperature, threshold=threshold)

    def load_weights(self, device: str | torch.device | None = None) -> LoadedModel:
        """Build the model and featurizer from the saved config, statistics and architecture, then load the saved
        weights (strict). The pretrained source is not read: the architecture comes from model.json."""
        spec = MODELS.get(self.config.model.name)
        # The pretrained weights are replaced by the saved ones, so the source (a hub id, a folder, a resnet .pt)
        # must not be read, nor even exist: build from the saved architecture (or, for resnet, from scratch).
        shape = self.config.with_overrides({"model.pretrained": "none"})
        outputs = len(self.classes) or 1
        architecture = self.metadata.get("architecture")
        try:
            if spec.architecture is not None:
                if not architecture:
                    raise UserError(f"{self.where()}: model.json has no 'architecture' for {self.config.model.name}")
                model = spec.build(shape, outputs, self.stats, architecture=architecture)
            else:
                model = spec.build(shape, outputs, self.stats)
            featurizer = spec.featurizer(shape, self.stats)
        except UserError as error:
            raise UserError(f"{self.where()}: cannot rebuild the saved model ({error})") from error
        try:
            tensors = load_file(str(self.folder / WEIGHTS))
        except (SafetensorError, OSError) as error:
            raise UserError(f"{self.where()}: {WEIGHTS} is unreadable ({str(error).splitlines()[0]})") from error
        states = {"model": {}, "featurizer": {}}
        for key, value in tensors.items():
            part, _, name = key.partition(".")
            if part not in states:
                raise UserError(f"{self.where()}: {WEIGHTS} holds an unexpected tensor {key!r}")
            states[part][name] = value
        for part, module in (("model", model), ("featurizer", featurizer)):
            try:
                module.load_state_dict(states[part], strict=True)
            except RuntimeError as error:
                detail = " ".join(str(error).split())[:300]
                raise UserError(f"{self.where()}: the {part} weights in {WEIGHTS} do not fit its {CONFIG} "
                                f"({detail})") from error
        if isinstance(device, torch.device):
            target = device
        else:  # the trained-on device (cuda:1, say) is where it trained, not where it must run
            check_device(device, "--device")
            target = resolve_device(loading_device(device, self.config.train.device))
        return LoadedModel(folder=self.folder, config=self.config, model=model.to(target).eval(),
                           featurizer=featurizer.to(target).eval(), stats=self.stats, classes=self.classes,
                           words=self.words, decoding=self.decoding, metadata=self.metadata, device=target)


def read_model_folder(path: str | Path, flag: str = "--model") -> ModelFolder:
    """Read and check a model folder (or its model.safetensors) from its JSON files; a `UserError` naming the
    folder and what is wrong otherwise. Nothing outside the folder is read."""
    given = Path(path).expanduser()
    folder = given.parent if given.name == WEIGHTS and given.is_file() else given
    where = f"{flag} {given}"
    if not given.exists():
        raise UserError(f"{where}: not found")
    if folder.is_file():
        hint = " (a model.pt of an earlier audiotune, which is not self-contained; train it again)" \
            if given.suffix == ".pt" else ""
        raise UserError(f"{where}: a file, not a model folder{hint}; give the --out folder of tune.final or a "
                        "fold<N> folder of core.train --out")
    missing = [name for name in (METADATA, CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if METADATA in missing:
        raise UserError(f"{where}: not a model folder (no {METADATA}); give the --out folder of tune.final or a "
                        "fold<N> folder of core.train --out")
    try:  # as every settings file: a byte-order mark accepted, a key given twice refused, size and depth capped
        metadata = parse_json(folder / METADATA, read_text(folder / METADATA))
    except UserError as error:
        raise UserError(f"{where}: {METADATA} is not valid JSON ({str(error).removeprefix(f'{folder / METADATA}: ')})"
                        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UserError(f"{where}: {METADATA} is not an audiotune model description (format {FORMAT!r})")
    if metadata.get("version") != VERSION:
        raise UserError(f"{where}: model folder version {metadata.get('version')!r}; this audiotune reads "
                        f"version {VERSION}")
    if metadata.get("ensemble") and WEIGHTS in missing:  # a fold ensemble: the weights are its members'
        missing.remove(WEIGHTS)
        for name in metadata["ensemble"].get("members", []):
            read_model_folder(folder / str(name), flag)
    if missing:
        raise UserError(f"{where}: {', '.join(missing)} missing from the model folder")
    absent = [key for key in ("classes", "words", "decoding", "statistics") if key not in metadata]
    if absent:
        raise UserError(f"{where}: damaged model folder ({METADATA} lacks {', '.join(absent)})")
    check_metadata(where, metadata)
    try:
        config = load_config_file(folder / CONFIG)
        stats = FoldStatistics.from_dict(metadata["statistics"])
    except (UserError, KeyError, ValueError, TypeError, json.JSONDecodeError) as error:
        raise UserError(f"{where}: damaged model folder ({type(error).__name__}: {error})") from error
    return ModelFolder(folder=folder, flag=flag, config=config, metadata=metadata, stats=stats)


def check_metadata(where: str, metadata: dict[str, Any]) -> None:
    """The shapes of model.json's keys that loading and decoding read, so an edited one is a line naming it."""
    def wrong(key: str, value: Any, what: str) -> UserError:
        return UserError(f"{where}: damaged model folder ({METADATA}: {key}={excerpt(value)} is not {what})")

    for key in ("classes", "words"):
        if not (isinstance(metadata[key], list) and all(isinstance(item, str) for item in metadata[key])):
            raise wrong(key, metadata[key], "a list of names")
    for key in ("decoding", "statistics") + (("architecture",) if metadata.get("architecture") is not None else ()):
        if not isinstance(metadata[key], dict):
            raise wrong(key, metadata[key], "an object")
    decoding = metadata["decoding"]
    for key, whole in (("sample_rate", True), ("max_seconds", False)):
        if key not in decoding:
            raise UserError(f"{where}: damaged model folder ({METADATA} lacks decoding.{key})")
        value = decoding[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value <= 0 or (whole and value != int(value)):
            raise wrong(f"decoding.{key}", value, "a positive " + ("whole number" if whole else "number"))


def load_model_folder(path: str | Path, flag: str = "--model", device: str | torch.device | None = None
                      ) -> LoadedModel:
    """`read_model_folder(path).load(device)`."""
    return read_model_folder(path, flag).load(device)


# --- evaluation --------------------------------------------------------------------------------------------------
def data_for_model(folder: ModelFolder | LoadedModel, data: AudioData) -> AudioData:
    """`data` in the model's terms: its labels as the model's class ids and its words as ids of the model's word
    table (its own rows and splits kept). A label or (with conditioning) a word the model does not know is a
    DataError naming the row."""
    if data.classes == list(folder.classes) and data.words == list(folder.words):
        return data
    mapped = clips_for_inference(data.manifest, folder.classes, folder.words, uses_covariates(folder.config),
                                 regression=data.regression, waveforms=lambda _: data.waveforms)
    return dataclasses.replace(mapped, splits=data.splits, shuffle=data.shuffle)


@dataclass
class Evaluation:
    outputs: np.ndarray  # probabilities [n, classes] (calibrated), or values [n, 1]
    metrics: dict[str, float] | None  # `score` (what training reports), when the rows have labels
    report: dict[str, Any] | None  # the clinical report (core/report.py), when asked for
    raw: np.ndarray | None = None  # the probabilities before calibration (a fold ensemble: its members' mean)


def evaluate_model(loaded: LoadedModel, data: AudioData, rows: np.ndarray, labelled: bool = True,
                   report: Config | None = None, batch_size: int | None = None,
                   threshold: float | None = None) -> Evaluation:
    """Run the loaded model on `rows` of `data` (mapped to the model's class and word tables first; a fold
    ensemble: the mean of its members' probabilities), calibrated by its temperature; with labels, also score
    them, and with `report` (a config: age bands, positive class, bootstrap seed) write the clinical report, with
    the operating point at the model's threshold (or `threshold`, given). The one evaluation of
    `core.train --eval-only`, `tune.final` and `tune.predict`."""
    data = data_for_model(loaded, data)
    size = batch_size or loaded.config.train.eval_batch_size
    raw = np.mean([predict(member.model, member.featurizer, data, rows, member.device, size)
                   for member in loaded.members or [loaded]], axis=0)
    outputs = raw if data.regression else apply_temperature(raw, loaded.temperature)
    metrics = score(data, rows, outputs) if labelled and len(rows) else None
    cut = threshold if threshold is not None else loaded.threshold
    clinical = report_of_rows(report, data, rows, outputs, cut) if labelled and report is not None and len(rows) \
        else None
    return Evaluation(outputs=outputs, metrics=metrics, report=clinical, raw=raw)
