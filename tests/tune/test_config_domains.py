"""Config values outside their domain and broken config files end in one `ConfigError`/`UserError` naming the
field or file, before any work: never a crash inside numpy, pyarrow, torch or sklearn."""

from __future__ import annotations

import codecs
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from core.checks import check_config, check_run, spectrogram_frames
from core.config import Config, load_config_file
from core.data.splits import make_presplit, make_splits
from core.errors import ConfigError, DataError, UserError
from tune.engine.arguments import RunSettings


def failure(overrides: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        check_config(Config().with_overrides(overrides))
    return str(caught.value)


# --- values -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "message"), [
    ("data.seed", "-1", "data.seed=-1: must be between 0 and 4294967295"),  # numpy: expected non-negative integer
    ("train.seed", "-5", "train.seed=-5: must be between 0 and 4294967295"),
    ("data.seed", str(2**32), "data.seed=4294967296: must be between 0 and 4294967295"),  # MT19937's limit
    ("data.max_seconds", "1e6", "data.max_seconds=1000000.0: must be <= 600"),  # pyarrow OverflowError in the cache
    ("data.sample_rate", "1", "data.sample_rate=1: must be between 8000 and 192000"),
    ("optim.lr", "nan", "optim.lr=nan: must be a finite number"),
    ("optim.grad_clip", "inf", "optim.grad_clip=inf: must be a finite number"),
    ("loss.gamma", "-inf", "loss.gamma=-inf: must be a finite number"),
    ("features.n_fft", "100000", "features.n_fft=100000: must be between 16 and 16384"),
    ("features.n_fft", "16", "features.n_fft=16: 9 frequency bins leave 66 of features.n_mels=80 mel bands empty"),
    ("features.n_mels", "100000", "features.n_mels=100000: must be <= 512"),
    ("augment.time_mask", "100000", "augment.time_mask=100000: must be <= the 200 frames of whisper's input"),
    ("augment.time_masks", "1000000000", "augment.time_masks=1000000000: must be <= 20"),
    ("train.epochs", "1000000000", "train.epochs=1000000000: must be <= 10000"),
    ("train.batch_size", "10000000", "train.batch_size=10000000: must be <= 65536"),
    ("train.device", "cuda:abc", "train.device='cuda:abc': must be auto, cpu, cuda or cuda:N"),
    ("optim.momentum", "1.5", "optim.momentum=1.5: must be < 1"),
    ("model.pretrained", "", "model.pretrained='': must be a hub id, a local folder or 'none'"),
    ("data.age_bands", "5,-1", "data.age_bands=['5', '-1']: must be ages in years (>= 0)"),
    ("data.age_bands", "3,5,3", "data.age_bands=['3', '5', '3']: must not repeat an edge"),
    ("loss.huber_delta", "0", "loss.huber_delta=0.0: must be positive"),
    ("data.k_fold", "1000", "data.k_fold=1000: must be <= 100"),
])
def test_value_outside_its_domain_names_the_field(key: str, value: str, message: str) -> None:
    assert failure({key: value}).startswith(message)


def test_time_mask_is_bounded_by_the_model_input() -> None:
    """The frames are the model's own: Whisper's from the clip and hop, resnet50's image is 224 wide; wav2vec2 takes
    waveforms (its masks are refused by the model's own check)."""
    whisper = Config().with_overrides({"data.max_seconds": "1"})
    assert spectrogram_frames(whisper) == 100
    check_config(whisper.with_overrides({"augment.time_mask": 100, "augment.time_masks": 1}))
    assert failure({"data.max_seconds": "1", "augment.time_mask": 101}).startswith(
        "augment.time_mask=101: must be <= the 100 frames of whisper's input")
    resnet = {"model.name": "resnet50", "model.pretrained": "none", "features.n_mels": 224, "features.n_fft": 1024}
    assert spectrogram_frames(Config().with_overrides(resnet)) == 224
    assert failure({**resnet, "augment.time_mask": 225}).startswith("augment.time_mask=225: must be <= the 224")
    assert spectrogram_frames(Config().with_overrides({"model.name": "wav2vec2", "model.pretrained": "none",
                                                       "model.size": "micro"})) is None


def test_fft_window_longer_than_the_clip() -> None:
    """torch's STFT failed: 'Padding size should be less than the corresponding input dimension'."""
    assert failure({"data.max_seconds": 0.25, "features.n_fft": 8192}).startswith(
        "features.n_fft=8192: the window is longer than a clip (4000 samples")


def test_values_in_their_domain_still_pass() -> None:
    check_config(Config().with_overrides({"data.seed": 2**32 - 1, "train.seed": 0, "data.sample_rate": 8000,
                                          "data.max_seconds": 600, "features.n_fft": 16384, "optim.momentum": 0.99,
                                          "data.age_bands": "5,3,7", "augment.time_mask": 200,
                                          "augment.time_masks": 1}))


def test_huge_integers_and_non_scalars_are_type_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^optim\.lr: expected float, got 1000000.*\.\.\.$"):
        Config.from_dict({"optim": {"lr": 10**400}})  # float() raised OverflowError
    for value in (None, [1], True):
        with pytest.raises(ConfigError, match=r"^model\.name: expected str"):
            Config.from_dict({"model": {"name": value}})  # was str(value): 'None', '[1]'


# --- the split with the data -----------------------------------------------------------------------------------
SPEAKERS = np.array([f"s{i // 2}" for i in range(32)])  # 16 speakers of 2 clips
LABELS = np.array(["a"] * 20 + ["b"] * 12)  # a: 10 speakers, b: 6


@pytest.mark.parametrize(("test_size", "k_fold", "groups"), [
    (0.95, 3, None),  # was ValueError: n_splits=3 cannot be greater than the number of members in each class
    (0.99, 2, None),
    (0.95, 3, SPEAKERS),  # was ValueError from StratifiedGroupKFold
    (0.5, 5, SPEAKERS),  # was: two folds whose validation rows lacked class b
    (0.8, 1, SPEAKERS),  # was: a validation fold without class b
])
def test_test_size_must_leave_every_class_for_the_folds(test_size: float, k_fold: int,
                                                        groups: np.ndarray | None) -> None:
    with pytest.raises(DataError, match=rf"data\.k_fold={k_fold} after the test split \(data\.test_size="
                                        rf"{test_size:g}\) needs at least {max(k_fold, 2)}"):
        make_splits(LABELS, groups, k_fold=k_fold, test_size=test_size, valid_size=0.2, seed=0)


def test_without_speakers_each_class_needs_clips_for_the_folds() -> None:
    """Without a speaker column the clips are the units: was sklearn's ValueError or warning."""
    with pytest.raises(DataError, match=r"class 'b' has only 3 clip\(s\); a test split plus data\.k_fold=5 needs "
                                        r"at least 6"):
        make_splits(np.array(["a"] * 10 + ["b"] * 3), None, k_fold=5, test_size=0.2, valid_size=0.2, seed=0)


def test_regression_needs_enough_speakers_for_the_folds() -> None:
    values = np.arange(8, dtype=np.float64)
    with pytest.raises(DataError, match=r"only 1 speaker\(s\) are left for data\.k_fold=3"):
        make_splits(values, np.array(["x"] * 4 + ["y"] * 4), k_fold=3, test_size=0.5, valid_size=0.2, seed=0,
                    stratify=False)


def test_presplit_training_file_must_leave_every_class_for_the_folds() -> None:
    """Only a training file: its test split must leave k speakers of each class (was a fold without class b)."""
    with pytest.raises(DataError, match=r"class 'b' has only 3 speaker\(s\); data\.k_fold=5 after the test split "
                                        r"of the training file \(data\.test_size=0\.5\) needs at least 5"):
        make_presplit(LABELS, SPEAKERS, np.zeros(32, dtype=int), k_fold=5, test_size=0.5, valid_size=0.2, seed=0)


def test_every_part_of_the_split_holds_every_class(tmp_path: Path, toy_data, toy_config) -> None:
    """A recorded split or pre-split files can lack a class: found with the data, before training."""
    check_run(toy_config, toy_data)
    fold = toy_data.splits.folds[0]
    only_first = fold.valid[toy_data.targets[fold.valid] == 0]
    broken = type(toy_data.splits)(test=toy_data.splits.test,
                                   folds=[type(fold)(index=0, train=fold.train, valid=only_first)])
    data = dataclasses.replace(toy_data, splits=broken)
    with pytest.raises(DataError, match=rf"fold 0's validation rows hold no clip of class "
                                        rf"'{toy_data.classes[1]}'"):
        check_run(toy_config, data)


# --- files ---------------------------------------------------------------------------------------------------------
def write(tmp_path: Path, content: bytes | str) -> Path:
    file = tmp_path / "config.json"
    file.write_bytes(content.encode() if isinstance(content, str) else content)
    return file


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "expected an object of config sections (data, features, augment, model, loss, optim, train), got a "
               "list"),
    ("null", "expected an object of config sections"),
    ("3", "got a number (3)"),
    ('"fast"', "got a string ('fast')"),
    ('{"optim": 3}', "config section 'optim' must be an object of its keys, got a number (3)"),
    ('{"optimm": {"lr": 1}}', "unknown config section 'optimm' (did you mean optim?)"),
    ('{"optim.lr": 0.1}', "unknown config section 'optim.lr'"),
    ('{"optim": {"lrr": 1}}', "unknown config key 'optim.lrr' (did you mean optim.lr?)"),
    ('{"optim": {"lr": "fast"}}', "optim.lr: expected float, got 'fast'"),
    ('{"config": [1], "score": {}}', "'config': expected an object of config sections"),
    ('{"config": {"train": {"epochs": 2.5}}}', "'config': train.epochs: expected int, got 2.5"),
    ("not json", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ("", "config file is empty"),
    ("[" * 100000, "not a config (JSON nested too deeply)"),
    ("{}".encode("utf-16"), "config file is not UTF-8 text (UTF-16, or binary)"),
    ("{}".encode("utf-16-le"), "config file is not UTF-8 text (UTF-16, or binary)"),
    (b'{"model": {"name": "\xe9"}}', "config file is not UTF-8 (byte 0xe9 at offset 20)"),
])
def test_broken_config_file_is_one_line_naming_it(tmp_path: Path, content: bytes | str, message: str) -> None:
    file = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_config_file(file)
    assert str(caught.value).startswith(f"{file}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_config_file_with_utf8_bom_is_read(tmp_path: Path) -> None:
    """Windows editors write a byte-order mark: accepted, as for manifests."""
    file = write(tmp_path, codecs.BOM_UTF8 + b'{"optim": {"lr": 0.5}}')
    assert load_config_file(file).optim.lr == 0.5


def test_missing_config_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="not a file"):
        load_config_file(tmp_path)


RUN_JSON = {"space": "whisper_balancing", "name": "x", "base": {}, "num_samples": 1, "cpus_per_trial": 1.0,
            "gpus_per_trial": None, "max_concurrent": None, "grace_period": 1, "seed": 0, "demo": False,
            "created": "2026-01-01T00:00:00"}


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not valid JSON"),
    (b'{"space": ', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "expected a JSON object, got list"),
    (json.dumps({k: v for k, v in RUN_JSON.items() if k != "seed"}).encode(), "missing field(s) seed"),
    (json.dumps({**RUN_JSON, "colour": 1}).encode(), "unknown field(s) colour"),
    (json.dumps({**RUN_JSON, "num_samples": "many"}).encode(), "field 'num_samples' is 'many', not an integer"),
    (json.dumps({**RUN_JSON, "gpus_per_trial": "x"}).encode(), "field 'gpus_per_trial' is 'x', not a number or null"),
    (json.dumps({**RUN_JSON, "base": {"optim": 3}}).encode(), "base: config section 'optim' must be an object"),
])
def test_corrupt_run_json_names_the_file(content: bytes, message: str) -> None:
    """`--resume` reads run.json: was a TypeError or JSONDecodeError traceback."""
    with pytest.raises(UserError) as caught:
        RunSettings.from_json(content, "/runs/x/run.json")
    assert str(caught.value).startswith("/runs/x/run.json: ") and message in str(caught.value)


def test_run_json_round_trip() -> None:
    settings = RunSettings.from_json(json.dumps(RUN_JSON).encode())
    assert RunSettings.from_json(settings.to_json()) == settings


def test_cli_prints_one_line_for_a_broken_config_file(tmp_path: Path) -> None:
    """core.train --config: one `error:` line naming the file, exit 2, no traceback."""
    import subprocess

    file = write(tmp_path, '{"optim": 3}')
    done = subprocess.run([sys.executable, "-m", "core.train", "--config", str(file)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {file}: config section 'optim' must be an object of its keys, got a " \
                                  "number (3)"
