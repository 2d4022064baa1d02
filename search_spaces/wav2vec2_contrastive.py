"""Wav2Vec2 on waveforms with the same-word contrastive loss (normal vs abnormal of one word pushed apart)."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register


def define(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.lr", 1e-5, 5e-4, log=True)
    trial.suggest_float("optim.warmup_ratio", 0.0, 0.3)
    trial.suggest_float("loss.contrastive_weight", 0.01, 1.0, log=True)
    trial.suggest_float("loss.temperature", 0.05, 0.5, log=True)
    trial.suggest_categorical("model.freeze_feature_encoder", [True, False])


SPACE = register(SearchSpace(
    name="wav2vec2_contrastive",
    description="Wav2Vec2 (normalised waveforms, masked pooling), contrastive loss over same-word pairs with a "
                "word-aware batch sampler; lr, warmup, contrastive weight and temperature, feature-encoder freezing.",
    base={"model.name": "wav2vec2", "model.pretrained": "facebook/wav2vec2-base", "loss.name": "contrastive",
          "train.sampler": "word_pairs", "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
