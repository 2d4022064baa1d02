"""Whisper encoder with the child's age and the target word as inputs: none, the original's spectrogram rows,
or learned embeddings joined to the pooled features."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    trial.suggest_categorical("model.pooling", ["mean", "audio"])  # all encoder frames, or real audio only
    mode = trial.suggest_categorical("features.conditioning", ["none", "rows", "embed"])
    if mode == "rows":
        # The checkpoint's own 80 bands stay; the rows are two extra conv1 channels starting at zero weight.
        trial.suggest_float("features.age_momentum", 0.1, 2.0)
    if mode == "embed":
        trial.suggest_categorical("features.embed_dim", [8, 16, 32])
    return {}


SPACE = register(SearchSpace(
    name="whisper_conditioning",
    description="Whisper encoder, balancing loss; age/word conditioning none | rows (80 mels + 2 channels) | embed.",
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "loss.name": "balancing",
          "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
