"""Frozen means frozen: parts of a model whose parameters are all frozen stay in eval mode while the rest trains.

`requires_grad_(False)` stops gradients, but a module in training mode still changes what it computes and what it
stores: BatchNorm keeps updating its running statistics (a frozen ResNet would drift from its checkpoint), and
dropout / layer drop keep acting (a frozen Whisper or Wav2Vec2 encoder would feed the head noisy features). So a
frozen encoder also runs without its dropout in training: it is a fixed feature extractor.
"""

from __future__ import annotations

from typing import Any, Self

from torch import nn


class FrozenPartsStayEval(nn.Module):
    """`train()` puts every submodule whose parameters are all frozen (and that has any) back in eval mode."""

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if mode:
            for module in self.modules():
                parameters = list(module.parameters())
                if module is not self and parameters and not any(p.requires_grad for p in parameters):
                    module.eval()
        return self


def fine_tuning_groups(model: nn.Module, lr: float, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """LP-FT's second phase (core/train.py): the model's encoder unfrozen, and the optimiser's parameter groups for
    it: the head and layer mix at `lr`, the encoder at `encoder_lr_scale * lr` (a small step keeps the pretrained
    features from being distorted while the head it already has adapts them)."""
    model.set_encoder_frozen(False)
    encoder = {id(p) for p in model.encoder_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if id(p) not in encoder]},
            {"params": [p for p in trainable if id(p) in encoder], "lr": encoder_lr_scale * lr}]
