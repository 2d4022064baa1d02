"""The projection + head shared by every backbone."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """pooled -> Linear(projection_dim) -> GELU -> dropout -> Linear(num_outputs).

    The nonlinearity matters: two stacked linear layers are one linear layer. The projection is returned as the
    embedding that the contrastive loss compares.
    """

    def __init__(self, in_dim: int, projection_dim: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(in_dim, projection_dim), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(projection_dim, num_outputs)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.projection(pooled)
        return {"logits": self.head(embedding), "embedding": embedding}
