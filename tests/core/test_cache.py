"""Decode-once cache: mono mix, 16 kHz, crop/pad, keyed reuse/rebuild, and memory-mapped reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile
from scipy.signal import resample_poly

from core.data import cache as cache_module
from core.data.audio import ClipDecoder
from core.data.cache import WaveformStore, open_cache
from core.data.dataset import AudioData
from core.errors import DataError


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_float_wav(path: Path, audio: np.ndarray, rate: int) -> str:
    """32-bit float WAV: lossless, so the expected values can be computed from the array itself."""
    soundfile.write(path, audio, rate, subtype="FLOAT")
    return str(path)


def peak_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()])


def test_stereo_is_mixed_by_averaging_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    left = tone(440, 0.5, 16000)
    right = (0.3 * rng.standard_normal(len(left))).astype(np.float32)
    path = write_float_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000)
    store = open_cache([path], 16000, 0.5, tmp_path / "cache")
    expected = (left.astype(np.float64) + right.astype(np.float64)) / 2
    np.testing.assert_allclose(store[np.array([0])][0], expected, atol=1e-7)
    assert not np.allclose(store[np.array([0])][0], left, atol=1e-3)  # not just the first channel


def test_resampling_keeps_length_and_pitch(tmp_path: Path) -> None:
    """44.1 kHz -> 16 kHz: duration and a tone's frequency survive; content above 8 kHz is filtered, not aliased."""
    low = write_float_wav(tmp_path / "low.wav", tone(1000, 0.5, 44100), 44100)
    high = write_float_wav(tmp_path / "high.wav", tone(7000, 0.5, 44100), 44100)
    alias = write_float_wav(tmp_path / "alias.wav", tone(12000, 0.5, 44100), 44100)
    store = open_cache([low, high, alias], 16000, 1.0, tmp_path / "cache")
    waves = store[np.arange(3)]
    assert waves.shape == (3, 16000)
    assert store.lengths.tolist() == [8000, 8000, 8000]  # 0.5 s at 16 kHz
    assert np.all(waves[:, 8000:] == 0)
    assert abs(peak_frequency(waves[0, :8000], 16000) - 1000) <= 2
    assert abs(peak_frequency(waves[1, :8000], 16000) - 7000) <= 2
    # A naive decimation would fold 12 kHz onto 4 kHz at full strength; a proper resampler removes it.
    assert np.sqrt(np.mean(waves[2, :8000] ** 2)) < 0.01 * np.sqrt(np.mean(waves[0, :8000] ** 2))
    # Agrees with an independent polyphase resampler away from the edges.
    reference = resample_poly(tone(1000, 0.5, 44100).astype(np.float64), 160, 441)
    np.testing.assert_allclose(waves[0, 200:7800], reference[200:7800], atol=5e-3)


def test_crop_and_pad_with_lengths(tmp_path: Path) -> None:
    long_audio = tone(300, 1.5, 16000)
    short_audio = tone(300, 0.3, 16000)
    long_path = write_float_wav(tmp_path / "long.wav", long_audio, 16000)
    short_path = write_float_wav(tmp_path / "short.wav", short_audio, 16000)
    store = open_cache([long_path, short_path], 16000, 1.0, tmp_path / "cache")
    waves = store[np.array([0, 1])]
    assert store.num_samples == 16000 and len(store) == 2
    assert store.lengths.tolist() == [16000, 4800]
    np.testing.assert_array_equal(waves[0], long_audio[:16000])
    np.testing.assert_array_equal(waves[1, :4800], short_audio)
    assert np.all(waves[1, 4800:] == 0)


def test_cache_is_reused_when_inputs_are_unchanged(tmp_path: Path) -> None:
    paths = [write_float_wav(tmp_path / f"c{i}.wav", tone(200 + 100 * i, 0.4, 16000), 16000) for i in range(3)]
    first = open_cache(paths, 16000, 0.5, tmp_path / "cache")
    built = first.path.stat().st_mtime_ns
    messages: list[str] = []
    second = open_cache(paths, 16000, 0.5, tmp_path / "cache", progress=messages.append)
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == built  # not rewritten
    assert any("reusing" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [first.path.name]  # no temp files left
    np.testing.assert_array_equal(second[np.arange(3)], first[np.arange(3)])


def test_cache_is_rebuilt_when_an_input_changes(tmp_path: Path) -> None:
    paths = [write_float_wav(tmp_path / f"c{i}.wav", tone(200 + 100 * i, 0.4, 16000), 16000) for i in range(2)]
    first = open_cache(paths, 16000, 0.5, tmp_path / "cache")
    old = first[np.arange(2)].copy()
    # Same size, new content and a new mtime: the key must change and the new content must be decoded.
    write_float_wav(tmp_path / "c1.wav", tone(900, 0.4, 16000), 16000)
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = open_cache(paths, 16000, 0.5, tmp_path / "cache")
    assert second.path != first.path and first.path.exists()
    new = second[np.arange(2)]
    np.testing.assert_array_equal(new[0], old[0])
    assert abs(peak_frequency(new[1, :6400], 16000) - 900) <= 3
    # A mere touch (content identical) also gives a new key: the key is stat-based by design.
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert open_cache(paths, 16000, 0.5, tmp_path / "cache").path not in (first.path, second.path)
    # And so do the decode settings.
    assert open_cache(paths, 16000, 0.25, tmp_path / "cache").path.name != second.path.name


def test_store_is_memory_mapped(tmp_path: Path) -> None:
    """Trials and folds share the page cache: opening the store must not copy the waveforms into memory."""
    paths = [write_float_wav(tmp_path / f"c{i}.wav", tone(200 + 10 * i, 1.0, 16000), 16000) for i in range(40)]
    path = open_cache(paths, 16000, 1.0, tmp_path / "cache").path
    payload = 40 * 16000 * 4
    before = pa.total_allocated_bytes()
    store = WaveformStore(path)
    allocated = pa.total_allocated_bytes() - before
    assert allocated < payload // 20, f"opening the store allocated {allocated} bytes for a {payload}-byte payload"
    for chunk in store._chunks:  # views into the mapped file: read-only, owning no memory
        assert not chunk.flags.writeable and not chunk.flags.owndata
    first = store[np.array([0])]
    first[:] = 0  # indexing hands out a private copy: writing to it cannot touch the cache
    assert np.abs(store[np.array([0])]).max() > 0.4


def test_multi_chunk_store_indexing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large sets are written in several record batches; rows must still come back in manifest order."""
    monkeypatch.setattr(cache_module, "ROWS_PER_BATCH", 3)
    audio = [tone(100 + 50 * i, 0.1 + 0.01 * i, 16000) for i in range(8)]
    paths = [write_float_wav(tmp_path / f"c{i}.wav", a, 16000) for i, a in enumerate(audio)]
    store = open_cache(paths, 16000, 0.2, tmp_path / "cache")
    assert len(store._chunks) == 3 and len(store) == 8
    order = np.array([7, 0, 3, 5, 2])
    waves = store[order]
    for out, i in zip(waves, order, strict=True):
        np.testing.assert_array_equal(out[: len(audio[i])], audio[i])
    assert store.lengths.tolist() == [len(a) for a in audio]


def test_toy_cache_rows_follow_the_manifest(toy_data: AudioData) -> None:
    """Row i of the cache is manifest row i, decoded independently here (16 kHz mono rows: read + crop/pad)."""
    checked = 0
    for row, path in enumerate(toy_data.manifest.paths):
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != 16000 or audio.shape[1] != 1:
            continue
        n = min(len(audio), 16000)
        np.testing.assert_array_equal(toy_data.waveforms[np.array([row])][0, :n], audio[:n, 0])
        assert toy_data.waveforms.lengths[row] == n
        checked += 1
    assert checked == 30  # 36 clips less the 6 stereo 44.1 kHz ones


def test_toy_stereo_clips_are_mixed_and_resampled(toy_data: AudioData) -> None:
    rows = [i for i, p in enumerate(toy_data.manifest.paths) if soundfile.info(p).channels == 2]
    assert len(rows) == 6
    for row in rows:
        audio, rate = soundfile.read(toy_data.manifest.paths[row], dtype="float64", always_2d=True)
        assert rate == 44100
        expected = resample_poly(audio.mean(axis=1), 160, 441)[:16000]
        n = len(expected)
        assert toy_data.waveforms.lengths[row] == n
        cached = toy_data.waveforms[np.array([row])][0, :n]
        np.testing.assert_allclose(cached[100:-100], expected[100:-100], atol=2e-2)


def test_decoder_rejects_non_finite_and_undecodable(tmp_path: Path) -> None:
    bad = tone(300, 0.1, 16000)
    bad[10] = np.nan
    path = write_float_wav(tmp_path / "nan.wav", bad, 16000)
    with pytest.raises(DataError, match="nan.wav.*NaN"):
        ClipDecoder(16000, 1600)(path)
    (tmp_path / "junk.flac").write_bytes(b"\x00\x01junk" * 50)
    with pytest.raises(DataError, match="junk.flac.*cannot be decoded"):
        ClipDecoder(16000, 1600)(str(tmp_path / "junk.flac"))
