"""Whisper encoder classifier: HF `WhisperEncoder` sized to the clip, pooled over time, projection + head.

Whisper's encoder demands exactly `2 * max_source_positions` mel frames. Short clips get a positional table of
`frames // 2` rows; a pretrained table is *sliced* to those rows (never re-initialised), so the model sees the
same positions it was trained with. The table is fixed sinusoids, frozen in OpenAI's code and in transformers, and
stays frozen here unless `model.train_positions` asks otherwise.

Pooling (`model.pooling`): `mean` averages all encoder frames, as the original recipe and transformers'
`WhisperForAudioClassification` do; clips are zero-padded to `data.max_seconds`, so for short clips most of those
frames are padding. `audio` averages only the frames of real audio: each encoder frame spans two mel hops, and
frame j (centred on mel frame 2j, i.e. sample 2j * hop) counts when that mel frame is real audio by the one
definition the featurizer uses too (`core.features.real_frames`, from the clip's length).

Layers (`model.layers`, core/models/layers.py): the last, one by index, or a learned softmax over all of them; each
selected layer is pooled, then they are mixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import logging as hf_logging

from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError
from core.features import build_log_mel_featurizer, log_mel_frames, real_frames
from core.models.conditioning import (
    ConditionedHead,
    check_conditioning,
    conditioned_head,
    extra_rows,
    spectrogram_rows,
)
from core.models.freezing import FrozenPartsStayEval
from core.models.layers import LayerMix, check_layer_index, layer_states
from core.models.pretrained import refusing_pickles
from core.registry import Registry
from core.statistics import FoldStatistics

SIZE_PRESETS: dict[str, dict[str, int]] = {
    "micro": {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 256},
    "tiny": {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536},
    "base": {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048},
}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (log lines and the per-tensor progress bar) for one block, restoring
    the caller's settings after."""
    previous, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def whisper_positions(config: Config) -> int:
    return log_mel_frames(config) // 2


def load_encoder(source: str, size: str, n_mels: int, positions: int, conditioning_rows: int = 0,
                 architecture: dict | None = None) -> WhisperEncoder:
    """A Whisper encoder with `positions` positional rows: random from a size preset, or pretrained (hub id or
    local folder) with the positional table sliced to its first `positions` rows. Its input has `n_mels` mel rows
    plus `conditioning_rows` age/word rows. A pretrained encoder takes exactly its checkpoint's mel bands; the rows
    are extra conv1 input channels whose weights start at zero, so before any training step the model computes
    exactly what the checkpoint does. With `architecture` (a saved model's encoder config), that shape with random
    weights: the caller loads the saved ones."""
    if architecture is not None:
        return WhisperEncoder(WhisperConfig.from_dict(architecture))
    rows = n_mels + conditioning_rows
    if source == "none":
        hf_config = WhisperConfig(num_mel_bins=rows, max_source_positions=positions, **SIZE_PRESETS[size])
        return WhisperEncoder(hf_config)
    with quiet_transformers():
        hf_config = WhisperConfig.from_pretrained(source)
        if hf_config.num_mel_bins != n_mels:
            raise ConfigError(f"features.n_mels={n_mels}: the checkpoint {source} was trained with n_mels="
                              f"{hf_config.num_mel_bins}; use features.n_mels={hf_config.num_mel_bins}")
        if positions > hf_config.max_source_positions:
            raise ConfigError(f"data.max_seconds: clips give {positions} positions but {source} has only "
                              f"{hf_config.max_source_positions}")
        # fp32 whatever the checkpoint's dtype (transformers would otherwise load it as stored, e.g. fp16).
        with refusing_pickles(source):  # a pytorch_model.bin holding objects: one line, not 40
            state = WhisperModel.from_pretrained(source, dtype=torch.float32).encoder.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions].clone()
    if conditioning_rows:  # zero weights for the age/word channels: step 0 is the pretrained model exactly
        weight = state["conv1.weight"]  # [d_model, n_mels, kernel]
        state["conv1.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], conditioning_rows,
                                                                     weight.shape[2])], dim=1)
    hf_config.max_source_positions = positions
    hf_config.num_mel_bins = rows
    encoder = WhisperEncoder(hf_config)
    encoder.load_state_dict(state, strict=True)
    return encoder


# (hidden [B, frames, d_model], real frames [B]) -> pooled [B, d_model]
Pooling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
POOLINGS: Registry[Pooling] = Registry("pooling")


@POOLINGS.register("mean")
def mean_pooling(hidden: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
    return hidden.mean(dim=1)


def real_frame_mask(hidden: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
    """[B, frames, 1] True where a frame is real audio."""
    return (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < real_frames[:, None]).unsqueeze(-1)


@POOLINGS.register("audio")
def audio_pooling(hidden: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
    mask = real_frame_mask(hidden, real_frames).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1)


@POOLINGS.register("max")
def max_pooling(hidden: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
    real = real_frame_mask(hidden, real_frames)
    return hidden.masked_fill(~real, torch.finfo(hidden.dtype).min).amax(dim=1)


class WhisperClassifier(FrozenPartsStayEval):
    def __init__(self, encoder: WhisperEncoder, head: ConditionedHead, freeze_encoder: bool,
                 train_positions: bool = False, pooling: str = "mean", hop_length: int = 160,
                 layers: str = "last") -> None:
        super().__init__()
        self.encoder = encoder
        self.train_positions = train_positions
        self.set_encoder_frozen(freeze_encoder)
        self.head = head
        self.mix = LayerMix(layers, encoder.config.encoder_layers)
        self.pool = POOLINGS.get(pooling)
        self.hop_length = hop_length
        self.train()  # frozen parts in eval mode from the start

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the encoder (LP-FT unfreezes it after the probe epochs, core/train.py)."""
        self.encoder.requires_grad_(not frozen)
        # requires_grad_ above would also unfreeze the fixed sinusoidal table transformers leaves frozen.
        self.encoder.embed_positions.requires_grad_(self.train_positions and not frozen)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def layer_outputs(self, features: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """The frames [B, frames, d_model] of the encoder layers `indices` (default: those `model.layers` reads)."""
        indices = self.mix.indices() if indices is None else indices
        if indices == [self.mix.count - 1]:  # the output alone: no hidden states kept
            return [self.encoder(input_features=features).last_hidden_state]
        states = layer_states(self.encoder(input_features=features, output_hidden_states=True))
        return [states[i] for i in indices]

    def real_frames(self, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """[B] encoder frames of real audio: encoder frame j is centred on mel frame 2j (the second convolution has
        stride 2), so it is real when that mel frame is (core.features.real_frames, the featurizer's own count)."""
        mel = real_frames(lengths, self.hop_length, 2 * frames)
        return torch.div(mel + 1, 2, rounding_mode="floor")

    def forward(self, features: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        hidden = self.layer_outputs(features)
        real = self.real_frames(batch.lengths, hidden[0].shape[1])
        return self.head(self.mix(torch.stack([self.pool(h, real) for h in hidden], dim=1)), batch)

    @staticmethod
    def poolings() -> list[str]:
        return POOLINGS.names()

    def pooled_outputs(self, features: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B, layers 0..N, len(poolings()), d_model]: every encoder layer pooled every registered way (the
        frozen-encoder cache, core/models/frozen.py, stores these and trains the head on them)."""
        hidden = self.layer_outputs(features, list(range(self.mix.count)))
        real = self.real_frames(batch.lengths, hidden[0].shape[1])
        return torch.stack([torch.stack([POOLINGS.get(name)(h, real) for name in self.poolings()], dim=1)
                            for h in hidden], dim=1)


def build(config: Config, num_outputs: int, stats: FoldStatistics | None = None,
          architecture: dict | None = None) -> nn.Module:
    m = config.model
    encoder = load_encoder(m.pretrained, m.size, config.features.n_mels, whisper_positions(config),
                           extra_rows(config), architecture)
    check_layer_index(m.layers, encoder.config.encoder_layers, f"the Whisper encoder ({m.pretrained})")
    head = conditioned_head(config, stats, encoder.config.d_model, num_outputs)
    return WhisperClassifier(encoder, head, m.freeze_encoder, m.train_positions, m.pooling,
                             config.features.hop_length, m.layers)


def featurizer(config: Config, stats: FoldStatistics | None = None) -> nn.Module:
    return build_log_mel_featurizer(config, 2 * whisper_positions(config), spectrogram_rows(config, stats))


def check(config: Config) -> None:
    if config.model.pretrained == "none" and config.model.size not in SIZE_PRESETS:
        raise ConfigError(f"model.size={config.model.size!r}: choose one of {', '.join(SIZE_PRESETS)}")
    if config.model.pretrained == "none":
        check_layer_index(config.model.layers, SIZE_PRESETS[config.model.size]["encoder_layers"],
                          f"the {config.model.size} preset")
    if whisper_positions(config) < 1:
        raise ConfigError("data.max_seconds: too short for Whisper (needs at least 2 mel frames)")
    check_conditioning(config, takes_rows=True)
    POOLINGS.check("model.pooling", config.model.pooling)


PREPROCESSOR_FILE = "preprocessor_config.json"


def pretrained_front_end(source: str) -> tuple[str, WhisperFeatureExtractor]:
    """(where the values come from, the feature extractor a pretrained encoder was trained behind): the local
    checkpoint folder's preprocessor_config.json, else Whisper's fixed front end (400-sample FFT, 160-sample hop,
    16 kHz: WhisperFeatureExtractor's defaults, the same for every released Whisper)."""
    folder = Path(source).expanduser()
    if not (folder / PREPROCESSOR_FILE).is_file():
        return "Whisper's fixed front end", WhisperFeatureExtractor()
    try:
        with quiet_transformers():
            return str(folder / PREPROCESSOR_FILE), WhisperFeatureExtractor.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.pretrained={source!r}: cannot read its {PREPROCESSOR_FILE} ({error})") from error


def check_pretrained(config: Config) -> None:
    """A pretrained encoder has learned one log-mel front end: its mel bands (age/word rows come on top of them),
    the STFT and the sample rate must be its own."""
    if config.model.pretrained == "none":
        return
    if (Path(config.model.pretrained).expanduser() / "config.json").is_file():  # a hub id is checked as it loads
        with quiet_transformers():
            layers = WhisperConfig.from_pretrained(Path(config.model.pretrained).expanduser()).encoder_layers
        check_layer_index(config.model.layers, layers, f"the pretrained Whisper {config.model.pretrained!r}")
    if config.features.normalize != "whisper":
        raise ConfigError(f"features.normalize={config.features.normalize!r}: the pretrained Whisper "
                          f"{config.model.pretrained!r} was trained on Whisper's own log-mel; use "
                          "features.normalize=whisper (clip is for models trained from scratch)")
    origin, extractor = pretrained_front_end(config.model.pretrained)
    for key, trained in (("features.n_mels", extractor.feature_size), ("features.n_fft", extractor.n_fft),
                         ("features.hop_length", extractor.hop_length), ("data.sample_rate", extractor.sampling_rate)):
        if config.get(key) != trained:
            raise ConfigError(f"{key}={config.get(key)!r}: the pretrained Whisper {config.model.pretrained!r} was "
                              f"trained with {key.split('.')[1]}={trained} ({origin}); use {key}={trained}")
