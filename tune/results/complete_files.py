"""Complete-or-nothing writes for a local --storage: a file is replaced only once its new content is complete, so a
disk that fills up mid-search leaves the last good search state, results and checkpoints, never half-written ones
(Tune rewrites its state files in place: without this, a full disk truncated them and `--resume` failed). Hand-written
because pyarrow's LocalFileSystem writes in place and has no atomic-replace option.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pyarrow as pa
import pyarrow.fs as pafs


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
