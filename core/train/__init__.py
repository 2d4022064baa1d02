"""One config over its folds, without Ray: `train_fold` (core/train/fold.py, the loop top to bottom) yields one
result per epoch; `python -m core.train` (core/train/__main__.py; its command line is core/cli.py) runs every fold.

Running a package's __main__ imports the package first, so this file stays light: its names load core/train/fold.py
(and torch) on first use, and `python -m core.train --help` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.train.fold import EpochResult, NonFiniteLossError, autocast, cpu_copy, grad_scaler, train_fold

__all__ = ["EpochResult", "NonFiniteLossError", "autocast", "cpu_copy", "grad_scaler", "train_fold"]


def __getattr__(name: str) -> Any:
    """Any public name of core/train/fold.py (train_fold, EpochResult, cpu_copy, ...), loaded on first use."""
    if name.startswith("_") or name == "fold":  # `fold` itself: the import system loads the submodule
        raise AttributeError(f"module 'core.train' has no attribute {name!r}")
    import core.train.fold

    return getattr(core.train.fold, name)
