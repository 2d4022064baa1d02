"""Every kind of bad input to `tune.run`: one line naming the file/row/field, exit code 2, no traceback, nothing
written and no Ray started. Run in-process (`tune.run.main`) to stay fast; tests/tune/test_cli_errors.py runs the same
checks through the real command line."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import ray
import soundfile

from tune.run import main

Rows = list[dict[str, str]]


def toy_rows(toy_dataset: Path) -> Rows:
    with toy_dataset.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_manifest(path: Path, rows: Rows, columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def tune_run(tmp_path: Path, toy_dataset: Path, toy_cache_dir: Path, capsys: pytest.CaptureFixture[str]
             ) -> Callable[..., str]:
    """`tune_run(*args, data=manifest)` -> the single error line, after checking the contract."""
    storage = tmp_path / "runs"

    def call(*args: str, data: Path | None = toy_dataset, storage_arg: str | None = None) -> str:
        options = ["--demo", "--set", f"data.cache_dir={toy_cache_dir}", "--set", "data.max_seconds=1.0",
                   "--audio-root", str(toy_dataset.parent), "--storage", storage_arg or str(storage)]
        if data is not None:
            options += ["--data", str(data)]
        before = sorted(storage.rglob("*")) if storage.exists() else []
        code = main([*args, *options])
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (out, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err + out
        assert not ray.is_initialized()  # failed before Ray started
        assert (sorted(storage.rglob("*")) if storage.exists() else []) == before  # nothing written
        return lines[0]

    return call


SPACE = ("--space", "whisper_balancing")


def test_manifest_missing(tune_run: Callable[..., str], tmp_path: Path) -> None:
    assert tune_run(*SPACE, data=tmp_path / "absent.csv") == f"error: {tmp_path / 'absent.csv'}: manifest not found"


def test_unknown_manifest_format(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path) -> None:
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(toy_dataset.read_text())
    assert f"{manifest}: unknown manifest format '.txt'" in tune_run(*SPACE, data=manifest)


def test_missing_path_column(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path) -> None:
    rows = toy_rows(toy_dataset)
    manifest = write_manifest(tmp_path / "m.csv", rows, [c for c in rows[0] if c != "path"])
    assert f"{manifest}: missing required column 'path'" in tune_run(*SPACE, data=manifest)


def test_target_column_absent(tune_run: Callable[..., str], toy_dataset: Path) -> None:
    assert f"{toy_dataset}: target column 'severity' not found" in tune_run(*SPACE, "--target", "severity")


def test_audio_file_missing(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path) -> None:
    rows = toy_rows(toy_dataset)
    rows[4]["path"] = "audio/gone.flac"
    manifest = write_manifest(tmp_path / "m.csv", rows)
    line = tune_run(*SPACE, data=manifest)
    assert f"{manifest}: row 5 (line 6): audio file {toy_dataset.parent / 'audio' / 'gone.flac'} not found" in line


def test_corrupt_audio(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path) -> None:
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 4)  # a FLAC signature, then garbage
    rows = toy_rows(toy_dataset)
    rows[0]["path"] = str(corrupt)
    line = tune_run(*SPACE, data=write_manifest(tmp_path / "m.csv", rows))
    assert f"row 1 (line 2): audio file {corrupt} is unreadable" in line


def test_zero_length_audio(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path) -> None:
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    assert soundfile.info(empty).frames == 0
    rows = toy_rows(toy_dataset)
    rows[2]["path"] = str(empty)
    line = tune_run(*SPACE, data=write_manifest(tmp_path / "m.csv", rows))
    assert f"row 3 (line 4): audio file {empty} is empty (0 samples)" in line


@pytest.mark.parametrize("label", ["", "nan"])
def test_empty_or_nan_label(tune_run: Callable[..., str], tmp_path: Path, toy_dataset: Path, label: str) -> None:
    rows = toy_rows(toy_dataset)
    rows[6]["label"] = label
    manifest = write_manifest(tmp_path / "m.csv", rows)
    assert f"{manifest}: row 7 (line 8): target 'label' is empty or NaN" in tune_run(*SPACE, data=manifest)


def test_class_with_too_few_speakers_for_k_folds(tune_run: Callable[..., str], tmp_path: Path,
                                                 toy_dataset: Path) -> None:
    rows = toy_rows(toy_dataset)
    abnormal_speakers = sorted({r["speaker"] for r in rows if r["label"] == "abnormal"})
    kept = set(abnormal_speakers[:2])
    rows = [r for r in rows if r["label"] == "normal" or r["speaker"] in kept]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    # --demo's 3 folds plus the test split need 4 speakers per class
    line = tune_run(*SPACE, data=manifest)
    assert f"{manifest}: class 'abnormal' has only 2 speaker(s); a test split plus data.k_fold=3 needs at least 4" \
        in line


@pytest.mark.parametrize(("args", "message"), [
    (("--space", "nope"), "unknown search space 'nope'; choose one of: "),
    ((*SPACE, "--set", "optim.lrr=1e-3"), "did you mean optim.lr"),
    ((*SPACE, "--set", "train.epochs=three"), "train.epochs: expected int"),
    ((*SPACE, "--set", "optim.lr"), "--set expects key=value, got 'optim.lr'"),
    ((*SPACE, "--k-fold", "1"), "--k-fold must be >= 2"),
    ((*SPACE, "--set", "data.k_fold=1"), "data.k_fold=1: a search cross-validates, use k >= 2"),
    ((*SPACE, "--set", "optim.lr=-0.001"), "optim.lr=-0.001: must be positive"),
    ((*SPACE, "--set", "data.test_size=1.0"), "data.test_size=1.0: must be between 0 and 1 (exclusive)"),
    ((*SPACE, "--cpus-per-trial", "0"), "--cpus-per-trial must be >= 0.01"),
    ((*SPACE, "--gpus-per-trial", "1"), "--gpus-per-trial 1 but this machine (local Ray) has 0 GPUs"),
    ((*SPACE, "--resume"), "--resume needs the --name of the experiment to continue"),
])
def test_bad_options(tune_run: Callable[..., str], args: tuple[str, ...], message: str) -> None:
    assert message in tune_run(*args)


def test_resume_without_experiment(tune_run: Callable[..., str], tmp_path: Path) -> None:
    assert f"--resume: no experiment 'ghost' in {tmp_path / 'runs'}" in tune_run(*SPACE, "--resume", "--name", "ghost")


def test_resume_of_a_search_killed_before_any_state(tune_run: Callable[..., str], tmp_path: Path) -> None:
    """run.json is written when Ray is up; a kill before Tune's first save leaves nothing to resume."""
    folder = tmp_path / "runs" / "early"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"space": "whisper_balancing"}))
    line = tune_run(*SPACE, "--resume", "--name", "early")
    assert f"--resume: experiment {folder} has no saved search state" in line


def test_storage_not_writable(tune_run: Callable[..., str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = tune_run(*SPACE, storage_arg=str(blocker / "runs"))
    assert line.startswith(f"error: --storage {blocker / 'runs'}: not writable")


def test_resources_devices_addresses_and_storage_schemes(tune_run: Callable[..., str]) -> None:
    """What would hang or crash inside Ray is refused before it: a trial larger than any node, CUDA without GPUs,
    an address where nothing listens (answered within seconds), a storage URI nobody can open."""
    from support.ray_cluster import free_port

    cpus = os.cpu_count() or 1
    assert (f"--cpus-per-trial {cpus + 6:g} / --gpus-per-trial 0: a trial needs {cpus + 6:g} CPU, 0 GPU on one "
            f"node, but the largest node of this machine (local Ray) has {cpus:g} CPU, 0 GPU"
            in tune_run(*SPACE, "--cpus-per-trial", str(cpus + 6)))
    assert "train.device='cuda' but trials get no GPU" in tune_run(*SPACE, "--set", "train.device=cuda")
    port = free_port()
    started = time.monotonic()
    line = tune_run(*SPACE, "--address", f"127.0.0.1:{port}")
    assert f"--address 127.0.0.1:{port}: nothing answers there" in line and time.monotonic() - started < 30
    assert "--address 'nowhere': expected auto or HOST:PORT" in tune_run(*SPACE, "--address", "nowhere")
    assert "--storage foo://bucket/runs: cannot open it (Unrecognized filesystem type" in tune_run(
        *SPACE, storage_arg="foo://bucket/runs")


def test_a_test_size_below_one_speaker_is_refused_with_the_minimum(tune_run: Callable[..., str]) -> None:
    """Was: the splitter held out one speaker per class anyway (a far larger test set) and Ray started."""
    line = tune_run(*SPACE, "--set", "data.test_size=0.01")
    assert re.fullmatch(r"error: data\.test_size=0\.01: less than half of one speaker's clips of class '\w+' "
                        r"\(\d+ of \d+\); the test set holds at least one speaker of each class: use data\.test_size "
                        r">= 0\.\d+", line), line


def test_a_missing_pretrained_path_is_named_before_its_rules(tune_run: Callable[..., str]) -> None:
    """Was: "the pretrained Whisper '/nonexistent' was trained on Whisper's own log-mel; use
    features.normalize=whisper" (the demo normalises per clip)."""
    assert tune_run(*SPACE, "--set", "model.pretrained=/nonexistent") == \
        "error: model.pretrained='/nonexistent': no such file or folder"


def test_a_second_search_of_the_same_name_is_refused_at_once(tune_run: Callable[..., str], tmp_path: Path) -> None:
    """Another tune.run of this --name has passed its checks and is preparing the data (minutes under load): its
    folder does not exist yet, but the name is held from its first check on."""
    from tune.results.storage import RunStore

    started = time.monotonic()
    with RunStore(str(tmp_path / "runs"), "same").reserve():
        line = tune_run(*SPACE, "--name", "same")
    assert line.startswith(f"error: experiment {tmp_path / 'runs' / 'same'} is being started or run by another "
                           f"tune.run (pid {os.getpid()} on ")
    assert "pick another --name" in line
    assert time.monotonic() - started < 60
    with RunStore(str(tmp_path / "runs"), "same").reserve():  # released when the holder is done with it
        pass
