"""Where a search's results live: a local folder or any URI pyarrow understands (s3://, gs://, file://).

Tune writes its checkpoints there itself; this module writes ours (leaderboard, export, run settings) the same
way, so nothing assumes the driver's disk is visible to anyone else.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from core.errors import UserError


def is_uri(storage: str) -> bool:
    return "://" in storage


class RunStore:
    def __init__(self, storage: str, name: str) -> None:
        self.storage = storage if is_uri(storage) else str(Path(storage).expanduser().resolve())
        self.name = name
        if is_uri(storage):
            self.fs, root = pafs.FileSystem.from_uri(storage)
        else:
            self.fs, root = pafs.LocalFileSystem(), self.storage
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{name}"

    @property
    def location(self) -> str:
        """The experiment folder as Tune's `Tuner.restore` wants it (path or URI)."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    def _file(self, filename: str) -> str:
        return f"{self.path}/{filename}"

    def exists(self, filename: str = "") -> bool:
        target = self._file(filename) if filename else self.path
        return self.fs.get_file_info(target).type != pafs.FileType.NotFound

    def write_bytes(self, filename: str, data: bytes) -> str:
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(self._file(filename)) as stream:
            stream.write(data)
        return self.display(filename)

    def read_bytes(self, filename: str) -> bytes:
        with self.fs.open_input_stream(self._file(filename)) as stream:
            return stream.read()

    def display(self, filename: str) -> str:
        return f"{self.location}/{filename}"

    def check_writable(self) -> None:
        """Fail early (exit 2) rather than after hours of training."""
        probe = f".audiotune-write-test-{uuid.uuid4().hex}"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(f"{self.root}/{probe}") as stream:
                stream.write(b"ok")
            self.fs.delete_file(f"{self.root}/{probe}")
        except (OSError, PermissionError) as error:
            raise UserError(f"--storage {self.storage}: not writable ({error})") from error
        if not is_uri(self.storage) and not os.access(self.root, os.W_OK):
            raise UserError(f"--storage {self.storage}: not writable")
