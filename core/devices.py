"""Which torch device a config's `train.device` (or a command's --device) means.

Low in core so that the model folder, training and every command resolve a device the same way without importing
each other."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when there is one, else the CPU; anything else as torch spells it (cpu, cuda, cuda:1)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
