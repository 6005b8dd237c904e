"""One job per output folder: an advisory lock that a second process on the same folder cannot take.

The lock is ``flock`` on a hidden file in the folder (``.lock``, or ``.lock-<name>`` for jobs that share a folder by
design, such as the shards of a denoising run). The kernel releases it when its process ends, however it ends, so
a lock left by a killed process never blocks a rerun; the file only records who holds it, for the error message.

Some network filesystems (NFS without a lock daemon, Lustre mounted without ``flock``) refuse ``flock`` (ENOLCK,
ENOSYS, EOPNOTSUPP). There the lock falls back, with a warning, to a file created exclusively beside it
(``.lock.held``) that names its holder (host and pid) and is removed when the block ends; one left by a killed
process of this machine is recognised and replaced, one of another machine is reported with its path to delete.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

from utils.atomic import host_name, make_folder, process_is_alive

# flock's answers on filesystems that do not support it (not "held by another process")
FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


class FolderLocked(ValueError):
    """Another live process holds the folder; the message names the folder and the holder (a ValueError: the
    command lines report it as bad input, exit status 2)."""


def lock_path(folder: Path, name: str = "") -> Path:
    """The lock file of ``folder`` (per ``name`` when several jobs share the folder)."""
    return Path(folder) / (f".lock-{name}" if name else ".lock")


@contextlib.contextmanager
def folder_lock(folder: Path, name: str = "", enabled: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock inside the block (creating the folder); raise :class:`FolderLocked` at once when
    another process holds it. ``enabled=False`` (the other ranks of a DDP job) takes no lock."""
    if not enabled:
        yield
        return
    path = lock_path(folder, name)
    make_folder(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(_in_use(folder, _holder(path))) from None
        except OSError as error:
            if error.errno not in FLOCK_UNSUPPORTED:
                raise
            warnings.warn(f"{folder}: this filesystem does not support flock ({os.strerror(error.errno)}); locking "
                          f"with the file {held_path(path)} instead, which a job killed on another machine leaves "
                          "behind")
            with _exclusive_file_lock(folder, held_path(path)):
                yield
            return
        os.ftruncate(descriptor, 0)
        os.write(descriptor, _holder_line().encode())
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def held_path(lock: Path) -> Path:
    """The exclusively created file that stands for ``lock`` where flock is unsupported."""
    return lock.with_name(lock.name + ".held")


def _holder_line() -> str:
    return f"pid {os.getpid()} on {host_name()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
    return "another process"


def _in_use(folder: Path, holder: str) -> str:
    return f"{folder} is in use by {holder}: wait for that run to end, or choose another output folder"


def _dead_holder_here(holder: str) -> bool:
    """True when ``holder`` (a holder line) names a process of this machine that has ended."""
    words = holder.split()
    if len(words) < 4 or words[0] != "pid" or not words[1].isdigit() or words[3] != host_name():
        return False
    return int(words[1]) != os.getpid() and not process_is_alive(int(words[1]))


@contextlib.contextmanager
def _exclusive_file_lock(folder: Path, held: Path) -> Iterator[None]:
    """The fallback lock: ``held`` created with O_EXCL, naming its holder; removed when the block ends."""
    for _ in range(2):  # a second try after removing the file of a dead holder of this machine
        try:
            descriptor = os.open(held, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = _holder(held)
            if not _dead_holder_here(holder):
                raise FolderLocked(f"{_in_use(folder, holder)} (if that run is gone, delete {held})") from None
            warnings.warn(f"{held}: its holder ({holder}) has ended; taking the lock")
            with contextlib.suppress(FileNotFoundError):
                held.unlink()
    else:
        raise FolderLocked(_in_use(folder, _holder(held)))
    try:
        os.write(descriptor, _holder_line().encode())
        os.close(descriptor)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            held.unlink()


CLAIM_LOCK, WRITERS_LOCK = ".lock-claim", ".lock-writers"


@contextlib.contextmanager
def tree_writers(folder: Path, claim: Callable[[bool], None]) -> Iterator[None]:
    """Join the writers of one output tree (the shards of a job, or a whole run beside them).

    Under the tree's claim lock (waited for: a claim takes milliseconds), ``claim(others_writing)`` checks or writes
    the tree's manifest, knowing whether another writer is writing the tree now; the block then runs holding a
    shared writers lock, which tells later claimants that this one is writing. Two writers with different
    settings thus never mix a tree: the second one's claim sees the first's manifest and that it is still writing,
    even before its first image lands. Where ``flock`` is unsupported, ``claim(False)`` runs unguarded (the folder
    locks' warning says so).
    """
    folder = Path(folder)
    make_folder(folder)
    claim_fd = os.open(folder / CLAIM_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    writers_fd = os.open(folder / WRITERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(claim_fd, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in FLOCK_UNSUPPORTED:
                raise
            claim(False)
            yield
            return
        try:
            fcntl.flock(writers_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            others_writing = False
        except BlockingIOError:
            others_writing = True
        claim(others_writing)
        fcntl.flock(writers_fd, fcntl.LOCK_SH)  # still under the claim lock: no claimant sees the conversion
        fcntl.flock(claim_fd, fcntl.LOCK_UN)
        yield
    finally:
        os.close(claim_fd)
        os.close(writers_fd)
