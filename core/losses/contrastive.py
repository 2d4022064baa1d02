"""Contrastive loss: cross-entropy + `loss.contrastive_weight` x a same-word supervised-contrastive term.

The disorder shows as a clip differing from *the same word* said right, so only same-word pairs are compared:
same-word, same-label clips are pulled together and same-word clips of other labels pushed apart, on the model's
`outputs["embedding"]` (the projection). Exact term, for a batch with L2-normalised embeddings z_i:

    s_ij   = cos(z_i, z_j) / temperature
    A(i)   = {j != i : word_j == word_i}                  (candidates: same word, any label)
    P(i)   = {j in A(i) : label_j == label_i}             (positives)
    l_i    = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} exp(s_ia) )
    term   = mean of l_i over the anchors i with |P(i)| > 0

i.e. supervised contrastive loss (Khosla et al., 2020) with the denominator restricted to the anchor's word.
Pairs are found inside the batch (`train.sampler=word_pairs` makes sure there are some); a batch without any
anchor contributes 0 for the term. Computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.statistics import FoldStatistics


def same_word_contrastive(embeddings: torch.Tensor, word_ids: torch.Tensor, labels: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """The term above (a 0-d tensor; 0 when the batch has no same-word, same-label pair)."""
    z = nn.functional.normalize(embeddings.float(), dim=-1)
    similarity = z @ z.T / temperature
    others = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    candidates = (word_ids[:, None] == word_ids[None, :]) & others
    positives = candidates & (labels[:, None] == labels[None, :])
    anchors = positives.any(dim=1)
    if not bool(anchors.any()):
        return similarity.new_zeros(())
    similarity, candidates, positives = similarity[anchors], candidates[anchors], positives[anchors]
    log_norm = torch.logsumexp(similarity.masked_fill(~candidates, float("-inf")), dim=1, keepdim=True)
    log_prob = torch.where(positives, similarity - log_norm, torch.zeros_like(similarity))
    return (-log_prob.sum(dim=1) / positives.sum(dim=1)).mean()


class ContrastiveLoss(nn.Module):
    def __init__(self, weight: float, temperature: float) -> None:
        super().__init__()
        self.weight = weight
        self.temperature = temperature

    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        ce = nn.functional.cross_entropy(outputs["logits"].float(), batch.targets)
        pairs = same_word_contrastive(outputs["embedding"], batch.word_ids, batch.targets, self.temperature)
        return ce + self.weight * pairs


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    return ContrastiveLoss(config.loss.contrastive_weight, config.loss.temperature)
