"""A model folder someone edited, damaged or trained elsewhere: a missing or edited key of model.json/config.json
is one line naming the file and the key; a folder trained on `cuda:1` runs on a machine without it; a device that
is not here (`predict --device cuda`, `--device gpu`, `core.train --set train.device=cuda`) is one line naming the
flag or key and the choices, before any work."""

from __future__ import annotations

import codecs
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from support.toy_audio import make_toy_config

from core.cli import main as core_train
from core.data.dataset import AudioData
from core.errors import UserError
from core.model_folder import CONFIG, METADATA, read_model_folder, save_model_folder
from core.models import MODELS
from core.statistics import FoldStatistics
from tune.predict import main as tune_predict

ABSENT_GPU = f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"  # one past the last GPU


@pytest.fixture(scope="module")
def model_folder(toy_data: AudioData, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model folder whose config says it trained on a GPU this machine does not have."""
    config = make_toy_config(toy_data.manifest.source, toy_cache_dir, **{"train.device": ABSENT_GPU})
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    spec = MODELS.get(config.model.name)
    torch.manual_seed(0)
    model, featurizer = spec.build(config, len(toy_data.classes), stats), spec.featurizer(config, stats)
    folder = tmp_path_factory.mktemp("saved") / "model"
    save_model_folder(folder, model.eval(), featurizer.eval(), config, stats, {"trained_on": {}})
    return folder


def edited(folder: Path, tmp_path: Path, file: str, change: Callable[[dict[str, Any]], Any]) -> Path:
    copy_ = tmp_path / "edited"
    shutil.copytree(folder, copy_)
    content = json.loads((copy_ / file).read_text())
    change(content)
    (copy_ / file).write_text(json.dumps(content))
    return copy_


def unset(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        for key in keys[:-1]:
            content = content[key]
        del content[keys[-1]]
    return change


def put(value: Any, *keys: str) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        for key in keys[:-1]:
            content = content[key]
        content[keys[-1]] = value
    return change


@pytest.mark.parametrize(("file", "change", "message"), [
    (METADATA, unset("decoding", "sample_rate"), "model.json lacks decoding.sample_rate"),
    (METADATA, unset("decoding", "max_seconds"), "model.json lacks decoding.max_seconds"),
    (METADATA, put("fast", "decoding", "sample_rate"), "model.json: decoding.sample_rate='fast' is not a positive"),
    (METADATA, put(-1, "decoding", "max_seconds"), "model.json: decoding.max_seconds=-1 is not a positive number"),
    (METADATA, put([], "decoding"), "model.json: decoding=[] is not an object"),
    (METADATA, put(3, "words"), "model.json: words=3 is not a list of names"),
    (METADATA, put("ab", "classes"), "model.json: classes='ab' is not a list of names"),
    (METADATA, put(1, "statistics"), "model.json: statistics=1 is not an object"),
    (METADATA, put("x", "architecture"), "model.json: architecture='x' is not an object"),
    (METADATA, unset("classes"), "model.json lacks classes"),
    (CONFIG, put("three", "train", "epochs"), "config.json: train.epochs: expected int, got 'three'"),
    (CONFIG, put(1, "optimm"), "config.json: unknown config section 'optimm'"),
])
def test_an_edited_key_is_one_line_naming_file_and_key(model_folder: Path, tmp_path: Path, file: str,
                                                       change: Callable[[dict[str, Any]], None],
                                                       message: str) -> None:
    folder = edited(model_folder, tmp_path, file, change)
    with pytest.raises(UserError) as caught:
        read_model_folder(folder).load()
    assert str(caught.value).startswith(f"--model {folder}: ") and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("file", [METADATA, CONFIG])
def test_a_byte_order_mark_in_the_json_files_is_read(model_folder: Path, tmp_path: Path, file: str) -> None:
    folder = tmp_path / "bom"
    shutil.copytree(model_folder, folder)
    (folder / file).write_bytes(codecs.BOM_UTF8 + (folder / file).read_bytes())
    assert read_model_folder(folder).load().classes == read_model_folder(model_folder).classes


def test_a_folder_trained_on_an_absent_gpu_runs_here(model_folder: Path) -> None:
    """Its train.device (cuda:1, as the README's `final --set` example writes it) is where it trained."""
    saved = read_model_folder(model_folder)
    assert saved.config.train.device == ABSENT_GPU
    loaded = saved.load()
    assert loaded.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(loaded.model.parameters()).device.type == loaded.device.type


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "--device gpu: not a device; choose auto, cpu, cuda or cuda:N"),
    (ABSENT_GPU, f"--device {ABSENT_GPU}: this machine has"),
    pytest.param("cuda", "--device cuda: this machine has no CUDA GPU (torch sees none); use auto or cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_predict_on_a_device_that_is_not_here(model_folder: Path, toy_dataset: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], device: str, message: str) -> None:
    out = tmp_path / "p.csv"
    assert tune_predict(["--model", str(model_folder), "--data", str(toy_dataset), "--out", str(out),
                         "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err
    assert not out.exists()


def test_core_train_on_a_device_that_is_not_here(toy_config_factory: Callable[..., Any], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = toy_config_factory()
    config.to_json(tmp_path / "config.json")
    device = "cuda" if not torch.cuda.is_available() else ABSENT_GPU
    assert core_train(["--config", str(tmp_path / "config.json"), "--set", f"train.device={device}",
                       "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: train.device={device!r}: this machine has"), err
    assert not (tmp_path / "out").exists()

