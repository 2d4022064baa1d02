"""Training batch samplers by name: which rows go together in a batch (e.g. the contrastive loss needs pairs of
the same word in a batch). Evaluation never uses them: it reads rows in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from core.data.batches import batch_rows
from core.data.dataset import AudioData
from core.registry import Registry

Sampler = Callable[[AudioData, np.ndarray, int, np.random.Generator], Iterator[np.ndarray]]
SAMPLERS: Registry[Sampler] = Registry("batch sampler")


@SAMPLERS.register("random")
def random_batches(data: AudioData, rows: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A fresh random order of the training rows every epoch; with data.shuffle=false, the rows in the given order
    (and no draw from `rng`)."""
    return batch_rows(rows, batch_size, rng if data.shuffle else None)


QUAD = 4  # rows of one word kept together: two same-label pairs, of two labels where the word has both


@SAMPLERS.register("word_pairs")
def word_pair_batches(data: AudioData, rows: np.ndarray, batch_size: int,
                      rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Batches made of same-word quads, for the contrastive loss: a quad holds a same-label pair of one word and,
    where the word has both labels, a pair of the other label too (so the batch has pairs to pull together and to
    push apart). Each word's rows are shuffled and grouped into quads; the quads are shuffled across words and
    the < 4 rows each word has left over go last. Every row is used exactly once per epoch, in ceil(n / batch_size)
    batches like `random`; with batch_size a multiple of 4, every batch before the leftovers is whole quads."""
    labels = data.targets[rows] if data.classes else np.zeros(len(rows), dtype=np.int64)
    words = data.word_ids[rows]
    quads: list[np.ndarray] = []
    leftovers: list[np.ndarray] = []
    for word in np.unique(words):
        sequence = _word_sequence(rows[words == word], labels[words == word], rng)
        whole = len(sequence) - len(sequence) % QUAD
        quads.extend(sequence[:whole].reshape(-1, QUAD))
        leftovers.append(sequence[whole:])
    pieces = [quads[i] for i in rng.permutation(len(quads))] + [leftovers[i] for i in rng.permutation(len(leftovers))]
    order = np.concatenate(pieces) if pieces else rows[:0]
    return batch_rows(order, batch_size, None)


def _word_sequence(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One word's rows as shuffled same-label pairs taking turns between labels (n n a a n n a a ...), then the
    rows left without a partner; cut into fours, this gives the quads."""
    pairs: list[np.ndarray] = []
    singles: list[np.ndarray] = []
    for label in np.unique(labels):
        mine = rng.permutation(rows[labels == label])
        paired = len(mine) - len(mine) % 2
        pairs.append(mine[:paired].reshape(-1, 2))
        singles.append(mine[paired:])
    turns = [group[k] for k in range(max(len(group) for group in pairs)) for group in pairs if k < len(group)]
    return np.concatenate([*turns, *singles])
