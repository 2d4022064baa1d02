"""core/checks.py, the one home of every check beyond the schema: registry names, the task each registered loss and
metric carries, and the rules that need the data (one-cycle's steps) or the checkpoint (a pretrained Whisper's
front end), each found before training (core.train, tune.final) or before Ray (tune.run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.checkpoints import real_weights
from support.toy_audio import make_toy_config
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from core import cli
from core.checks import check_config, check_run
from core.config import Config
from core.data.dataset import AudioData, prepare_data
from core.errors import ConfigError
from core.losses import LOSSES
from core.metrics import METRICS
from core.registry import CLASSIFICATION, REGRESSION

ROOT = Path(__file__).resolve().parents[2]
# With data.seed=4, test_size 0.25 and 2 folds the toy set's folds train on 15 and 12 clips: in batches of 6 and one
# epoch, fold 0 has 3 optimiser steps (enough for one-cycle) and fold 1 only 2.
SHORT_ONE_CYCLE = {"data.k_fold": 2, "data.seed": 4, "data.test_size": 0.25, "train.epochs": 1, "train.batch_size": 6,
                   "optim.scheduler": "one_cycle"}


# --- schema vs registry rules -----------------------------------------------------------------------------------
def test_schema_alone_knows_no_registry() -> None:
    """`Config.validate` checks plain values; names and cross-field task rules are check_config's."""
    unknown = Config().with_overrides({"loss.name": "hinge"})
    assert unknown.validate() is unknown
    with pytest.raises(ConfigError, match=r"^loss\.name='hinge': unknown loss; choose one of: balancing, ce, "):
        check_config(unknown)
    with pytest.raises(ConfigError, match=r"^optim\.lr=0\.0"):  # and check_config runs the schema first
        check_config(Config().with_overrides({"optim.lr": 0.0, "loss.name": "hinge"}))


def test_each_registered_loss_and_metric_carries_its_task() -> None:
    assert {name: LOSSES.get(name).task for name in LOSSES} == {
        "balancing": CLASSIFICATION, "ce": CLASSIFICATION, "class_balanced": CLASSIFICATION,
        "contrastive": CLASSIFICATION, "difficulty": CLASSIFICATION, "focal": CLASSIFICATION,
        "huber": REGRESSION, "l1": REGRESSION, "mse": REGRESSION}
    assert {name for name in METRICS if METRICS.get(name).task == REGRESSION} == {"mae", "rmse", "pearson"}


def test_the_task_rule_reads_the_registry() -> None:
    """The losses a regressor may take are listed from the registry, not from a hand-kept tuple."""
    with pytest.raises(ConfigError, match=r"model\.head='regressor' needs one of huber, l1, mse$"):
        check_config(Config().with_overrides({"model.head": "regressor", "train.metric": "mae"}))
    for name in LOSSES:
        task = LOSSES.get(name).task
        head, metric = ("regressor", "mae") if task == REGRESSION else ("classifier", "uar")
        check_config(Config().with_overrides({"loss.name": name, "model.head": head, "train.metric": metric,
                                              "train.sampler": "word_pairs" if name == "contrastive" else "random"}))


def test_sam_rules_name_their_field() -> None:
    with pytest.raises(ConfigError, match=r"^optim\.sam_base='sam': SAM wraps a plain optimiser: adam, adamw or sgd$"):
        check_config(Config().with_overrides({"optim.name": "sam", "optim.sam_base": "sam"}))
    with pytest.raises(ConfigError, match=r"^train\.precision='fp16': fp16 is not supported with optim\.name=sam"):
        check_config(Config().with_overrides({"optim.name": "sam", "train.precision": "fp16"}))


def test_model_rules_run_through_check_config() -> None:
    with pytest.raises(ConfigError, match=r"^features\.n_mels=80: resnet50 takes a 224-row image"):
        check_config(Config().with_overrides({"model.name": "resnet50"}))


# --- defect 10: one-cycle with too few steps, found before training -------------------------------------------
@pytest.fixture(scope="module")
def short_data(toy_dataset: Path, toy_cache_dir: Path) -> AudioData:
    return prepare_data(make_toy_config(toy_dataset, toy_cache_dir, **SHORT_ONE_CYCLE))


def test_one_cycle_steps_are_counted_per_training_split(short_data: AudioData, toy_dataset: Path,
                                                        toy_cache_dir: Path) -> None:
    assert [len(fold.train) for fold in short_data.splits.folds] == [15, 12]
    config = make_toy_config(toy_dataset, toy_cache_dir, **SHORT_ONE_CYCLE)
    with pytest.raises(ConfigError) as caught:
        check_run(config, short_data)
    assert str(caught.value) == (
        "optim.scheduler='one_cycle' needs at least 3 optimiser steps, got 2 (2 batch(es) of train.batch_size=6 x "
        "train.epochs=1); raise train.epochs or lower train.batch_size")
    check_run(config, short_data, [short_data.splits.folds[0].train])  # 3 steps: enough
    check_run(config, short_data, [short_data.splits.development])  # final training: 27 clips, 5 steps
    check_run(config.with_overrides({"optim.scheduler": "warmup_cosine"}), short_data)  # other schedules: any


def test_core_train_refuses_before_any_epoch(toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> None:
    """Fold 0 alone could train; fold 1 cannot. The run must not train fold 0 first and then fail."""
    config = tmp_path / "config.json"
    make_toy_config(toy_dataset, toy_cache_dir, **SHORT_ONE_CYCLE).to_json(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core.train", "--config", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "epoch" not in done.stdout
    assert done.stderr.splitlines() == [
        "error: optim.scheduler='one_cycle' needs at least 3 optimiser steps, got 2 (2 batch(es) of "
        "train.batch_size=6 x train.epochs=1); raise train.epochs or lower train.batch_size"]


def test_tune_run_refuses_before_ray(toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path) -> None:
    """tune.run's checks (everything before `start_ray`) raise on the same config."""
    from tune.engine import experiment

    argv = ["--space", "whisper_balancing", "--demo", "--data", str(toy_dataset), "--k-fold", "2", "--epochs", "1",
            "--seed", "1", "--set", "data.test_size=0.25", "--set", "optim.scheduler=one_cycle",
            "--set", "train.batch_size=6",
            "--set", f"data.cache_dir={toy_cache_dir}", "--storage", str(tmp_path / "runs"), "--name", "short"]
    with pytest.raises(ConfigError, match=r"^optim\.scheduler='one_cycle' needs at least 3 optimiser steps, got 2"):
        experiment.prepare(argv)
    assert not (tmp_path / "runs" / "short").exists()  # nothing written: the search never started


# --- defect 6: a pretrained Whisper takes its own front end only ------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Whisper saved by save_pretrained, with a feature extractor of another hop and FFT size beside it."""
    folder = tmp_path_factory.mktemp("whisper-hop320")
    WhisperModel(WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                               max_source_positions=64, max_target_positions=8, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, n_fft=512, hop_length=320, sampling_rate=16000).save_pretrained(folder)
    return folder


def whisper_config(pretrained: str, **overrides: object) -> Config:
    return check_config(Config().with_overrides({"model.pretrained": pretrained, "data.max_seconds": 1.0,
                                                 **overrides}))


@pytest.mark.parametrize(("key", "value", "trained"), [
    ("features.hop_length", 160, 320), ("features.n_fft", 400, 512), ("data.sample_rate", 8000, 16000)])
def test_pretrained_front_end_must_match_its_preprocessor_config(checkpoint: Path, toy_data: AudioData, key: str,
                                                                 value: int, trained: int) -> None:
    matching = {"features.hop_length": 320, "features.n_fft": 512, "data.sample_rate": 16000}
    config = whisper_config(str(checkpoint), **{**matching, key: value})
    with pytest.raises(ConfigError) as caught:
        check_run(config, toy_data)
    message = str(caught.value)
    assert message.startswith(f"{key}={value}: the pretrained Whisper {str(checkpoint)!r} was trained with ")
    assert f"={trained} ({checkpoint / 'preprocessor_config.json'}); use {key}={trained}" in message
    check_run(whisper_config(str(checkpoint), **matching), toy_data)


def test_without_preprocessor_config_whisper_fixed_front_end_applies(toy_data: AudioData) -> None:
    """A hub id with no local folder: Whisper's fixed 400-sample FFT, 160-sample hop, 16 kHz."""
    with pytest.raises(ConfigError, match=r"^features\.hop_length=320: .*hop_length=160 \(Whisper's fixed front end"):
        check_run(whisper_config("openai/whisper-base", **{"features.hop_length": 320}), toy_data)
    check_run(whisper_config("openai/whisper-base"), toy_data)
    check_run(whisper_config("none", **{"features.hop_length": 320}), toy_data)  # from scratch: any front end


def test_core_train_reports_the_mismatch_before_training(checkpoint: Path, toy_dataset: Path, toy_cache_dir: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    make_toy_config(toy_dataset, toy_cache_dir, **{"model.pretrained": str(checkpoint)}).to_json(config)
    assert cli.main(["--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "epoch" not in captured.out
    assert captured.err.startswith("error: features.n_fft=400: the pretrained Whisper ")
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize("name", ["whisper-base", "whisper-tiny.en"])
def test_the_shared_checkpoints_take_the_default_front_end(name: str, toy_data: AudioData) -> None:
    """The real checkpoints' preprocessor_config.json is read (and is Whisper's 400/160/16 kHz)."""
    folder = real_weights(name)  # skipped, saying why, where the real weights are not found
    check_run(whisper_config(str(folder)), toy_data)
    with pytest.raises(ConfigError, match=rf"\({folder / 'preprocessor_config.json'}\)"):
        check_run(whisper_config(str(folder), **{"features.n_fft": 512}), toy_data)
