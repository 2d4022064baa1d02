"""Inference on a set of rows: no augmentation, fixed order, so the same model gives the same numbers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.bias import bias_metrics
from core.config import DataConfig
from core.data.batches import batch_rows, make_batch
from core.data.dataset import AudioData
from core.metrics import classification_metrics, regression_metrics
from core.models import forward_batch


@torch.no_grad()
def predict(model: nn.Module, featurizer: nn.Module, data: AudioData, rows: np.ndarray, device: torch.device,
            batch_size: int) -> np.ndarray:
    """Class probabilities [n, classes] (or predicted values [n, 1]) for `rows`, in the order of `rows`."""
    model.eval()
    featurizer.eval()
    outputs = []
    for chunk in batch_rows(np.asarray(rows), batch_size, rng=None):
        batch = make_batch(data, chunk, device)
        logits = forward_batch(model, featurizer, batch)["logits"].float()
        values = logits if data.regression else logits.softmax(dim=-1)
        outputs.append(values.cpu().numpy()[np.argsort(np.argsort(chunk))])  # back to the order of `chunk`
    return np.concatenate(outputs) if outputs else np.zeros((0, data.num_outputs), np.float32)


def score(data: AudioData, rows: np.ndarray, outputs: np.ndarray, settings: DataConfig | None = None
          ) -> dict[str, float]:
    """Regression metrics on the single output for numeric targets; otherwise classification metrics and the bias
    metrics (core/bias.py: per-age-band UAR in the bands of `settings.age_bands`, per-speaker UAR; `settings`
    defaults to DataConfig's defaults)."""
    if data.regression:
        return regression_metrics(data.targets[rows], outputs[:, 0])
    speakers = data.speakers[rows] if data.speakers is not None else None
    settings = settings or DataConfig()
    edges = [float(edge) for edge in settings.age_bands]
    return {**classification_metrics(data.targets[rows], outputs),
            **bias_metrics(data.targets[rows], outputs, data.ages[rows], speakers, edges, settings.bias_min_clips)}
