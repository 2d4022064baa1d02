"""Where a search's results live: a local folder or any URI pyarrow understands (s3://, gs://, file://).

Tune writes its checkpoints there itself; this module writes ours (leaderboard, export, run settings) the same
way, so nothing assumes the driver's disk is visible to anyone else.

A local --storage is written through `CompleteFiles` (tune/results/complete_files.py); a full one stops the search
(tune/engine/storage_full.py). Here: names, the experiment folder's marker and lock, and the checks before a search.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from core.errors import UserError
from tune.results.complete_files import CompleteFiles

# Written into every experiment folder this project creates: `--overwrite` deletes only folders that carry it.
MARKER = ".audiotune-experiment"
# Held (flock) by the one process running the search; the kernel drops it when that process dies, so a stale lock
# of a killed driver is recognised without guessing from pids.
LOCK = ".audiotune-lock"
# One folder name: no separators, no "." / "..", nothing a shell or a bucket would read differently.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Refused below this (a local --storage): the first checkpoints would not fit. A toy search needs ~20 MB; a real
# one more (a trial keeps k folds of weights and optimizer state, twice while it replaces its checkpoint).
MIN_FREE_BYTES = 50 * 2**20


def is_uri(storage: str) -> bool:
    return "://" in storage


def check_name(name: str) -> str:
    """An experiment name is one path component of safe characters (so it can never escape --storage)."""
    if not NAME.fullmatch(name) or name.strip(".") == "":
        raise UserError(f"--name {name!r}: an experiment name is one folder name of letters, digits, '.', '_' and "
                        "'-' (starting with a letter or digit, at most 100 characters)")
    return name


def storage_filesystem(storage: str) -> pafs.FileSystem | None:
    """What Tune should write a --storage through: `CompleteFiles` for a local folder; None (Tune's own choice)
    for a URI, whose object stores already replace an object only with a complete upload."""
    return None if is_uri(storage) else pafs.PyFileSystem(CompleteFiles())


def free_bytes(folder: str) -> int:
    """Free space of the file system holding `folder` (or its nearest existing parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


class ExperimentInUse(UserError):
    """Another live process holds the experiment's lock."""


def hold_lock(file: Path, refusal: Callable[[str], Exception]) -> Any:
    """Take `file`'s exclusive lock for as long as the returned open file lives (closing it, or the process ending,
    releases it) and write who holds it; raise `refusal(holder)` if a live process holds it already."""
    handle = open(file, "a+b")  # noqa: SIM115 (kept open: closing it releases the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise refusal(holder) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode())
    handle.flush()
    return handle


class RunStore:
    def __init__(self, storage: str, name: str) -> None:
        check_name(name)
        self.storage = storage if is_uri(storage) else str(Path(storage).expanduser().resolve())
        self.name = name
        if is_uri(storage):
            try:
                self.fs, root = pafs.FileSystem.from_uri(storage)
            except (OSError, ValueError) as error:  # pyarrow: ArrowInvalid (a ValueError) for an unknown scheme
                raise UserError(f"--storage {storage}: cannot open it ({str(error).splitlines()[0]}); give a "
                                "folder or a URI with a scheme pyarrow opens (file://, s3://, gs://, hdfs://)"
                                ) from error
        else:
            self.fs, root = storage_filesystem(self.storage), self.storage
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

    def is_ours(self) -> bool:
        return self.exists(MARKER)

    def create(self) -> None:
        """Make the experiment folder with its marker; refuse one that appeared since the checks (another run)."""
        if not is_uri(self.storage):
            try:
                os.makedirs(self.path, exist_ok=False)  # atomic: of two runs started together, one gets here
            except FileExistsError:
                raise UserError(f"experiment {self.location} was created by another run just now: --resume to "
                                "continue it, or pick another --name") from None
        self.write_bytes(MARKER, json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                             "host": socket.gethostname(), "pid": os.getpid()}).encode() + b"\n")

    def delete(self) -> None:
        """`--overwrite`: delete the experiment folder, only if this project made it."""
        if not self.is_ours():
            raise UserError(f"--overwrite: {self.location} was not created by audiotune (no {MARKER} in it); "
                            "refusing to delete it: pick another --name")
        self.fs.delete_dir(self.path)

    def lock(self) -> AbstractContextManager[Any]:
        """Hold the experiment's lock for this process's life (the open file is the lock); refuse if a live
        process holds it. Storage URIs have no shared lock primitive: there the folder's marker is all (see
        docs/cluster.md)."""
        if is_uri(self.storage):
            return contextlib.nullcontext()
        os.makedirs(self.path, exist_ok=True)
        return hold_lock(Path(self.path, LOCK), lambda holder: ExperimentInUse(
            f"experiment {self.location} is in use by a running search ({holder}); wait for it to end, or stop it "
            "first"))

    def reserve(self) -> AbstractContextManager[Any]:
        """Hold this experiment's name on this machine from the first checks on, before the folder exists (the data
        checks take minutes under load): a second tune.run of the same --name is refused at once, in one line. The
        lock file lives in the machine's temp folder, not in --storage, so a run refused for bad input has written
        nothing there; the kernel drops the lock when the process ends."""
        import hashlib
        import tempfile

        if is_uri(self.storage):
            return contextlib.nullcontext()
        folder = Path(tempfile.gettempdir()) / "audiotune-locks"
        folder.mkdir(mode=0o1777, exist_ok=True)  # shared by the machine's users, like /tmp itself
        key = hashlib.sha256(os.path.realpath(self.path).encode()).hexdigest()[:32]
        return hold_lock(folder / f"{key}.lock", lambda holder: UserError(
            f"experiment {self.location} is being started or run by another tune.run ({holder}); wait for it, "
            "--resume it once it has stopped, or pick another --name"))

    def check_free(self) -> None:
        """Refuse now (before the data checks) to resume or overwrite a search that is still running."""
        if not is_uri(self.storage) and Path(self.path, LOCK).is_file():  # no lock file: nobody holds it
            with self.lock():
                pass

    def claim(self, resume: bool, overwrite: bool) -> AbstractContextManager[Any]:
        """Take the experiment folder for this run: continue it (--resume), replace it (--overwrite, ours only)
        or create it; returns the held lock."""
        if resume:
            return self.lock()
        if overwrite and self.exists():
            with self.lock():  # a running search keeps its folder
                self.delete()
        self.create()
        return self.lock()

    def check_writable(self) -> None:
        """Fail early (exit 2) rather than after hours of training."""
        probe = f".audiotune-write-test-{uuid.uuid4().hex}"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(f"{self.root}/{probe}") as stream:
                stream.write(b"ok")
            self.fs.delete_file(f"{self.root}/{probe}")
        except (OSError, ValueError) as error:  # a bucket that does not exist or answer: OSError from pyarrow
            raise UserError(f"--storage {self.storage}: not writable ({str(error).splitlines()[0]})") from error
        if not is_uri(self.storage) and not os.access(self.root, os.W_OK):
            raise UserError(f"--storage {self.storage}: not writable")
        if not is_uri(self.storage) and (free := free_bytes(self.root)) < MIN_FREE_BYTES:
            raise UserError(f"--storage {self.storage}: only {megabytes(free)} free; a search needs at least "
                            f"{megabytes(MIN_FREE_BYTES)} for its checkpoints: free space there or pick another "
                            "--storage")
