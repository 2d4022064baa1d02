"""Nothing a user gave is lost: experiment names cannot escape --storage, --overwrite deletes only folders this
project made and never a running search's, two runs cannot share a folder, and output folders are not replaced
without --overwrite. All in throw-away folders; in-process where no Ray is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.cli import main as core_train
from tune.final import main as tune_final
from tune.results.storage import LOCK, MARKER, ExperimentInUse, RunStore
from tune.run import main as tune_run

REPO = Path(__file__).resolve().parents[2]


def user_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A user's project: notes and a source folder beside the runs folder, and another experiment in it."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    (project / "src" / "analysis.py").write_text("print('mine')")
    storage = project / "runs"
    (storage / "other").mkdir(parents=True)
    (storage / "other" / "leaderboard.csv").write_text("rank\n1\n")
    return project, storage


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def search_flags(toy_dataset: Path, toy_cache_dir: Path, storage: Path) -> list[str]:
    return ["--space", "whisper_balancing", "--demo", "--data", str(toy_dataset), "--storage", str(storage),
            "--set", f"data.cache_dir={toy_cache_dir}", "--set", "data.max_seconds=1.0"]


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/tmp/x", "", ".hidden", "x" * 101, "a b", "runs;rm"])
def test_names_that_would_escape_storage_are_refused(name: str, tmp_path: Path, toy_dataset: Path,
                                                     toy_cache_dir: Path, capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    project, storage = user_folders(tmp_path)
    before = snapshot(project)
    code = tune_run([*search_flags(toy_dataset, toy_cache_dir, storage), "--name", name, "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: --name {name!r}: an experiment name is one folder name"), err
    assert len(err.splitlines()) == 1
    assert snapshot(project) == before  # nothing deleted, nothing written


def test_overwrite_refuses_a_folder_this_project_did_not_make(tmp_path: Path, toy_dataset: Path,
                                                              toy_cache_dir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    project, storage = user_folders(tmp_path)
    before = snapshot(project)
    code = tune_run([*search_flags(toy_dataset, toy_cache_dir, storage), "--name", "other", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "was not created by audiotune; refusing to delete it" in err
    assert snapshot(project) == before


def test_a_new_experiment_folder_is_made_once(tmp_path: Path) -> None:
    """Two runs started together both pass the 'exists?' check; only one can create the folder."""
    first, second = RunStore(str(tmp_path), "same"), RunStore(str(tmp_path), "same")
    first.create()
    assert (tmp_path / "same" / MARKER).is_file() and first.is_ours()
    with pytest.raises(Exception, match="was created by another run just now"):
        second.create()


def hold_lock(storage: Path, name: str) -> subprocess.Popen[str]:
    """Another process holding the experiment's lock, as a running search does."""
    code = ("import sys, time; from tune.results.storage import RunStore; s = RunStore(sys.argv[1], sys.argv[2]); "
            "s.create(); lock = s.lock(); lock.__enter__(); print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(storage), name], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_running_search_cannot_be_overwritten_or_resumed_twice_and_a_dead_ones_lock_is_stale(
        tmp_path: Path, toy_dataset: Path, toy_cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = tmp_path / "runs"
    holder = hold_lock(storage, "live")
    try:
        (storage / "live" / "run.json").write_text("{}")
        before = snapshot(storage)
        flags = search_flags(toy_dataset, toy_cache_dir, storage)
        for extra in (["--overwrite"], ["--resume"]):
            code = tune_run([*flags, "--name", "live", *extra])
            err = capsys.readouterr().err
            assert code == 2 and "is in use by a running search (pid" in err, err
            assert str(holder.pid) in err
        assert snapshot(storage) == before  # the live folder is untouched
        with pytest.raises(ExperimentInUse), RunStore(str(storage), "live").claim(resume=True, overwrite=False):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without cleaning up: its lock file is still there, but the lock is not held.
    assert (storage / "live" / LOCK).is_file()
    with RunStore(str(storage), "live").claim(resume=False, overwrite=True):
        assert (storage / "live" / MARKER).is_file() and not (storage / "live" / "run.json").exists()


def test_tune_final_and_core_train_keep_a_users_files(tmp_path: Path, toy_dataset: Path, toy_cache_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from support.toy_audio import make_toy_config

    config = tmp_path / "config.json"
    make_toy_config(toy_dataset, toy_cache_dir, **{"train.epochs": 1}).to_json(config)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text("my own config")
    (out / "model.safetensors").write_bytes(b"my own model")
    started = time.monotonic()
    assert tune_final(["--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: already holds config.json, model.safetensors; pass --overwrite") and \
        len(err.splitlines()) == 1, err
    assert time.monotonic() - started < 5  # refused before training
    assert (out / "config.json").read_text() == "my own config"
    assert (out / "model.safetensors").read_bytes() == b"my own model"

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert tune_final(["--config", str(config), "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file, not a folder" in capsys.readouterr().err

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "summary.json").write_text("earlier results")
    assert core_train(["--config", str(config), "--out", str(earlier), "--fold", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--out {earlier}: already holds summary.json" in err and "--overwrite" in err
    assert (earlier / "summary.json").read_text() == "earlier results"
    assert core_train(["--config", str(config), "--out", str(earlier), "--fold", "0", "--overwrite"]) == 0
    assert (earlier / "summary.json").read_text() != "earlier results"
    assert (earlier / "fold0" / "model.safetensors").is_file()  # the fold's model folder
    os.remove(earlier / "fold0.json")  # one of ours missing, another present: still refused without --overwrite
    assert core_train(["--config", str(config), "--out", str(earlier), "--fold", "0"]) == 2
