"""The command-line kit every entry point shares: one-line argparse errors, the UserError → exit 2 wrapper, strict
JSON, and the rule that an output folder never has a user's file replaced without `--overwrite`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (`error: ...`) instead of the whole usage block, and lists the actions
    its arguments made (`arguments`: argparse keeps its own list private)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []  # every add_argument's action, help included, in order
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


def run_command(command: Callable[[], object]) -> int:
    """Run a command's body: its int result is the exit code (anything else: 0); a `UserError` becomes its one
    `error:` line and exit code (2)."""
    try:
        result = command()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def plain_json(value: Any) -> Any:
    """`value` with NaN (e.g. AUROC of a one-class fold) as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not np.isfinite(value) else value


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (NaN written as null), indented, newline-terminated."""
    path.write_text(json.dumps(plain_json(value), indent=2, allow_nan=False) + "\n")


def check_output_folder(folder: Path, flag: str, files: Iterable[str], overwrite: bool) -> Path:
    """Refuse (before any work) an output folder that is a file, cannot be written, or already holds a file this
    command would write, unless `--overwrite`. Other files in it are left alone either way."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder}: is a file, not a folder")
    existing = sorted(name for name in files if (folder / name).exists())
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (" ..." if len(existing) > 4 else "")
        raise UserError(f"{flag} {folder}: already holds {shown}; pass --overwrite to replace, or another {flag}")
    parent = folder
    while not parent.exists():  # the nearest folder that exists is where ours will be made
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{flag} {folder}: {parent} is not a writable folder")
    return folder
