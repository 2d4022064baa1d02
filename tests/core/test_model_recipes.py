"""Model recipes right in every corner: Whisper's positional table stays frozen, pretrained weights load in fp32,
frozen parts stay in eval mode while the rest trains, and Whisper can pool over the frames of real audio only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from transformers import Wav2Vec2Config, Wav2Vec2Model, WhisperConfig, WhisperModel

from core.checks import check_config
from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError
from core.models import MODELS, forward_batch
from core.models.wav2vec2 import SIZE_PRESETS as WAV2VEC2_PRESETS

SECONDS = 0.5  # 50 mel frames at the 10 ms hop, 25 Whisper encoder frames of 20 ms
RESNET = {"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024}


def config(**overrides: object) -> Config:
    base = {"data.max_seconds": SECONDS, "model.projection_dim": 16, "model.size": "micro", "train.device": "cpu"}
    return Config().with_overrides({**base, **overrides}).validate()


def batch_of(lengths: list[int], seconds: float = SECONDS, seed: int = 0) -> Batch:
    """Clips of `lengths` real samples, zero-padded to `seconds` as the cache stores them."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * 16000))
    waves = torch.zeros(len(lengths), total)
    for row, n in enumerate(lengths):
        waves[row, :n] = torch.tensor(0.3 * rng.standard_normal(n), dtype=torch.float32)
    n = len(lengths)
    return Batch(rows=np.arange(n), waveforms=waves, lengths=torch.tensor(lengths), targets=torch.arange(n) % 2,
                 word_ids=torch.zeros(n, dtype=torch.int64), ages=torch.full((n,), math.nan))


def save_tiny_whisper(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny encoder-decoder Whisper checkpoint (80 mels, 1 s of positions) written with `save_pretrained`."""
    torch.manual_seed(5)
    hf_config = WhisperConfig(num_mel_bins=80, max_source_positions=50, d_model=64, encoder_layers=1,
                              decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                              encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=64, max_target_positions=16,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(hf_config).to(dtype).save_pretrained(folder)
    return folder


def save_tiny_wav2vec2(folder: Path, dtype: torch.dtype) -> Path:
    torch.manual_seed(6)
    Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2_PRESETS["micro"])).to(dtype).save_pretrained(folder)
    return folder


def one_adamw_step(model: torch.nn.Module, cfg: Config) -> None:
    """One AdamW step (weight decay on) over the parameters train_fold gives the optimiser."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    batch = batch_of([8000, 4000])
    logits = forward_batch(model.train(), MODELS.get("whisper").featurizer(cfg), batch)["logits"]
    torch.nn.functional.cross_entropy(logits, batch.targets).backward()
    optimizer.step()


# --- 1. Whisper's positional table ----------------------------------------------------------------------------
@pytest.mark.parametrize("pretrained", [True, False], ids=["pretrained", "from-scratch"])
@pytest.mark.parametrize("train_positions", [False, True])
def test_positional_table_stays_frozen_unless_asked(pretrained: bool, train_positions: bool, tmp_path: Path) -> None:
    """Whisper's table is fixed sinusoids (frozen in the checkpoint, in transformers and in OpenAI's code): one
    AdamW step with weight decay leaves it bitwise unchanged; model.train_positions=true makes it a parameter."""
    source = str(save_tiny_whisper(tmp_path / "whisper")) if pretrained else "none"
    cfg = config(**{"model.pretrained": source, "model.train_positions": train_positions})
    torch.manual_seed(0)
    model = MODELS.get("whisper").build(cfg, 2)
    table = model.encoder.embed_positions.weight
    before = table.detach().clone()
    layer = model.encoder.layers[0].fc1.weight.detach().clone()
    one_adamw_step(model, cfg)
    assert table.requires_grad == train_positions
    assert torch.equal(table, before) != train_positions
    assert not torch.equal(model.encoder.layers[0].fc1.weight, layer)  # the rest of the encoder did train


def test_frozen_encoder_keeps_positions_frozen_too() -> None:
    model = MODELS.get("whisper").build(config(**{"model.freeze_encoder": True, "model.train_positions": True}), 2)
    assert not any(p.requires_grad for p in model.encoder.parameters())


# --- 2. pretrained weights in fp32 ----------------------------------------------------------------------------
def test_fp16_wav2vec2_checkpoint_loads_as_fp32(tmp_path: Path) -> None:
    folder = save_tiny_wav2vec2(tmp_path / "w2v", torch.float16)
    saved = Wav2Vec2Model.from_pretrained(folder, dtype=torch.float16).state_dict()
    assert all(v.dtype == torch.float16 for v in saved.values() if v.is_floating_point())  # really an fp16 file
    model = MODELS.get("wav2vec2").build(config(**{"model.name": "wav2vec2", "model.pretrained": str(folder)}), 2)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v.float()) for k, v in saved.items())  # upcast exactly


def test_fp16_whisper_checkpoint_loads_as_fp32(tmp_path: Path) -> None:
    folder = save_tiny_whisper(tmp_path / "whisper", torch.float16)
    model = MODELS.get("whisper").build(config(**{"model.pretrained": str(folder)}), 2)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {b.dtype for b in model.buffers() if b.is_floating_point()} <= {torch.float32}


def test_fp16_resnet_state_dict_loads_as_fp32(tmp_path: Path) -> None:
    torch.manual_seed(7)
    state = {k: v.half() if v.is_floating_point() else v for k, v in torchvision.models.resnet50().state_dict().items()}
    torch.save(state, tmp_path / "resnet50.pt")
    model = MODELS.get("resnet50").build(config(**RESNET, **{"model.pretrained": str(tmp_path / "resnet50.pt")}), 2)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {b.dtype for b in model.buffers() if b.is_floating_point()} == {torch.float32}
    assert torch.equal(model.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"].float())


# --- 3. frozen means frozen, in training mode too -------------------------------------------------------------
@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_resnet_keeps_batchnorm_statistics(freeze: bool) -> None:
    cfg = config(**RESNET, **{"model.freeze_encoder": freeze, "data.max_seconds": 1.0})
    torch.manual_seed(0)
    model = MODELS.get("resnet50").build(cfg, 2).train()
    featurizer = MODELS.get("resnet50").featurizer(cfg).train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]
    forward_batch(model, featurizer, batch_of([16000, 9000, 12000], seconds=1.0))
    unchanged = [torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
                 and int(m.num_batches_tracked) == tracked
                 for m, (mean, var, tracked) in zip(norms, before, strict=True)]
    assert all(unchanged) if freeze else not any(unchanged)
    assert model.head.training and model.training  # the head still trains (its dropout is on)


@pytest.mark.parametrize("name", ["whisper", "wav2vec2"])
def test_frozen_transformer_encoder_runs_in_eval_mode(name: str) -> None:
    """A frozen encoder in a model put in training mode computes exactly what it computes in eval mode (no dropout,
    no layer drop); an unfrozen one does train (dropout on)."""
    dropouts = {"model.name": name, "model.dropout": 0.0}
    frozen = MODELS.get(name).build(config(**dropouts, **{"model.freeze_encoder": True}), 2)
    encoder = frozen.encoder if name == "whisper" else frozen.backbone
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    if name == "whisper":
        encoder.dropout = 0.5  # WhisperEncoder applies functional dropout with this rate
    featurizer = MODELS.get(name).featurizer(config(**dropouts)).eval()
    batch = batch_of([8000, 5000])
    with torch.no_grad():
        reference = forward_batch(frozen.eval(), featurizer, batch)["logits"]
        frozen.train()
        assert not encoder.training and frozen.head.training
        torch.manual_seed(1)
        assert torch.equal(forward_batch(frozen, featurizer, batch)["logits"], reference)
    trainable = MODELS.get(name).build(config(**dropouts), 2).train()
    assert (trainable.encoder if name == "whisper" else trainable.backbone.encoder).training


# --- 4. Whisper pooling ---------------------------------------------------------------------------------------
def pooled_and_hidden(pooling: str, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the head received, the encoder's frames) for clips of `lengths` samples."""
    cfg = config(**{"model.pooling": pooling})
    torch.manual_seed(0)
    model = MODELS.get("whisper").build(cfg, 2).eval()
    featurizer = MODELS.get("whisper").featurizer(cfg).eval()
    batch = batch_of(lengths)
    received: list[torch.Tensor] = []
    model.head.register_forward_pre_hook(lambda module, args: received.append(args[0]))
    with torch.no_grad():
        features = featurizer(batch)
        model(features, batch)
        hidden = model.encoder(input_features=features).last_hidden_state
    return received[0], hidden


def test_audio_pooling_averages_the_frames_of_real_audio_only() -> None:
    """Encoder frames are 20 ms (two 10 ms mel hops): 0.3 s of audio is the first 15 of 25 frames, 0.1 s + one
    sample reaches into the 6th frame, and a full 0.5 s clip is all 25."""
    pooled, hidden = pooled_and_hidden("audio", [4800, 1601, 8000])
    assert hidden.shape[1] == 25
    for row, frames in enumerate([15, 6, 25]):
        torch.testing.assert_close(pooled[row], hidden[row, :frames].mean(dim=0), rtol=0, atol=1e-6)
    assert not torch.allclose(pooled[0], hidden[0].mean(dim=0), atol=1e-4)  # the padding did matter


def test_mean_pooling_averages_every_frame() -> None:
    pooled, hidden = pooled_and_hidden("mean", [4800, 8000])
    torch.testing.assert_close(pooled, hidden.mean(dim=1), rtol=0, atol=1e-6)


def test_max_pooling_takes_the_largest_value_over_real_audio_frames_only() -> None:
    pooled, hidden = pooled_and_hidden("max", [4800, 1601, 8000])
    for row, frames in enumerate([15, 6, 25]):
        torch.testing.assert_close(pooled[row], hidden[row, :frames].amax(dim=0), rtol=0, atol=0)
    assert not torch.equal(pooled[1], hidden[1].amax(dim=0))  # the padding frames would have won somewhere


def test_unknown_pooling_names_the_field_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"model\.pooling='attention'.*audio, max, mean"):
        check_config(Config().with_overrides({"model.pooling": "attention"}))  # before any model is built
