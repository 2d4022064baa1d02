"""Whisper encoder with the loss itself searched; each loss's own parameters are suggested only when it is
chosen (define-by-run), so TPE never wastes trials on parameters that do nothing."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.space import SearchSpace, register


def suggest_loss(trial: optuna.Trial) -> dict[str, Any]:
    """Suggest `loss.name` and its parameters; return constants the chosen loss needs."""
    name = trial.suggest_categorical("loss.name", ["ce", "balancing", "focal", "class_balanced", "difficulty",
                                                   "contrastive"])
    if name == "balancing":
        trial.suggest_float("loss.smoothing", 0.1, 5.0, log=True)
    elif name == "focal":
        trial.suggest_float("loss.gamma", 0.0, 5.0)
    elif name == "class_balanced":
        trial.suggest_float("loss.beta", 0.9, 0.9999, log=True)
        trial.suggest_categorical("loss.cb_base", ["ce", "focal"])
    elif name == "difficulty":
        trial.suggest_float("loss.difficulty_lambda", 0.1, 5.0, log=True)
    elif name == "contrastive":
        trial.suggest_float("loss.contrastive_weight", 0.01, 1.0, log=True)
        trial.suggest_float("loss.temperature", 0.05, 0.5, log=True)
        return {"train.sampler": "word_pairs"}
    return {}


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    trial.suggest_float("optim.warmup_ratio", 0.0, 0.3)
    return suggest_loss(trial)


SPACE = register(SearchSpace(
    name="whisper_losses",
    description="Whisper encoder; which loss (ce, balancing, focal, class-balanced, difficulty, contrastive) and "
                "its own parameters; lr and warmup.",
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
