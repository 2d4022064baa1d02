"""Building the decode cache: parallel decode gives the serial build's bytes, float16 storage, and one builder when
several processes need the same cache at once (the others wait and map its file)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

from core.data import cache as cache_module
from core.data.cache import open_cache

ROOT = Path(__file__).resolve().parents[2]


def write_clips(folder: Path, count: int) -> list[str]:
    """Real files the decoder must work on: mono 16 kHz WAV, stereo 44.1 kHz FLAC (mixed and resampled), and
    lengths below and above the cut."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rate, seconds = (44100, 0.7) if i % 3 == 0 else (16000, 0.3 + 0.1 * (i % 7))
        audio = (0.3 * rng.standard_normal((int(rate * seconds), 2 if i % 3 == 0 else 1))).astype(np.float32)
        path = folder / (f"c{i:03d}.flac" if i % 3 == 0 else f"c{i:03d}.wav")
        soundfile.write(path, audio, rate)
        paths.append(str(path))
    return paths


def test_parallel_build_equals_serial_build_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "CLIPS_PER_TASK", 3)  # many tasks, finishing out of order
    monkeypatch.setattr(cache_module, "ROWS_PER_BATCH", 7)  # record batches that cut across tasks
    paths = write_clips(tmp_path / "audio", 40)
    serial = open_cache(paths, 16000, 0.5, tmp_path / "serial", workers=1)
    messages: list[str] = []
    parallel = open_cache(paths, 16000, 0.5, tmp_path / "parallel", progress=messages.append, workers=3)
    assert any("3 worker(s)" in m for m in messages)
    assert serial.path.name == parallel.path.name  # the key does not depend on the workers
    assert serial.path.read_bytes() == parallel.path.read_bytes()
    np.testing.assert_array_equal(parallel[np.arange(40)], serial[np.arange(40)])
    np.testing.assert_array_equal(parallel.lengths, serial.lengths)
    assert (serial.lengths == 8000).sum() > 0 and (serial.lengths < 8000).sum() > 0  # crops and pads both


def test_progress_lines_give_rate_and_eta(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", 20)
    messages: list[str] = []
    open_cache(paths, 16000, 0.5, tmp_path / "cache", progress=messages.append, workers=2)
    counted = [m for m in messages if "clips/s" in m]
    assert counted[-1].startswith("decode cache: 20/20 clips, ") and "ETA 0s" in counted[-1]
    assert len(counted) == 10  # about every 10 %: a Ray worker's log stays short


def test_float16_storage_halves_the_file_within_fp16_rounding(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", 12)
    full = open_cache(paths, 16000, 0.5, tmp_path / "cache")
    half = open_cache(paths, 16000, 0.5, tmp_path / "cache", dtype="float16")
    assert half.path != full.path  # the dtype is part of the key: neither replaces the other
    assert 0.45 < half.path.stat().st_size / full.path.stat().st_size < 0.55
    waves = half[np.arange(12)]
    assert waves.dtype == np.float32  # widened on read: the featurizer sees what it always did
    expected = full[np.arange(12)]
    # fp16 keeps 11 significant bits: relative error <= 2**-11, absolute 2**-24 near zero (subnormals)
    np.testing.assert_allclose(waves, expected, rtol=2**-11, atol=2**-24)
    assert not np.array_equal(waves, expected)  # really rounded
    np.testing.assert_array_equal(half.lengths, full.lengths)


BUILDER = textwrap.dedent("""
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    from core.data.cache import open_cache
    folder, me = Path(sys.argv[1]), sys.argv[2]
    paths = sorted(str(p) for p in (folder / "audio").iterdir())
    (folder / f"ready-{me}").touch()
    while not all((folder / f"ready-{who}").exists() for who in ("a", "b")):  # start together
        time.sleep(0.01)
    store = open_cache(paths, 16000, 0.5, folder / "cache", progress=lambda m: print(m, flush=True))
    print("RESULT", store.path.name, hashlib.sha256(store[np.arange(len(store))].tobytes()).hexdigest())
""")


@pytest.mark.slow  # two fresh interpreters importing torch: ~20 s on 2 shared cores
def test_two_processes_starting_together_build_once(tmp_path: Path) -> None:
    write_clips(tmp_path / "audio", 300)  # a build long enough (~1-2 s) that the second process must wait
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path), who], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for who in ("a", "b")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    logs = [out for out, _ in outputs]
    assert sum("decode cache: wrote" in log for log in logs) == 1, logs  # one build
    waited = [log for log in logs if "decode cache: wrote" not in log][0]
    assert "another process is building" in waited and "built by another process" in waited, waited
    results = {line for log in logs for line in log.splitlines() if line.startswith("RESULT")}
    assert len(results) == 1  # the same file, the same samples
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [results.pop().split()[1]]  # no lock, no temp
    digest = hashlib.sha256(open_cache(sorted(str(p) for p in (tmp_path / "audio").iterdir()), 16000, 0.5,
                                       tmp_path / "cache")[np.arange(300)].tobytes()).hexdigest()
    assert digest in "".join(logs)
