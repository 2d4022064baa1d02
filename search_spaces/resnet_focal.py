"""ResNet50 on a 224 x 224 log-mel image with the focal loss."""

from __future__ import annotations

import optuna

from search_spaces.space import SearchSpace, register, suggest_spec_augment


def define(trial: optuna.Trial) -> None:
    """Learning rate and weight decay, the focal loss's focusing and class weight, SpecAugment on the image."""
    trial.suggest_float("optim.lr", 1e-5, 1e-3, log=True)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_float("loss.gamma", 0.0, 5.0)
    trial.suggest_float("loss.alpha", 0.1, 0.9)
    suggest_spec_augment(trial, time_mask=40, time_masks=2, freq_mask=40, freq_masks=2)


SPACE = register(SearchSpace(
    name="resnet_focal",
    description="ResNet50 on 224 mel x 224 frames, focal loss; lr, weight decay, gamma, alpha, SpecAugment.",
    base={"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024, "loss.name": "focal",
          "data.k_fold": 5, "train.epochs": 10},
    define=define,
))
