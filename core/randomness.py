"""Per-fold random streams, so folds advanced in lockstep (or resumed from a checkpoint) give the same numbers
as a fold run alone: each fold owns its torch and numpy state and swaps it in only while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


class FoldRandom:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.numpy = np.random.Generator(np.random.PCG64(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._torch = torch.get_rng_state()
        self._cuda: torch.Tensor | None = None

    @contextlib.contextmanager
    def active(self, device: torch.device) -> Iterator[None]:
        """Run the block on this fold's torch RNG; the caller's RNG state is restored afterwards."""
        cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if cuda else []):
            torch.set_rng_state(self._torch)
            if cuda:
                if self._cuda is None:
                    torch.cuda.manual_seed(self.seed)
                else:
                    torch.cuda.set_rng_state(self._cuda, device)
            yield
            self._torch = torch.get_rng_state()
            if cuda:
                self._cuda = torch.cuda.get_rng_state(device)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "numpy": self.numpy.bit_generator.state, "torch": self._torch,
                "cuda": self._cuda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.numpy.bit_generator.state = state["numpy"]
        self._torch = state["torch"]
        self._cuda = state["cuda"]


def fold_seed(seed: int, fold: int) -> int:
    """Independent, reproducible seed for each fold of a config."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])
