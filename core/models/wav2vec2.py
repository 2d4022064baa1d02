"""Wav2Vec2 classifier/regressor: HF `Wav2Vec2Model` on normalised waveforms, mean-pooled over real frames only.

Clips are zero-padded to `data.max_seconds`; averaging over the padding would make a short clip's embedding
depend on how much silence follows it. Each clip's real length in samples is mapped to frames by the model's own
convolution arithmetic, and only those frames are pooled.

Hugging Face's built-in SpecAugment masking is switched off: it draws from numpy's global RNG, which would break
the per-fold reproducibility of `train_fold` (and `augment.*` is a spectrogram augmentation, rejected here).

Layers (`model.layers`, core/models/layers.py): the last, one by index, or a learned softmax over all of them; each
selected layer is pooled over real frames, then they are mixed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError
from core.features import WaveformNormalizer
from core.models.conditioning import ConditionedHead, check_conditioning, conditioned_head
from core.models.freezing import FrozenPartsStayEval
from core.models.layers import LayerMix, check_layer_index, layer_states
from core.models.pretrained import refusing_pickles
from core.models.whisper import quiet_transformers
from core.statistics import FoldStatistics

SIZE_PRESETS: dict[str, dict[str, Any]] = {
    # For tests and demos: 3 small convolutions with the base model's total stride (320 samples = 20 ms a frame).
    "micro": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "conv_dim": (32, 32, 32), "conv_kernel": (10, 8, 8), "conv_stride": (5, 8, 8),
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4},
    # facebook/wav2vec2-base's shape.
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "conv_dim": (512,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
             "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16},
}
NO_HF_MASKING = {"apply_spec_augment": False}


def load_backbone(source: str, size: str, architecture: dict | None = None) -> Wav2Vec2Model:
    """Random from a size preset, or pretrained (hub id or local folder) via `from_pretrained`; with `architecture`
    (a saved model's backbone config), that shape with random weights: the caller loads the saved ones."""
    if architecture is not None:
        return Wav2Vec2Model(Wav2Vec2Config.from_dict(architecture))
    if source == "none":
        return Wav2Vec2Model(Wav2Vec2Config(**SIZE_PRESETS[size], **NO_HF_MASKING))
    with quiet_transformers(), refusing_pickles(source):  # a pytorch_model.bin holding objects: one line
        # fp32 whatever the checkpoint's dtype: transformers 5 loads it as stored (dtype="auto"), so an fp16
        # checkpoint would give an fp16 backbone under the fp32 head.
        return Wav2Vec2Model.from_pretrained(source, dtype=torch.float32, **NO_HF_MASKING)


def frame_mask(backbone: Wav2Vec2Model, lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, frames] True on the frames computed from real samples (at least one frame per clip)."""
    real = backbone._get_feat_extract_output_lengths(lengths).clamp(min=1)
    return torch.arange(frames, device=lengths.device)[None, :] < real[:, None]


class Wav2Vec2Classifier(FrozenPartsStayEval):
    def __init__(self, backbone: Wav2Vec2Model, head: ConditionedHead, freeze_encoder: bool,
                 freeze_feature_encoder: bool, layers: str = "last") -> None:
        super().__init__()
        self.backbone = backbone
        self.freeze_feature_encoder = freeze_feature_encoder
        self.set_encoder_frozen(freeze_encoder)
        # Models with layer-norm feature encoders were trained with attention masks; group-norm ones (base) without.
        self.pass_attention_mask = backbone.config.feat_extract_norm == "layer"
        self.head = head
        self.mix = LayerMix(layers, backbone.config.num_hidden_layers)
        self.train()  # frozen parts in eval mode from the start

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the backbone (LP-FT unfreezes it after the probe epochs, core/train.py); the
        convolutional feature encoder stays as `model.freeze_feature_encoder` says."""
        self.backbone.requires_grad_(not frozen)
        if self.freeze_feature_encoder:
            self.backbone.freeze_feature_encoder()

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def forward(self, features: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        attention = None
        if self.pass_attention_mask:
            positions = torch.arange(features.shape[-1], device=features.device)[None, :]
            attention = (positions < batch.lengths[:, None]).long()
        if self.mix.choice == "last":  # the output alone: no hidden states kept
            hidden = [self.backbone(features, attention_mask=attention).last_hidden_state]
        else:
            states = layer_states(self.backbone(features, attention_mask=attention, output_hidden_states=True))
            hidden = [states[i] for i in self.mix.indices()]
        mask = frame_mask(self.backbone, batch.lengths, hidden[0].shape[1]).unsqueeze(-1).to(hidden[0].dtype)
        pooled = torch.stack([(h * mask).sum(dim=1) / mask.sum(dim=1) for h in hidden], dim=1)
        return self.head(self.mix(pooled), batch)


def build(config: Config, num_outputs: int, stats: FoldStatistics | None = None,
          architecture: dict | None = None) -> nn.Module:
    m = config.model
    backbone = load_backbone(m.pretrained, m.size, architecture)
    check_layer_index(m.layers, backbone.config.num_hidden_layers, f"the Wav2Vec2 backbone ({m.pretrained})")
    head = conditioned_head(config, stats, backbone.config.hidden_size, num_outputs)
    return Wav2Vec2Classifier(backbone, head, m.freeze_encoder, m.freeze_feature_encoder, m.layers)


def featurizer(config: Config, stats: FoldStatistics | None = None) -> nn.Module:
    return WaveformNormalizer()


def preset_frames(size: str, samples: int) -> int:
    """Frames a preset's convolutions give for `samples` (only to reject too-short clips before building)."""
    preset = SIZE_PRESETS[size]
    for kernel, stride in zip(preset["conv_kernel"], preset["conv_stride"], strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


def check(config: Config) -> None:
    m, a = config.model, config.augment
    if m.pretrained == "none":
        if m.size not in SIZE_PRESETS:
            raise ConfigError(f"model.size={m.size!r}: choose one of {', '.join(SIZE_PRESETS)} for wav2vec2")
        if preset_frames(m.size, int(round(config.data.sample_rate * config.data.max_seconds))) < 1:
            raise ConfigError(f"data.max_seconds={config.data.max_seconds}: too short for wav2vec2's convolutions")
        check_layer_index(m.layers, SIZE_PRESETS[m.size]["num_hidden_layers"], f"the {m.size} preset")
    for key in ("time_mask", "freq_mask"):
        if getattr(a, key) > 0:
            raise ConfigError(f"augment.{key}={getattr(a, key)}: SpecAugment masks spectrograms, but wav2vec2 takes "
                              "waveforms; set it to 0")
    check_conditioning(config, takes_rows=False, why_not="takes waveforms, which have no spectrogram rows to append")
