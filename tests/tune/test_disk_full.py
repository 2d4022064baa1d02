"""A search whose --storage fills up: it stops with one clear message and the resume command, keeps every finished
trial intact, and `--resume` after space is freed completes it with the same scores. Storage is a real tmpfs
(mounting needs root, which CI has); a filler file written once the first trial has finished fills it up."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from support.ray_cluster import CliProcess

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2
SAMPLES = 2


def mount_tmpfs(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a small disk to fill) needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MB tmpfs: room for the toy search (a trial's checkpoint is ~7 MB), and quick to fill."""
    folder = tmp_path / "disk"
    mount_tmpfs(folder, "96m")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until the disk is full; returns the filler file."""
    filler = folder / "filler"
    # unbuffered: nothing is left to fail again on close
    with filler.open("wb", buffering=0) as stream, contextlib.suppress(OSError):
        while True:
            stream.write(bytes(1 << 16))
    return filler


def search_args(data: Path, cache: Path, storage: Path, name: str, *extra: str) -> list[str]:
    return ["tune.run", "--space", "whisper_balancing", "--demo", "--data", str(data),
            "--set", "data.max_seconds=1.0", "--set", f"data.cache_dir={cache}", "--set", "train.batch_size=8",
            "--set", "train.device=cpu", "--num-samples", str(SAMPLES), "--epochs", str(EPOCHS),
            "--grace-period", str(EPOCHS), "--max-concurrent", "1", "--storage", str(storage), "--name", name,
            *extra]


def wait_until_saved_finished(folder: Path, trial: str, timeout: float = 60) -> None:
    """Until Tune's saved search state (on the storage) has `trial` finished: filling the disk before that save
    would test Tune's own window between a trial's end and its next state save, not this project."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in folder.glob("experiment_state-*.json"):
            with contextlib.suppress(OSError, ValueError):
                trials = [json.loads(entry[0]) for entry in json.loads(state.read_text())["trial_data"]]
                if any(t["trial_id"] == trial and t["status"] == "TERMINATED" for t in trials):
                    return
        time.sleep(0.2)
    raise AssertionError(f"trial {trial} not saved as finished in {folder} within {timeout:.0f}s")


def last_result(trial_folder: Path) -> dict[str, float]:
    return json.loads(trial_folder.joinpath("result.json").read_text().splitlines()[-1])


@pytest.mark.slow
def test_full_storage_stops_cleanly_and_resume_completes(ray_address: str, ray_env: dict[str, str],
                                                         toy_dataset: Path, toy_cache_dir: Path,
                                                         small_disk: Path) -> None:
    search = CliProcess(search_args(toy_dataset, toy_cache_dir, small_disk, "full", "--address", ray_address),
                        ray_env, REPO)
    try:
        first = search.wait_for(r"trial (\w+) finished at epoch").group(1)
        wait_until_saved_finished(small_disk / "full", first)
        filler = fill(small_disk)
        code = search.finish()
    finally:
        search.end_leftovers()
    assert code == 1, search.stderr[-3000:]
    assert "Traceback" not in search.stderr, search.stderr[-3000:]
    errors = [line for line in search.errors if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: --storage {small_disk} is full (No space left on device)"), search.stderr[-3000:]
    assert f"1 of {SAMPLES} trials finished" in errors[0], errors[0]
    assert errors[0].endswith("Free space on it and resume with:")
    command = search.errors[search.errors.index(errors[0]) + 1].strip()
    assert shlex.split(command)[-1] == "--resume"
    # what the finished trial reported is on the disk intact (nothing half-written over it)
    folder = small_disk / "full"
    finished = last_result(folder / f"trial_{first}")
    assert finished["epoch"] == EPOCHS
    assert not (folder / "leaderboard.csv").exists()  # no partial results passed off as final

    filler.unlink()
    resumed = subprocess.run(shlex.split(command), capture_output=True, text=True, env=ray_env, cwd=REPO,
                             timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trial {first} start" not in resumed.stdout  # kept, not run again
    table = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(table) == SAMPLES and table["trial_id"].is_unique, table
    assert set(table["status"]) == {"finished"}, table[["trial_id", "status"]]
    row = table.set_index("trial_id").loc[first]
    assert row["uar_score"] == finished["uar_score"] and row["uar_std"] == finished["uar_score_std"]
    assert row["uar_folds"] == " ".join(f"{finished[f'uar_score_fold{i}']:.4f}" for i in range(3))


def test_too_little_free_space_is_refused_before_ray(toy_dataset: Path, toy_cache_dir: Path, tmp_path: Path,
                                                     ray_env: dict[str, str]) -> None:
    disk = tmp_path / "tiny"
    mount_tmpfs(disk, "2m")
    try:
        done = subprocess.run([sys.executable, "-m", *search_args(toy_dataset, toy_cache_dir, disk, "tiny")],
                              capture_output=True, text=True, env=ray_env, cwd=REPO, timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"error: --storage {disk}: only 2.0 MB free"), done.stderr
    assert "Traceback" not in done.stderr
    assert "search " not in done.stdout  # refused before the search (and Ray) started


def test_a_write_that_does_not_fit_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """What the search's storage is written through (ours and Tune's files): a file is replaced only by complete
    content, and a failed write takes no space."""
    import pyarrow.fs as pafs

    from tune.engine.storage_full import out_of_space
    from tune.results.storage import RunStore, storage_filesystem

    disk = tmp_path / "small"
    mount_tmpfs(disk, "1m")
    try:
        store = RunStore(str(disk), "exp")
        store.write_bytes("state.json", b"old and complete")
        filler = fill(disk)
        free = os.statvfs(disk).f_bavail
        with pytest.raises(OSError) as raised:
            store.write_bytes("state.json", bytes(2 << 20))
        assert out_of_space(raised.value)
        assert store.read_bytes("state.json") == b"old and complete"
        assert sorted(p.name for p in (disk / "exp").iterdir()) == ["state.json"]  # no partial file left
        assert os.statvfs(disk).f_bavail == free
        filler.unlink()
        # the same through pyarrow's copy_files, as Tune persists checkpoints and its state
        source = tmp_path / "checkpoint"
        source.mkdir()
        (source / "fold0.pt").write_bytes(b"weights")
        pafs.copy_files(str(source), str(disk / "exp" / "checkpoint"), destination_filesystem=storage_filesystem(
            str(disk)))
        assert (disk / "exp" / "checkpoint" / "fold0.pt").read_bytes() == b"weights"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
