"""Frozen pretrained Whisper probe: the encoder runs once per clip (core/models/frozen.py), so a trial trains only
projection + head on its cached outputs and costs seconds; heads, losses, lr, pooling, encoder layers (the last, a
learned weighted sum of all, or a middle one) and conditioning searched."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.space import SearchSpace, register
from search_spaces.whisper_losses import suggest_loss


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("optim.lr", 1e-4, 1e-2, log=True)  # a head alone takes larger steps than a fine-tuned encoder
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.projection_dim", [64, 128, 256, 512])
    trial.suggest_float("model.dropout", 0.0, 0.5)
    trial.suggest_categorical("model.pooling", ["mean", "audio"])  # one cache holds both
    # One cache holds every layer too; middle: layer N // 2 of N, often more phonetic than the last.
    trial.suggest_categorical("model.layers", ["last", "weighted", "middle"])
    trial.suggest_categorical("features.conditioning", ["none", "embed"])  # embed joins at the head: still cached
    return suggest_loss(trial)


SPACE = register(SearchSpace(
    name="whisper_probe",
    description="Frozen pretrained Whisper (give it: --set model.pretrained=HUB_ID_OR_FOLDER, e.g. "
                "/models/whisper-base), encoder outputs computed once per clip; projection size, dropout, "
                "loss, lr, weight decay, pooling, encoder layers, age/word embedding.",
    # No SpecAugment (the defaults) and no age/word rows: the encoder's input is the same in every epoch, which is
    # what lets its outputs be cached. Epochs are cheap here, so more of them than a fine-tuning space's.
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "model.freeze_encoder": True,
          "data.k_fold": 5, "train.epochs": 20, "train.batch_size": 32, "optim.warmup_ratio": 0.05},
    define=define,
))
