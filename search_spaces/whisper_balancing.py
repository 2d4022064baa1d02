"""Whisper encoder + per-word balancing loss: learning rate, warmup, weight decay, SpecAugment and pooling searched."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    suggest_rest(trial)


def define_demo(trial: optuna.Trial) -> None:
    """--demo: a micro Whisper trained from scratch learns in 10 epochs only at larger learning rates."""
    trial.suggest_float("optim.lr", 1e-3, 5e-3, log=True)
    suggest_rest(trial)


def suggest_rest(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.warmup_ratio", 0.0, 0.3)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_int("augment.time_mask", 0, 40)
    trial.suggest_int("augment.time_masks", 0, 2)
    trial.suggest_int("augment.freq_mask", 0, 24)
    trial.suggest_int("augment.freq_masks", 0, 2)
    trial.suggest_categorical("model.pooling", ["mean", "audio"])  # all encoder frames, or real audio only


SPACE = register(SearchSpace(
    name="whisper_balancing",
    description="Whisper encoder, balancing loss (CE x 1/P(label|word)); lr, warmup, weight decay, SpecAugment, "
                "pooling.",
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "loss.name": "balancing",
          "data.k_fold": 5, "train.epochs": 10},
    define=define,
    demo_define=define_demo,
))
