"""Which torch device a name means (`train.device`, a command's --device), and whether this machine has it: said in
one line before any work, instead of torch's traceback from deep inside `.to(device)`.

A model folder keeps the `train.device` it was trained with (say `cuda:1`); that is where it trained, not where it
must run, so a folder used without --device on a machine without that GPU runs on what this machine has
(`loading_device`). Low in core, so that the model folder, training and every command share it."""

from __future__ import annotations

import torch

from core.config import DEVICE
from core.errors import UserError

__all__ = ["CHOICES", "check_device", "device_problem", "loading_device", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when there is one, else the CPU; anything else as torch spells it (cpu, cuda, cuda:1)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


CHOICES = "auto, cpu, cuda or cuda:N"


def device_problem(name: str) -> str | None:
    """Why `name` cannot be used here, or None."""
    if not DEVICE.fullmatch(name):
        return f"not a device; choose {CHOICES}"
    if not name.startswith("cuda"):
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "this machine has no CUDA GPU (torch sees none); use auto or cpu"
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        return f"this machine has {count} CUDA GPU(s): cuda:0" + (f" .. cuda:{count - 1}" if count > 1 else "")
    return None


def check_device(name: str | None, flag: str) -> None:
    """Raise a one-line UserError naming `flag` (a --flag, or a config key) if `name` cannot be used here."""
    problem = None if name is None else device_problem(name)
    if problem:
        shown = f"{flag} {name}" if flag.startswith("--") else f"{flag}={name!r}"
        raise UserError(f"{shown}: {problem}")


def loading_device(given: str | None, trained_on: str) -> str:
    """The device to load a saved model on: the one given (checked by the caller), else the one it was trained on
    when this machine has it, else `auto`."""
    if given is not None:
        return given
    return trained_on if device_problem(trained_on) is None else "auto"
