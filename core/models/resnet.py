"""ResNet50 (torchvision) on a one-channel 224 x 224 log-mel image, pooled features -> projection + head.

The image is 224 mel rows (222 + the 2 age/word rows with `features.conditioning=rows`) by exactly 224 frames:
the hop is computed from `data.max_seconds` (`features.hop_length` is ignored), and `features.n_mels` is checked
rather than silently overridden, so the searched config says what the model saw. `model.size` does not apply.

Pretrained weights are a local state_dict file (`.pt`/`.pth`) of a torchvision `resnet50` (torchvision's own
download needs the internet). Its first convolution takes RGB; summing its weights over the three colour channels
gives the response to a grey image of the same intensity, which is what a one-channel spectrogram is.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
import torchaudio
import torchvision
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.errors import ConfigError
from core.features import build_log_mel_featurizer
from core.models.conditioning import (
    ConditionedHead,
    check_conditioning,
    conditioned_head,
    extra_rows,
    spectrogram_rows,
)
from core.models.freezing import FrozenPartsStayEval
from core.models.pretrained import refused
from core.statistics import FoldStatistics

IMAGE_SIZE = 224
FEATURES = 2048  # resnet50's pooled feature size (its fc input)
WEIGHT_SUFFIXES = (".pt", ".pth")


def resnet_hop(config: Config) -> int:
    """Hop giving at least 224 frames for the clip (a centred STFT gives 1 + samples // hop); the featurizer crops
    the surplus tail frame(s), so the image is exactly 224 frames wide and spans the whole clip."""
    samples = int(round(config.data.sample_rate * config.data.max_seconds))
    return max(1, samples // IMAGE_SIZE)


def empty_mel_bands(sample_rate: int, n_fft: int, n_mels: int) -> int:
    """Mel bands narrower than one FFT bin get no energy at all (constant rows in the image)."""
    with warnings.catch_warnings():  # torchaudio warns about exactly what we are counting
        warnings.simplefilter("ignore", UserWarning)
        banks = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                                                      norm="slaney", mel_scale="slaney")
    return int((banks.amax(dim=0) == 0).sum())


def load_pretrained(path: str) -> dict[str, torch.Tensor]:
    """A torchvision resnet50 state_dict, adapted: conv1 summed over RGB, the ImageNet fc dropped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.pretrained={path!r}: file not found (resnet50 takes a local .pt/.pth state_dict "
                          "of torchvision's resnet50, or 'none')")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never passed on
        raise refused(path, file) from None
    except Exception as error:  # zip/format errors: say which file, in one line, not torch's internals
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"model.pretrained={path!r}: not a readable torch state_dict ({first})") from None
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ConfigError(f"model.pretrained={path!r}: not a torchvision resnet50 state_dict (no conv1.weight)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    return state


def load_backbone(source: str) -> torchvision.models.ResNet:
    backbone = torchvision.models.resnet50(weights=None)
    backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    backbone.fc = nn.Identity()
    if source != "none":
        state = load_pretrained(source)
        try:
            backbone.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ConfigError(f"model.pretrained={source!r}: does not fit torchvision's resnet50 ({error})") from error
    return backbone


class ResNetClassifier(FrozenPartsStayEval):
    def __init__(self, backbone: torchvision.models.ResNet, head: ConditionedHead, freeze_encoder: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone.requires_grad_(not freeze_encoder)
        self.head = head
        self.train()  # frozen parts in eval mode from the start

    def forward(self, features: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return self.head(self.backbone(features.unsqueeze(1)), batch)


def build(config: Config, num_outputs: int, stats: FoldStatistics | None = None) -> nn.Module:
    backbone = load_backbone(config.model.pretrained)
    return ResNetClassifier(backbone, conditioned_head(config, stats, FEATURES, num_outputs),
                            config.model.freeze_encoder)


def featurizer(config: Config, stats: FoldStatistics | None = None) -> nn.Module:
    return build_log_mel_featurizer(config, IMAGE_SIZE, spectrogram_rows(config, stats), resnet_hop(config))


def check(config: Config) -> None:
    f, m = config.features, config.model
    check_conditioning(config, takes_rows=True)
    mels = IMAGE_SIZE - extra_rows(config)
    if f.n_mels != mels:
        rows = " (+ 2 age/word rows = 224)" if extra_rows(config) else ""
        raise ConfigError(f"features.n_mels={f.n_mels}: resnet50 takes a 224-row image; use {mels}{rows}")
    empty = empty_mel_bands(config.data.sample_rate, f.n_fft, f.n_mels)
    if empty:
        fits = next((n for n in (512, 1024, 2048, 4096) if not empty_mel_bands(config.data.sample_rate, n, f.n_mels)),
                    None)
        raise ConfigError(f"features.n_fft={f.n_fft}: {f.n_fft // 2 + 1} frequency bins leave {empty} of "
                          f"{f.n_mels} mel bands empty; use features.n_fft={fits}")
    if m.pretrained != "none" and not m.pretrained.endswith(WEIGHT_SUFFIXES):
        raise ConfigError(f"model.pretrained={m.pretrained!r}: resnet50 takes 'none' or a local .pt/.pth state_dict "
                          "of torchvision's resnet50 (no hub ids)")
    if config.data.sample_rate * config.data.max_seconds < IMAGE_SIZE:
        raise ConfigError(f"data.max_seconds={config.data.max_seconds}: too short for 224 frames")
