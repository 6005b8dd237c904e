"""Run a command once no other run holds a shared stage's lock: ``python -m utils.wait_turn LOCK -- COMMAND...``.

Runs that share a data folder (two quick starts with another ``OUT`` and one ``DATA_ROOT``) would otherwise reach
its stages together, and the second one's command would stop at the folder lock of the first ("... is in use").
Behind this wrapper it waits its turn (``flock`` on ``LOCK``, released by the kernel however the holder ends), then
runs the command, which finds the stage done and skips it. Exit status: the command's. Where ``flock`` is
unsupported the command runs at once, with a warning.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import warnings
from pathlib import Path

from utils.run_lock import FLOCK_UNSUPPORTED


def wait_turn(lock: Path) -> int:
    """A descriptor holding ``lock`` exclusively (the caller keeps it open while its command runs); waits, saying
    so once, while another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another run's turn at {lock.parent} ({lock.name})", flush=True)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in FLOCK_UNSUPPORTED:
            raise
        warnings.warn(f"{lock}: this filesystem does not support flock; running without waiting for other runs")
    return descriptor


def main(argv: list[str] | None = None) -> int:
    """``LOCK -- COMMAND...``: run COMMAND holding LOCK; exit with its status (2 on a bad command line)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m utils.wait_turn LOCK -- COMMAND...", file=sys.stderr)
        return 2
    descriptor = wait_turn(Path(argv[0]))
    try:
        return subprocess.run(argv[2:]).returncode
    finally:
        os.close(descriptor)


if __name__ == "__main__":
    sys.exit(main())
