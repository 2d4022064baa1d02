"""Decode-once cache: every clip decoded once into an Arrow IPC file that all trials and folds memory-map.

The file name is a hash of everything that determines its content (paths, sizes, mtimes, sample rate, length),
so a changed input gives a new file and an unchanged one is reused. Files are written to a temporary name and
renamed into place, so concurrent builders (trials on a fresh node) never see a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.data.audio import ClipDecoder
from core.data.sources import EmbeddedAudio

CACHE_VERSION = 1
ROWS_PER_BATCH = 256


def default_cache_dir() -> Path:
    return Path(os.environ.get("AUDIOTUNE_CACHE", Path.home() / ".cache" / "audiotune"))


def cache_key(paths: Sequence[str], sample_rate: int, num_samples: int,
              embedded: EmbeddedAudio | None = None) -> str:
    """Hash of the inputs that determine the cache's bytes (a clip stored as bytes: its dataset's files and row)."""
    entries = []
    for index, path in enumerate(paths):
        if embedded is not None and embedded.has_bytes(index):
            entries.append([path, *embedded.identity(index)])
            continue
        stat = os.stat(path)
        entries.append([path, stat.st_size, stat.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "rate": sample_rate, "samples": num_samples, "files": entries})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class WaveformStore:
    """Read-only, memory-mapped view of a cache file: `store[indices]` -> float32 array [n, num_samples]."""

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
            return self._chunks[0][indices]
        which = np.searchsorted(self._starts, indices, side="right") - 1
        return np.stack([self._chunks[c][i - self._starts[c]] for c, i in zip(which, indices, strict=True)])


def open_cache(paths: Sequence[str], sample_rate: int, max_seconds: float, cache_dir: str | Path | None = None,
               progress: Callable[[str], None] | None = None, embedded: EmbeddedAudio | None = None) -> WaveformStore:
    """Return the store for these clips, decoding them first if no matching cache file exists. `embedded` says
    which clips are bytes in a dataset (their `paths` are keys) rather than files."""
    num_samples = int(round(sample_rate * max_seconds))
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    target = folder / f"clips-{cache_key(paths, sample_rate, num_samples, embedded)}.arrow"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _build(paths, ClipDecoder(sample_rate, num_samples), target, progress, embedded)
    elif progress:
        progress(f"decode cache: reusing {target} ({len(paths)} clips)")
    return WaveformStore(target)


def _build(paths: Sequence[str], decode: ClipDecoder, target: Path,
           progress: Callable[[str], None] | None, embedded: EmbeddedAudio | None = None) -> None:
    started = time.perf_counter()
    schema = pa.schema([("audio", pa.list_(pa.float32(), decode.num_samples)), ("length", pa.int32())])
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(handle)
    try:
        with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(paths), ROWS_PER_BATCH):
                decoded = [decode(paths[i], embedded.read(i) if embedded and embedded.has_bytes(i) else None)
                           for i in range(start, min(start + ROWS_PER_BATCH, len(paths)))]
                audio = np.stack([wave for wave, _ in decoded])
                flat = pa.array(audio.reshape(-1), type=pa.float32())
                writer.write_batch(pa.record_batch(
                    [pa.FixedSizeListArray.from_arrays(flat, decode.num_samples),
                     pa.array([length for _, length in decoded], type=pa.int32())], schema=schema))
                if progress:
                    progress(f"decode cache: {min(start + ROWS_PER_BATCH, len(paths))}/{len(paths)} clips")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    if progress:
        progress(f"decode cache: wrote {target} in {time.perf_counter() - started:.1f}s")
