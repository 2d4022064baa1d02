"""Checkpoints for the pretrained-loading tests, on any machine.

`tiny_whisper_checkpoint` writes a small Whisper in Hugging Face format (`save_pretrained`, safetensors, with a
`preprocessor_config.json`) into a folder, so the loading code path (slicing, strict loading, dtype) is tested
everywhere. The real weights are tested too where they are found: `AUDIOTUNE_TEST_WEIGHTS=DIR`, else the
`../shared/models` folder this project's machines have; elsewhere those tests are skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model, WhisperConfig, WhisperFeatureExtractor, WhisperModel

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "models"


def real_weights(name: str) -> Path:
    """Folder of the real checkpoint `name`, or skip the calling test with the reason."""
    root = Path(os.environ.get("AUDIOTUNE_TEST_WEIGHTS") or DEFAULT_WEIGHTS)
    folder = root / name
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"real weights {name!r} not found in {root} (set AUDIOTUNE_TEST_WEIGHTS=DIR to test them)")
    return folder


def tiny_whisper_checkpoint(folder: Path, num_mel_bins: int = 80, dtype: torch.dtype = torch.float32,
                            seed: int = 0) -> Path:
    """A 2-layer, 64-wide Whisper with the full 1500-row positional table, saved as a real checkpoint would be."""
    torch.manual_seed(seed)
    config = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=128,
                           num_mel_bins=num_mel_bins, max_source_positions=1500, vocab_size=100,
                           max_target_positions=32, pad_token_id=1, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1)
    WhisperModel(config).to(dtype).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_whisper_checkpoint(tmp_path_factory.mktemp("tiny-whisper"))


def tiny_wav2vec2_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide Wav2Vec2 (the micro preset's shape), saved as a real checkpoint would be."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_kernel=(10, 8, 8), conv_stride=(5, 8, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, apply_spec_augment=False)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_wav2vec2_checkpoint(tmp_path_factory.mktemp("tiny-wav2vec2"))
