"""Whisper encoder + per-word balancing loss: learning rate, warmup, weight decay, SpecAugment and pooling searched."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    suggest_schedule_and_masks(trial, warmup=0.3, time_mask=40, time_masks=2, freq_mask=24)
    trial.suggest_categorical("model.pooling", ["mean", "audio"])  # all encoder frames, or real audio only


def define_demo(trial: optuna.Trial) -> None:
    """--demo, a micro Whisper from scratch: larger learning rates, light SpecAugment (a wide time mask can hide the
    ~100 ms error, the whole label); pooling over real audio and the age/word embedding pinned (`demo` below)."""
    trial.suggest_float("optim.lr", 2e-3, 6e-3, log=True)
    suggest_schedule_and_masks(trial, warmup=0.2, time_mask=10, time_masks=1, freq_mask=12)


def suggest_schedule_and_masks(trial: optuna.Trial, warmup: float, time_mask: int, time_masks: int,
                               freq_mask: int) -> None:
    """Warmup share, weight decay and SpecAugment, up to the given widest settings."""
    trial.suggest_float("optim.warmup_ratio", 0.0, warmup)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_int("augment.time_mask", 0, time_mask)
    trial.suggest_int("augment.time_masks", 0, time_masks)
    trial.suggest_int("augment.freq_mask", 0, freq_mask)
    trial.suggest_int("augment.freq_masks", 0, 2)


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
