"""One job per output folder: an advisory lock that a second process on the same folder cannot take.

The lock is ``flock`` on a hidden file in the folder (``.lock``, or ``.lock-<name>`` for jobs that share a folder by
design, such as the shards of a denoising run). The kernel releases it when its process ends, however it ends, so
a lock left by a killed process never blocks a rerun; the file only records who holds it, for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator


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
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
            raise FolderLocked(f"{folder} is in use by {holder}: wait for that run to end, or choose another output "
                               f"folder") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()} since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
