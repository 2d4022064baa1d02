"""Whisper encoder trained with sharpness-aware minimisation (SAM) around a searched base optimiser."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> None:
    base = trial.suggest_categorical("optim.sam_base", ["adamw", "sgd"])
    if base == "sgd":
        trial.suggest_float("optim.lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("optim.momentum", 0.8, 0.99)
    else:
        trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    trial.suggest_float("optim.sam_rho", 0.01, 0.5, log=True)
    trial.suggest_categorical("optim.sam_adaptive", [False, True])
    trial.suggest_float("optim.warmup_ratio", 0.0, 0.3)


SPACE = register(SearchSpace(
    name="whisper_sam",
    description="Whisper encoder, balancing loss, SAM (two passes per step) over AdamW or SGD; rho, adaptive, lr.",
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "loss.name": "balancing",
          "optim.name": "sam", "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
