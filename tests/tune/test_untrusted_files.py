"""Files a user is handed (a run folder on shared storage, a pretrained checkpoint) never run code when loaded:
trial checkpoints and pickled weights are read with `weights_only=True`, and a file that holds Python objects is
refused with one line naming it, never with torch's advice to load it with `weights_only=False`."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from support.checkpoints import tiny_whisper_checkpoint

from core.checks import check_run
from core.config import Config
from core.data.dataset import AudioData
from core.errors import ConfigError, UserError
from core.models.pretrained import check_source
from core.models.resnet import load_pretrained
from core.models.wav2vec2 import load_backbone
from core.models.whisper import load_encoder
from core.train import train_fold
from tune.engine.folds import FoldReport
from tune.engine.trainable import STATE_FILE, TrialProgress, restore_from, write_checkpoint

ConfigFactory = Callable[..., Config]


class Payload:
    """Unpickling this calls `exec`, which writes the marker file: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def malicious(file: Path, marker: Path) -> Path:
    torch.save({"model": Payload(marker)}, file)
    return file


def real_checkpoint(folder: Path, config: Config, data: AudioData) -> tuple[TrialProgress, FoldReport]:
    """A trial checkpoint of fold 0 after one epoch, written by the trainable's own writer."""
    progress = TrialProgress.of(config)
    result = FoldReport.from_epoch(next(train_fold(config, data, data.splits.folds[0])))
    progress.record(0, result)
    write_checkpoint(folder, progress, progress.score())
    return progress, result


def test_a_real_trial_checkpoint_restores(tmp_path: Path, toy_config: Config, toy_data: AudioData) -> None:
    _, saved = real_checkpoint(tmp_path, toy_config, toy_data)
    progress = TrialProgress.of(toy_config)
    states = restore_from(tmp_path, progress)
    assert list(states) == [0]
    assert saved.state is not None
    for key, tensor in saved.state["model"].items():
        assert torch.equal(states[0]["model"][key], tensor)
    assert states[0]["progress"]["epoch"] == saved.state["progress"]["epoch"] == 1
    assert progress.curves == {0: [saved.metrics[toy_config.train.metric]]}


def test_a_crafted_fold_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, toy_config: Config,
                                                               toy_data: AudioData) -> None:
    real_checkpoint(tmp_path, toy_config, toy_data)
    marker = tmp_path.parent / f"{tmp_path.name}-marker"
    malicious(tmp_path / STATE_FILE.format(0), marker)
    with pytest.raises(UserError) as caught:
        restore_from(tmp_path, TrialProgress.of(toy_config))
    message = str(caught.value)
    assert "fold0.pt" in message and "refused" in message and "\n" not in message
    assert "weights_only=False" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # torch's advice is not chained
    assert not marker.exists()


def test_the_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    """The crafted file is a real exploit: loaded the old way, it writes the marker."""
    marker = tmp_path / "marker"
    torch.load(malicious(tmp_path / "fold0.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"
    assert pickle.dumps(Payload(marker))  # (and a plain pickle of it would, too)


def one_line_refusal(error: BaseException, file: str, marker: Path) -> None:
    message = str(error)
    assert file in message and "refused" in message and "\n" not in message, message
    assert "weights_only=False" not in message and "likely succeed" not in message
    assert error.__cause__ is None and error.__suppress_context__
    assert not marker.exists()


@pytest.fixture
def poisoned_whisper(tmp_path: Path) -> tuple[Path, Path]:
    """A Hugging Face Whisper folder whose weights are a crafted `pytorch_model.bin` (config.json is real)."""
    folder = tiny_whisper_checkpoint(tmp_path / "whisper")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    malicious(folder / "pytorch_model.bin", marker)
    return folder, marker


def test_a_crafted_pytorch_model_bin_is_one_line(poisoned_whisper: tuple[Path, Path]) -> None:
    folder, marker = poisoned_whisper
    with pytest.raises(ConfigError) as caught:
        load_encoder(str(folder), "micro", 80, 100)
    one_line_refusal(caught.value, "pytorch_model.bin", marker)
    with pytest.raises(ConfigError) as caught:  # the same for wav2vec2 (transformers' own loader)
        load_backbone(str(folder), "micro")
    assert "pytorch_model.bin" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_a_crafted_resnet_state_dict_is_one_line_without_torchs_advice(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    file = malicious(tmp_path / "resnet50.pt", marker)
    with pytest.raises(ConfigError) as caught:
        load_pretrained(str(file))
    one_line_refusal(caught.value, "resnet50.pt", marker)


def test_the_checks_refuse_a_crafted_pretrained_before_any_work(poisoned_whisper: tuple[Path, Path],
                                                               toy_config_factory: ConfigFactory,
                                                               toy_data: AudioData) -> None:
    """check_run (called before Ray starts and before training) unpickles the weights safely, reading no tensor."""
    folder, marker = poisoned_whisper
    config = toy_config_factory(**{"model.pretrained": str(folder), "features.normalize": "whisper"})
    with pytest.raises(ConfigError) as caught:
        check_run(config, toy_data)
    one_line_refusal(caught.value, "pytorch_model.bin", marker)


def test_a_missing_pretrained_path_is_named_first(toy_config_factory: ConfigFactory, toy_data: AudioData) -> None:
    """Before any rule about what a pretrained model was trained on (here: features.normalize)."""
    config = toy_config_factory(**{"model.pretrained": "/nonexistent"})
    with pytest.raises(ConfigError, match=r"^model.pretrained='/nonexistent': no such file or folder$"):
        check_run(config, toy_data)


def test_a_real_checkpoint_still_passes_the_checks(tiny_whisper: Path, toy_config_factory: ConfigFactory,
                                                   toy_data: AudioData, tmp_path: Path) -> None:
    """Pickled weights of tensors only are fine: a resnet50 state_dict saved by torch; a real Whisper."""
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "plain.pt")
    check_source(str(tmp_path / "plain.pt"))
    assert load_pretrained(str(tmp_path / "plain.pt"))["conv1.weight"].shape == (64, 1, 7, 7)
    config = toy_config_factory(**{"model.pretrained": str(tiny_whisper), "features.normalize": "whisper"})
    check_run(config, toy_data)
