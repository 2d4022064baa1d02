"""Whisper LP-FT (Kumar et al., ICLR 2022): a linear probe first, then fine-tuning from it. The first
`train.probe_epochs` epochs train the head on a frozen encoder (from the encoder cache when SpecAugment is off), then
the encoder unfreezes at `optim.encoder_lr_scale x lr` (core/train.py); a head that already fits keeps the random
start from distorting the pretrained features, which matters on a clinic's few hundred clips."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register
from search_spaces.whisper_balancing import suggest_schedule_and_masks


def define(trial: optuna.Trial) -> None:
    trial.suggest_int("train.probe_epochs", 1, 5)  # of train.epochs = 10
    trial.suggest_float("optim.lr", 1e-4, 3e-3, log=True)  # the head's; the probe epochs take a head's larger steps
    trial.suggest_float("optim.encoder_lr_scale", 0.01, 0.3, log=True)  # the encoder's: 1e-6 .. 1e-3
    suggest_schedule_and_masks(trial, warmup=0.2, time_mask=40, time_masks=2, freq_mask=24)
    trial.suggest_categorical("model.pooling", ["mean", "audio"])
    trial.suggest_categorical("model.layers", ["last", "weighted"])


SPACE = register(SearchSpace(
    name="whisper_lpft",
    description="Whisper LP-FT: probe epochs on the frozen encoder, then fine-tuning at a smaller encoder lr; probe "
                "epochs, head lr, encoder lr scale, warmup, weight decay, SpecAugment, pooling, layers.",
    base={"model.name": "whisper", "model.pretrained": "openai/whisper-base", "model.freeze_encoder": False,
          "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
