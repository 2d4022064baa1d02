"""Whisper classifier and its featurizer: sized to the clip, pretrained weights loaded exactly, eval deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.torch import load_file
from support.checkpoints import real_weights
from transformers import WhisperFeatureExtractor

from core.checks import check_config
from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError
from core.features import ClipNormalizedLogMel, SpecAugment, WhisperLogMel
from core.models import MODELS, forward_batch
from core.models.whisper import SIZE_PRESETS, whisper_positions


def config(**overrides: object) -> Config:
    base = {"data.max_seconds": 0.5, "model.projection_dim": 16, "train.device": "cpu"}
    return check_config(Config().with_overrides({**base, **overrides}))


def frames_for(seconds: float, rate: int = 16000, hop: int = 160) -> int:
    """Frames Whisper gets, measured with torchaudio's centred STFT (which adds one frame) and made even."""
    n = int(round(seconds * rate))
    centred = torchaudio.transforms.MelSpectrogram(rate, n_fft=400, hop_length=hop, n_mels=80)(torch.zeros(n))
    return 2 * ((centred.shape[-1] - 1) // 2)


def speechlike(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 16000))
    t = np.arange(n) / 16000
    rows = [0.3 * np.sin(2 * np.pi * (200 + 50 * b) * t) + 0.05 * rng.standard_normal(n) for b in range(batch)]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def as_batch(waveforms: torch.Tensor) -> Batch:
    """A batch as `make_batch` would give it for these waveforms (two classes, one word, unknown ages)."""
    n = len(waveforms)
    return Batch(rows=np.arange(n), waveforms=waveforms, lengths=torch.full((n,), waveforms.shape[1]),
                 targets=torch.arange(n) % 2, word_ids=torch.zeros(n, dtype=torch.int64),
                 ages=torch.full((n,), float("nan")))


@pytest.mark.parametrize("size", ["micro", "tiny", "base"])
def test_random_presets_build_and_run(size: str) -> None:
    cfg = config(**{"model.size": size})
    spec = MODELS.get("whisper")
    torch.manual_seed(0)
    model = spec.build(cfg, 3).eval()
    encoder = model.encoder
    assert encoder.config.d_model == SIZE_PRESETS[size]["d_model"]
    assert len(encoder.layers) == SIZE_PRESETS[size]["encoder_layers"]
    frames = frames_for(0.5)
    batch = as_batch(speechlike(2, 0.5))
    with torch.no_grad():
        out = model(torch.randn(2, 80, frames), batch)
    assert out["logits"].shape == (2, 3) and out["embedding"].shape == (2, 16)
    assert torch.isfinite(out["logits"]).all()
    with pytest.raises(ValueError), torch.no_grad():  # Whisper takes exactly 2 * positions frames
        model(torch.randn(2, 80, frames + 2), batch)


def test_known_whisper_shapes() -> None:
    """The presets mirror OpenAI's tiny and base encoders (d_model, layers, heads, ffn)."""
    assert SIZE_PRESETS["tiny"] == {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
                                    "encoder_ffn_dim": 1536}
    assert SIZE_PRESETS["base"] == {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8,
                                    "encoder_ffn_dim": 2048}


@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.37, 2.0])
def test_positional_table_is_sized_from_frames(seconds: float) -> None:
    cfg = config(**{"data.max_seconds": seconds, "model.size": "micro"})
    frames = frames_for(seconds)
    assert whisper_positions(cfg) == frames // 2
    model = MODELS.get("whisper").build(cfg, 2)
    assert model.encoder.embed_positions.weight.shape == (frames // 2, SIZE_PRESETS["micro"]["d_model"])
    featurizer = MODELS.get("whisper").featurizer(cfg).eval()
    batch = as_batch(speechlike(2, seconds))
    assert featurizer(batch).shape == (2, 80, frames)  # exactly the frames the encoder demands
    with torch.no_grad():
        assert forward_batch(model.eval(), featurizer, batch)["logits"].shape == (2, 2)


@pytest.fixture(params=["tiny (save_pretrained)", "whisper-base", "whisper-tiny.en"])
def checkpoint(request: pytest.FixtureRequest, tiny_whisper: Path) -> Path:
    """The small checkpoint made here (every machine), and the real weights where they are found."""
    return tiny_whisper if request.param.startswith("tiny") else real_weights(request.param)


def test_pretrained_weights_are_loaded_exactly(checkpoint: Path) -> None:
    """Every encoder tensor equals the checkpoint (fp16 upcast); the positional table is its first n rows."""
    folder = checkpoint
    cfg = config(**{"model.pretrained": str(folder), "data.max_seconds": 1.0})
    n = frames_for(1.0) // 2
    checkpoint = load_file(str(folder / "model.safetensors"))
    encoder_keys = {k.removeprefix("encoder."): v for k, v in checkpoint.items() if k.startswith("encoder.")}
    assert len(encoder_keys) > 10
    model = MODELS.get("whisper").build(cfg, 2)
    state = model.encoder.state_dict()
    assert set(state) == set(encoder_keys)
    table = encoder_keys["embed_positions.weight"]
    assert table.shape[0] == 1500 and state["embed_positions.weight"].shape[0] == n
    assert torch.equal(state["embed_positions.weight"], table[:n].float())
    for key, value in encoder_keys.items():
        if key != "embed_positions.weight":
            assert state[key].dtype == torch.float32
            assert torch.equal(state[key], value.float()), key
    # And it runs on the featurizer's output.
    featurizer = MODELS.get("whisper").featurizer(cfg).eval()
    with torch.no_grad():
        logits = forward_batch(model.eval(), featurizer, as_batch(speechlike(2, 1.0)))["logits"]
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_pretrained_rejects_wrong_n_mels_and_too_long_clips(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match=r"features\.n_mels=64.*trained with n_mels=80"):
        MODELS.get("whisper").build(config(**{"model.pretrained": str(checkpoint), "features.n_mels": 64}), 2)
    with pytest.raises(ConfigError, match=r"data\.max_seconds.*1500"):
        MODELS.get("whisper").build(config(**{"model.pretrained": str(checkpoint), "data.max_seconds": 31}), 2)


def test_too_short_clip_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.max_seconds"):
        config(**{"data.max_seconds": 0.01})


def test_log_mel_matches_whisper_feature_extractor() -> None:
    """Pretrained Whisper expects its own log-mel recipe; transformers' numpy extractor is the reference."""
    wave = torch.zeros(16000)
    wave[:11200] = speechlike(1, 0.7)[0]  # a 0.7 s clip zero-padded to 1 s, as the cache stores it
    ours = WhisperLogMel(16000, 400, 160, 80, 100)(wave[None])[0].numpy()
    reference = WhisperFeatureExtractor(feature_size=80)(wave.numpy(), sampling_rate=16000,
                                                         return_tensors="np")["input_features"][0]
    assert ours.shape == (80, 100)
    np.testing.assert_allclose(ours, reference[:, :100], atol=1e-4)


def test_clip_normalised_log_mel_uses_the_real_frames_only() -> None:
    """features.normalize=clip: over a clip's real frames every mel band averages 0 and the clip has unit variance;
    padding frames are 0, so the same clip padded to another length gives the same real frames; gain drops out."""
    clip = speechlike(1, 0.7)[0]
    short, long = torch.zeros(12000), torch.zeros(16000)
    short[:11200], long[:11200] = clip, clip
    real = 11200 // 160  # frames t whose centre, sample t * 160, is one of the clip's 11200
    features = ClipNormalizedLogMel(16000, 400, 160, 80, 100)(torch.stack([long, 3 * long]), torch.tensor([real] * 2))
    torch.testing.assert_close(features[:, :, :real].mean(dim=-1), torch.zeros(2, 80), rtol=0, atol=1e-5)
    torch.testing.assert_close(features[:, :, :real].pow(2).mean(dim=(1, 2)), torch.ones(2), rtol=0, atol=1e-3)
    assert torch.equal(features[:, :, real:], torch.zeros_like(features[:, :, real:]))
    torch.testing.assert_close(features[1], features[0], rtol=0, atol=1e-4)  # 3x louder, same features
    shorter = ClipNormalizedLogMel(16000, 400, 160, 80, 75)(short[None], torch.tensor([real]))[0]  # 0.75 s window
    torch.testing.assert_close(shorter[:, :real], features[0, :, :real], rtol=0, atol=1e-4)
    plain = WhisperLogMel(16000, 400, 160, 80, 100)(long[None])[0]  # Whisper's recipe keeps the band levels
    assert not torch.allclose(plain[:, :real].mean(dim=-1), torch.zeros(80), atol=0.1)


def test_clip_normalisation_is_for_models_from_scratch(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match=r"features\.normalize='clip'.*use features\.normalize=whisper"):
        MODELS.get("whisper").check_pretrained(config(**{"model.pretrained": str(checkpoint),
                                                         "features.normalize": "clip"}))
    with pytest.raises(ConfigError, match=r"features\.normalize='cmvn': unknown log-mel normalisation.*clip, whisper"):
        check_config(Config().with_overrides({"features.normalize": "cmvn"}))


def test_spec_augment_changes_training_features_only() -> None:
    cfg = config(**{"augment.time_mask": 10, "augment.time_masks": 2, "augment.freq_mask": 8,
                    "augment.freq_masks": 2, "data.max_seconds": 1.0})
    featurizer = MODELS.get("whisper").featurizer(cfg)
    plain = MODELS.get("whisper").featurizer(config(**{"data.max_seconds": 1.0})).eval()
    batch = as_batch(speechlike(4, 1.0))
    clean = plain(batch)
    featurizer.train()
    torch.manual_seed(0)
    augmented = featurizer(batch)
    assert augmented.shape == clean.shape
    changed = augmented != clean
    assert changed.any()
    assert torch.all(augmented[changed] == 0)  # masks fill with zero, everything else is untouched
    # Some frequency rows are masked entirely in every example (frequency masks span all frames) ...
    assert all(bool((augmented[b] == 0).all(dim=1).any()) for b in range(4))
    # ... and independently per example (iid masks).
    assert not torch.equal(changed[0], changed[1])
    featurizer.eval()
    first, second = featurizer(batch), featurizer(batch)
    assert torch.equal(first, second) and torch.equal(first, clean)


def test_spec_augment_off_is_identity_in_training() -> None:
    augment = SpecAugment(Config().augment).train()
    features = torch.randn(2, 80, 100)
    assert torch.equal(augment(features), features)


def test_eval_model_is_deterministic() -> None:
    """Dropout is off in eval mode: validation and test numbers do not depend on RNG state."""
    cfg = config(**{"model.dropout": 0.5, "model.size": "micro"})
    model = MODELS.get("whisper").build(cfg, 2).eval()
    featurizer = MODELS.get("whisper").featurizer(cfg).eval()
    batch = as_batch(speechlike(3, 0.5))
    with torch.no_grad():
        torch.manual_seed(1)
        a = forward_batch(model, featurizer, batch)["logits"]
        torch.manual_seed(2)
        b = forward_batch(model, featurizer, batch)["logits"]
        model.train()
        c = forward_batch(model, featurizer, batch)["logits"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # dropout 0.5 does act in training mode
