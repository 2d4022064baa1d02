"""Where a search's results live: a local folder or any URI pyarrow understands (s3://, gs://, file://).

Tune writes its checkpoints there itself; this module writes ours (leaderboard, export, run settings) the same
way, so nothing assumes the driver's disk is visible to anyone else.

A local --storage is written through `CompleteFiles`: a file is replaced only once its new content is complete, so
a disk that fills up mid-search leaves the last good search state, results and checkpoints, never half-written
ones (Tune rewrites its state files in place: without this, a full disk truncated them and `--resume` failed).
When a trial fails because the disk is full, `StopWhenStorageFull` stops the search gracefully.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import cloudpickle
import pyarrow as pa
import pyarrow.fs as pafs
from ray.tune import Callback
from ray.tune.experiment import Trial

from core.errors import UserError

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


def out_of_space(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it wraps (Ray keeps a trial's own exception as `.cause`), is ENOSPC."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and (error.errno == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(error)):
            return True
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return False


class _CompleteOrNothing:
    """A file written beside its target and renamed over it on close; a failed write or close removes it (and
    frees its space) instead, leaving the target as it was."""

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(path)
        self.path = path
        self.partial = os.path.join(folder, f".{name}.partial-{uuid.uuid4().hex[:8]}")
        os.makedirs(folder, exist_ok=True)  # pyarrow's copy_files does not make the folder first for this handler
        self._file = open(self.partial, "wb")  # noqa: SIM115 (closed by close() or on failure)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def write(self, data: bytes) -> int:
        try:
            return self._file.write(data)
        except BaseException:
            self.discard()
            raise

    def flush(self) -> None:
        try:
            self._file.flush()
        except BaseException:
            self.discard()
            raise

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()
        except BaseException:
            self.discard()
            raise
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.partial)

    def __del__(self) -> None:  # dropped without close(): an abandoned write
        if hasattr(self, "_file") and not self._file.closed:
            self.discard()


class CompleteFiles(pafs.FileSystemHandler):
    """The local file system, except that an output stream replaces its file only when it closes successfully.
    Picklable, so Tune's trial workers write checkpoints through it too."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return CompleteFiles, ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompleteFiles)

    def __hash__(self) -> int:
        return hash(CompleteFiles)

    def get_type_name(self) -> str:
        return "audiotune-complete-files"

    def equals(self, other: object) -> bool:
        return isinstance(other, CompleteFiles)

    def normalize_path(self, path: str) -> str:
        return self.local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict[str, str] | None = None) -> pa.NativeFile:
        return pa.PythonFile(_CompleteOrNothing(path), mode="w")

    def open_append_stream(self, path: str, metadata: dict[str, str] | None = None) -> pa.NativeFile:
        return self.local.open_append_stream(path)


def storage_filesystem(storage: str) -> pafs.FileSystem | None:
    """What Tune should write a --storage through: `CompleteFiles` for a local folder; None (Tune's own choice)
    for a URI, whose object stores already replace an object only with a complete upload."""
    return None if is_uri(storage) else pafs.PyFileSystem(CompleteFiles())


class StorageFull:
    """What `StopWhenStorageFull` saw, for the CLI in the same (driver) process: the callback itself is pickled
    with the experiment, so a restored search runs another instance of it."""

    trial: str | None = None
    finished = 0

    @classmethod
    def reset(cls) -> None:
        cls.trial, cls.finished = None, 0


def failed_for_space(trial: Trial) -> bool:
    """Whether the trial's latest failure was a full disk (its error files are in the driver's own staging
    folder, written before the failure callbacks run)."""
    if trial.pickled_error_file and os.path.isfile(trial.pickled_error_file):
        with contextlib.suppress(Exception), open(trial.pickled_error_file, "rb") as stream:
            return out_of_space(cloudpickle.load(stream))
    if trial.error_file and os.path.isfile(trial.error_file):  # appended per failure: the last one counts
        latest = Path(trial.error_file).read_text(errors="replace").rsplit("Failure #", 1)[-1]
        return os.strerror(errno.ENOSPC) in latest
    return False


class StopWhenStorageFull(Callback):
    """A trial that failed because --storage is full stops the search at once and gracefully (Tune saves what it
    can, the trial stays unfinished, to resume from its last checkpoint), instead of retrying it and then failing
    every remaining trial the same way. The failure is not counted against the trial's retries: the disk failed,
    not the config."""

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):
            trial.run_metadata.num_failures -= 1
            self._stop(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):
            self._stop(trials, trial)

    @staticmethod
    def _stop(trials: list[Trial], trial: Trial) -> None:
        if StorageFull.trial is None:
            StorageFull.trial = trial.trial_id
        StorageFull.finished = sum(t.status == Trial.TERMINATED for t in trials)
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's graceful stop, as for Ctrl-C (tune/interrupt.py)
        if callable(tune_stop):
            logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # its restore hint is not our command
            tune_stop(signal.SIGUSR1, None)


class HideStorageFullLogs(logging.Filter):
    """Drops Ray's tracebacks of a full disk (trial failures, state saves): the CLI says it once, plainly."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and out_of_space(record.exc_info[1]):
            return False
        return os.strerror(errno.ENOSPC) not in record.getMessage()


def hide_storage_full_logs() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state",
                 "ray.train._internal.syncer", "ray.tune.tune"):
        logging.getLogger(name).addFilter(HideStorageFullLogs())


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
        handle = open(f"{self.path}/{LOCK}", "a+b")  # noqa: SIM115 (kept open: closing it releases the lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().decode(errors="replace").strip() or "another process"
            handle.close()
            raise ExperimentInUse(f"experiment {self.location} is in use by a running search ({holder}); wait for "
                                  "it to end, or stop it first") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode())
        handle.flush()
        return handle

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
