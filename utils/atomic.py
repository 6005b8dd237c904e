"""Atomic file writes: write to a temporary file in the target directory, fsync, then rename.

A reader (or a resumed job) never sees a half-written file: either the old file, no file, or the complete
new one. Temporary files are hidden (``.name.tmp-<host>-<pid>-<n>``) and removed if the write fails.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator, Union

PathLike = Union[str, os.PathLike]

TMP_MARKER = ".tmp-"
# a temporary of another machine is judged by its age alone (its writer's pid means nothing here): one untouched
# this long is left by a writer that died (a write in progress touches its file continuously)
FOREIGN_TEMPORARY_STALE_S = 3600.0
_counter = itertools.count()


def host_name() -> str:
    """This machine's name as it appears in file names (characters other than letters, digits, '.', '_' as '_')."""
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "localhost"


def temporary_path_for(path: PathLike) -> Path:
    """Return a hidden, unique temporary path in the same directory as ``path``, naming this host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARKER}{host_name()}-{os.getpid()}-{next(_counter)}")


def _temporary_writer(name: str) -> tuple[str | None, int | None]:
    """(host, pid) of a temporary name; host None for names without one (written before hosts were named)."""
    fields = name.rsplit(TMP_MARKER, 1)[1].rsplit("-", 2)
    if len(fields) == 3 and fields[1].isdigit():
        return fields[0], int(fields[1])
    return None, int(fields[0]) if len(fields) == 2 and fields[0].isdigit() else None


def is_temporary_file(name: str) -> bool:
    """True for names produced by :func:`temporary_path_for` (loaders and resumers skip them)."""
    return name.startswith(".") and TMP_MARKER in name


def process_is_alive(pid: int) -> bool:
    """True while the process ``pid`` of this machine runs (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files below ``folder`` whose writer process is gone (killed mid-write); returns them.

    A temporary file names its writer (``.name.tmp-<host>-<pid>-<n>``); files of live processes of this machine are
    left alone, so a job may clean its output folder on start while another job writes there. Files of other
    machines (the nodes of a job sharing a network filesystem) are left alone unless untouched for
    ``FOREIGN_TEMPORARY_STALE_S``: a process id says nothing about another machine's processes.
    """
    removed = []
    here, now = host_name(), time.time()
    for directory, _, files in os.walk(folder):
        for name in files:
            if not is_temporary_file(name):
                continue
            host, pid = _temporary_writer(name)
            path = Path(directory) / name
            if host is not None and host != here:
                try:
                    if now - path.stat().st_mtime <= FOREIGN_TEMPORARY_STALE_S:
                        continue
                except FileNotFoundError:  # renamed by its writer meanwhile
                    continue
            elif pid is None or pid == os.getpid() or process_is_alive(pid):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


class WriteError(OSError):
    """An output that cannot be written (a full disk or quota, a read-only or unwritable folder, a file where a
    folder should be); its message names the file that was being written, whatever call failed."""

    folder = False  # True when the folder to write into could not be made

    def __str__(self) -> str:
        return f"cannot {'make the folder' if self.folder else 'write'} {self.filename}: {self.strerror}"


# errors that only a write raises: from inside the ``with`` body they are the output's, not some input's
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def write_error(path: PathLike, error: OSError, folder: bool = False) -> WriteError:
    """``error`` as a :class:`WriteError` naming ``path`` (a file, or the folder that could not be made)."""
    path = Path(path)
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else reason
    named = WriteError(error.errno, reason, str(path))
    named.folder = folder
    return named


def make_folder(folder: PathLike) -> Path:
    """``mkdir -p folder``; raises :class:`WriteError` naming it (with the reason: read-only, a file in the way)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error, folder=True) from error
    return folder


def writable_folder(folder: PathLike) -> Path:
    """:func:`make_folder`, then check that files can be created there (a read-only mount, no permission), so that
    a command refuses its output folder before its work rather than after; raises :class:`WriteError`."""
    folder = make_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise write_error(folder, OSError(code, os.strerror(code)), folder=True)
    return folder


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing (UTF-8 in text mode); on success fsync it and rename it onto ``path``.

    On any exception the temporary file is deleted and ``path`` is left untouched. A failed write (full disk,
    read-only folder, ...) raises :class:`WriteError` naming ``path``.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode, got {mode!r}")
    path = Path(path)
    make_folder(path.parent)
    tmp = temporary_path_for(path)
    input_error = None  # an error of the caller's own inputs, raised as it is
    try:
        try:
            with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
                try:
                    yield handle
                except OSError as error:
                    input_error = None if error.errno in _WRITE_ERRNOS else error
                    raise
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as error:
            if error is input_error or isinstance(error, WriteError):
                raise
            raise write_error(path, error) from error
    except BaseException:
        with contextlib.suppress(OSError):  # a temporary never made; a read-only folder refuses the unlink too
            os.unlink(tmp)
        raise


def append_text(path: PathLike, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` and flush it (for logs whose readers drop a torn last line); raises
    :class:`WriteError` naming the file."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
    except OSError as error:
        raise write_error(path, error) from error


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2) -> None:
    """Serialise ``obj`` as JSON and write it to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def canonical_for_pickle(obj: Any) -> Any:
    """A copy of ``obj`` whose pickle depends on its values only, not on which objects it happens to share.

    Pickle writes an object once and refers back to it when the same object comes again, so two equal
    checkpoints give different bytes when one shares a string (say a dict key) that the other holds twice, as a run
    resumed from a file does where a run from scratch shares Python's interned names. Here every string is
    interned and every dict, list and tuple built afresh (tensors are kept: torch writes each storage once,
    by identity, and storage sharing follows the model's structure). ``OrderedDict`` keeps its attributes
    (``state_dict``'s ``_metadata``).
    """
    kind = type(obj)
    if kind is str:
        return sys.intern(obj)
    if kind is dict or kind is collections.OrderedDict:
        copy = kind((canonical_for_pickle(k), canonical_for_pickle(v)) for k, v in obj.items())
        for name, value in vars(obj).items() if kind is collections.OrderedDict else ():
            setattr(copy, name, canonical_for_pickle(value))
        return copy
    if kind is list or kind is tuple:
        return kind(canonical_for_pickle(item) for item in obj)
    return obj


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to ``path`` atomically (the previous file survives a crash mid-save), canonically: equal
    contents give equal bytes (see :func:`canonical_for_pickle`), so that an interrupted and resumed run writes
    the file of an uninterrupted one and runs can be compared with ``sha256sum``."""
    import torch  # local import: the data-preparation tools do not need torch

    with atomic_write(path, "wb") as handle:
        writer = _WriteRecorder(handle)
        try:
            torch.save(canonical_for_pickle(obj), writer)
        except RuntimeError:
            if writer.error is not None:  # torch turns the file's own error (a full disk) into a bare RuntimeError
                raise writer.error from None
            raise


class _WriteRecorder:
    """A binary file that keeps the first ``OSError`` its writes raise (torch.save does not pass it on)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()
