"""Pretrained weights that are pickles (`pytorch_model.bin`, a `.pt` state_dict) are a file a user was handed:
torch and transformers load them with `weights_only=True`, which refuses any Python object but tensors and plain
containers. Such a refusal is answered here with one line naming the file; torch's own message (which suggests
re-running with `weights_only=False`, i.e. running the file's code) is never passed on."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import torch

from core.errors import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refused(source: str, file: Path | str) -> ConfigError:
    return ConfigError(f"model.pretrained={source!r}: {file}: refused: a pickle holding Python objects besides "
                       "tensors (loading it would run its code); use a safetensors checkpoint (model.safetensors) "
                       "or a state_dict of tensors only")


def pickled_weights(source: str) -> Path | str:
    """The pickle a failed load came from: the source file itself, or the folder's pickled weight file(s)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    found = sorted(p for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
    return found[0] if len(found) == 1 else (f"{path}/{{{','.join(p.name for p in found)}}}" if found else path)


@contextlib.contextmanager
def refusing_pickles(source: str) -> Iterator[None]:
    """Turn `weights_only=True`'s refusal inside the block into one line naming the file."""
    try:
        yield
    except pickle.UnpicklingError:
        raise refused(source, pickled_weights(source)) from None


def looks_local(source: str) -> bool:
    """A filesystem path rather than a hub id ("org/name"): absolute, relative to '.', '~', or existing."""
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def check_source(source: str) -> None:
    """Before any work: a local source that does not exist is named as missing (before any rule about what it
    was trained on), and its pickled weights are unpickled with `weights_only=True`, memory-mapped so that no
    tensor data is read, so that one holding Python objects is refused now rather than in a trial."""
    if source == "none":
        return
    path = Path(source).expanduser()
    if not looks_local(source):
        return
    if not path.exists():
        raise ConfigError(f"model.pretrained={source!r}: no such file or folder")
    files = [path] if path.is_file() else sorted(path.iterdir())
    for file in files:
        if file.is_file() and file.suffix in PICKLE_SUFFIXES:
            unpickle_safely(source, file)


def unpickle_safely(source: str, file: Path) -> None:
    try:
        try:
            torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not torch's zip format (mmap needs it): read it whole
            torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise refused(source, file) from None
    except Exception:  # noqa: BLE001 (other faults are reported, naming the file, where the weights are loaded)
        return
