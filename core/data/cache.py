"""Decode-once cache: every clip decoded once into an Arrow IPC file that all trials and folds memory-map.

The file name is a hash of everything that determines its content (paths, sizes, mtimes, sample rate, length,
storage dtype), so a changed input gives a new file and an unchanged one is reused. One process per cache folder
builds a missing file while holding a lock next to it; others that need the same file wait on that lock and then
map what it wrote (trials starting together on a fresh node decode the clips once, not once each). The file is
written to a temporary name and renamed into place, so nobody ever maps a half-written cache, even a process that
does not take the lock. Clips are decoded in `workers` processes, in order: the file's bytes do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pyarrow as pa
from filelock import FileLock

from core.data.audio import ClipDecoder
from core.data.sources import EmbeddedAudio

CACHE_VERSION = 1
ROWS_PER_BATCH = 256
CLIPS_PER_TASK = 32  # a worker's share at a time: large enough that pickling the results costs little
DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
DEFAULT_MAX_WORKERS = 4  # decoding is I/O + resampling: beyond ~4 processes a node's disk, not its CPUs, limits it


def default_cache_dir() -> Path:
    return Path(os.environ.get("AUDIOTUNE_CACHE", Path.home() / ".cache" / "audiotune"))


def default_workers() -> int:
    return min(DEFAULT_MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def cache_key(paths: Sequence[str], sample_rate: int, num_samples: int, dtype: str = "float32",
              embedded: EmbeddedAudio | None = None) -> str:
    """Hash of the inputs that determine the cache's bytes (a clip stored as bytes: its dataset's files and row)."""
    entries = []
    for index, path in enumerate(paths):
        if embedded is not None and embedded.has_bytes(index):
            entries.append([path, *embedded.identity(index)])
            continue
        stat = os.stat(path)
        entries.append([path, stat.st_size, stat.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "rate": sample_rate, "samples": num_samples, "dtype": dtype,
                       "files": entries})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class WaveformStore:
    """Read-only, memory-mapped view of a cache file: `store[indices]` -> float32 array [n, num_samples] (a float16
    cache is widened on read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        self.num_samples = table.schema.field("audio").type.list_size
        self._chunks = [chunk.values.to_numpy(zero_copy_only=True).reshape(-1, self.num_samples)
                        for chunk in table.column("audio").chunks]
        self.lengths = table.column("length").to_numpy().astype(np.int64)
        self._starts = np.cumsum([0] + [len(chunk) for chunk in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if len(self._chunks) == 1:
            rows = self._chunks[0][indices]
        else:
            which = np.searchsorted(self._starts, indices, side="right") - 1
            rows = np.stack([self._chunks[c][i - self._starts[c]] for c, i in zip(which, indices, strict=True)])
        return rows.astype(np.float32, copy=False)


def open_cache(paths: Sequence[str], sample_rate: int, max_seconds: float, cache_dir: str | Path | None = None,
               progress: Callable[[str], None] | None = None, dtype: str = "float32",
               workers: int = 0, embedded: EmbeddedAudio | None = None) -> WaveformStore:
    """Return the store for these clips, decoding them first (in `workers` processes; 0: min(4, CPUs)) if no
    matching cache file exists; if another process is building it, wait for that one and reuse its file.
    `embedded` says which clips are bytes in a dataset (their `paths` are keys) rather than files."""
    num_samples = int(round(sample_rate * max_seconds))
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    target = folder / f"clips-{cache_key(paths, sample_rate, num_samples, dtype, embedded)}.arrow"
    if target.exists():
        if progress:
            progress(f"decode cache: reusing {target} ({len(paths)} clips)")
        return WaveformStore(target)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(target, progress, "decode cache"):
        if target.exists():  # built by the process we waited for
            if progress:
                progress(f"decode cache: reusing {target}, built by another process ({len(paths)} clips)")
        else:
            _build(paths, sample_rate, num_samples, target, progress, dtype, workers or default_workers(),
                   embedded)
    return WaveformStore(target)


class exclusive:  # noqa: N801  (used as a context manager, like a function)
    """Hold the lock file `<target>.lock` for one block; say so when another process holds it and this one waits.
    (filelock takes an flock on Unix: the kernel drops it when its holder dies, so a killed builder blocks no one.)"""

    def __init__(self, target: Path, progress: Callable[[str], None] | None, what: str) -> None:
        self.lock = FileLock(str(target) + ".lock")
        self.target, self.progress, self.what = target, progress, what

    def __enter__(self) -> None:
        try:
            self.lock.acquire(blocking=False)
        except TimeoutError:  # filelock's Timeout is a TimeoutError
            if self.progress:
                self.progress(f"{self.what}: another process is building {self.target.name}; waiting for it")
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        # The lock file goes once the target is in place: whoever still waits on it then finds the target, and
        # later processes never take the lock (they see the target first), so no lock is needed on a new file.
        if self.target.exists():
            Path(self.lock.lock_file).unlink(missing_ok=True)
        self.lock.release()


Clip = tuple[str, bytes | None]  # a file's path, or a dataset clip's key and its encoded bytes


def _decode_all(clips: Sequence[Clip], decode: ClipDecoder) -> list[tuple[np.ndarray, int]]:
    return [decode(path, data) for path, data in clips]


def _decoded(clips: Sequence[Clip], decode: ClipDecoder, workers: int) -> Iterator[tuple[np.ndarray, int]]:
    """(waveform, length) of every clip, in the order of `clips`."""
    tasks = [clips[start:start + CLIPS_PER_TASK] for start in range(0, len(clips), CLIPS_PER_TASK)]
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield from _decode_all(task, decode)
        return
    # Not fork: a parent with threads (torch's intra-op pool, Ray's, a checks pass that built a model) can fork while
    # one of them holds a lock, and the children then wait on it forever (seen here in tune.run). The forkserver is
    # a fresh process that imports the decoder once and forks the workers from there, without threads.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["core.data.audio"])
    else:
        context = multiprocessing.get_context("spawn")
    done = 0
    try:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            for decoded in pool.map(_decode_all, tasks, [decode] * len(tasks)):
                done += 1
                yield from decoded
    except BrokenProcessPool:
        # Workers re-import the caller's main script: one without an `if __name__ == "__main__":` guard (or killed
        # workers) breaks the pool. The build goes on in this process rather than fail.
        for task in tasks[done:]:
            yield from _decode_all(task, decode)


class _Meter:
    """The build's progress: a tqdm bar when stderr is a terminal, else a line with rate and ETA through `progress`
    about every 10 % (logs of batch jobs and Ray workers stay short)."""

    def __init__(self, total: int, progress: Callable[[str], None] | None) -> None:
        self.total, self.progress, self.done = total, progress, 0
        self.started = self.last = time.perf_counter()
        self.bar = None
        if progress is not None and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", desc="decode cache", file=sys.stderr)
        self.step = max(1, total // 10)

    def advance(self, count: int) -> None:
        before, self.done = self.done, self.done + count
        if self.bar is not None:
            self.bar.update(count)
        elif self.progress is not None and (self.done // self.step > before // self.step or self.done == self.total):
            elapsed = time.perf_counter() - self.started
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.progress(f"decode cache: {self.done}/{self.total} clips, {rate:.0f} clips/s, ETA {eta:.0f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _build(paths: Sequence[str], sample_rate: int, num_samples: int, target: Path,
           progress: Callable[[str], None] | None, dtype: str, workers: int,
           embedded: EmbeddedAudio | None = None) -> None:
    started = time.perf_counter()
    decode = ClipDecoder(sample_rate, num_samples)
    value_type = DTYPES[dtype]
    schema = pa.schema([("audio", pa.list_(value_type, num_samples)), ("length", pa.int32())])
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(handle)
    meter = _Meter(len(paths), progress)
    try:
        with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            items = [(path, embedded.read(i) if embedded and embedded.has_bytes(i) else None)
                     for i, path in enumerate(paths)]
            clips = _decoded(items, decode, workers)
            for start in range(0, len(paths), ROWS_PER_BATCH):
                decoded = []
                for _ in range(min(ROWS_PER_BATCH, len(paths) - start)):
                    decoded.append(next(clips))
                    meter.advance(1)
                audio = np.stack([wave for wave, _ in decoded]).astype(value_type.to_pandas_dtype())
                flat = pa.array(audio.reshape(-1), type=value_type)
                writer.write_batch(pa.record_batch(
                    [pa.FixedSizeListArray.from_arrays(flat, num_samples),
                     pa.array([length for _, length in decoded], type=pa.int32())], schema=schema))
        os.replace(temporary, target)
    finally:
        meter.close()
        if os.path.exists(temporary):
            os.unlink(temporary)
    if progress:
        progress(f"decode cache: wrote {target} ({dtype}, {workers} worker(s)) in {time.perf_counter() - started:.1f}s")
