"""Whisper encoder + per-word balancing loss: learning rate, warmup, weight decay, SpecAugment and pooling searched."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    suggest_rest(trial)


def define_demo(trial: optuna.Trial) -> None:
    """--demo: a micro Whisper trained from scratch in a few epochs. It learns only at larger learning rates, and
    with 4 trials (Optuna's random start-up) every draw must be a plausible recipe: light SpecAugment (a wide time
    mask can hide the ~100 ms error, which is the whole label), pooling over real audio only (it beat `mean` on
    both demo sets), the age/word embedding always on (`demo` below)."""
    trial.suggest_float("optim.lr", 2e-3, 6e-3, log=True)
    trial.suggest_float("optim.warmup_ratio", 0.0, 0.2)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_int("augment.time_mask", 0, 10)
    trial.suggest_int("augment.time_masks", 0, 1)
    trial.suggest_int("augment.freq_mask", 0, 12)
    trial.suggest_int("augment.freq_masks", 0, 2)


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
    # The error is wrong only relative to the target word: the from-scratch demo model is told the word (and age)
    # through learned embeddings beside the pooled audio (`embed`; `rows` would change the model's input rows).
    demo={"features.conditioning": "embed", "model.pooling": "audio"},
    demo_define=define_demo,
))
