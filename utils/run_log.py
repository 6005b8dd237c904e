"""``RUN/log.txt``: a copy of everything a training run prints, with the time of each line.

Standard output is copied whole; of standard error, the complete lines are copied and the progress bars (lines
redrawn with carriage returns) are not; warnings are logged once each, as ``warning: <category>: <message>``.
The file is appended to, so a resumed run continues the log of the run it resumes. Only the process that writes
the run folder (rank 0) opens it. A full disk ends the log (with one warning), never the run.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Iterator, TextIO

from utils.atomic import make_folder, write_error

LOG_FILENAME = "log.txt"


class _Tee:
    """A text stream that writes to ``stream`` and copies complete lines to ``log`` (minus progress bars)."""

    def __init__(self, stream: TextIO, log: "_Log", drop_redrawn_lines: bool) -> None:
        self.stream, self.log, self.drop_redrawn_lines = stream, log, drop_redrawn_lines
        self.pending = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if self.drop_redrawn_lines and "\r" in line:
                continue
            if line.strip():
                self.log.line(line)
        if self.drop_redrawn_lines and "\r" in self.pending:
            # a progress bar redrawn for a whole epoch: keep its last state only (it will be dropped anyway), so
            # that the pending text, scanned at every write, stays one bar long
            self.pending = "\r" + self.pending.rpartition("\r")[2]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding...: those of the real stream
        return getattr(self.stream, name)


class _Log:
    """The open log file. A write that fails (a full disk) ends the log with one warning on the real standard
    error, and never the run: the command goes on and reports its own errors."""

    def __init__(self, handle: IO[str], path: Path, stderr: TextIO) -> None:
        self.handle, self.path, self.stderr, self.broken = handle, path, stderr, False

    def line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.handle.flush()
        except OSError as error:
            self.broken = True
            print(f"warning: cannot write {self.path} ({error.strerror or error}): the log stops here",
                  file=self.stderr)


@contextlib.contextmanager
def run_log(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Copy this process's output into ``run_dir/log.txt`` inside the block (a no-op when not ``enabled``)."""
    if not enabled:
        yield
        return
    make_folder(run_dir)
    path = run_dir / LOG_FILENAME
    try:
        handle = open(path, "a", encoding="utf-8")
    except OSError as error:
        raise write_error(path, error) from error
    with handle:
        stdout, stderr, show_warning = sys.stdout, sys.stderr, warnings.showwarning
        log = _Log(handle, path, stderr)

        def log_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            log.line(f"warning: {category.__name__}: {message}")
            show_warning(message, category, filename, lineno, file if file is not None else stderr, line)

        sys.stdout = _Tee(stdout, log, drop_redrawn_lines=False)  # type: ignore[assignment]
        sys.stderr = _Tee(stderr, log, drop_redrawn_lines=True)  # type: ignore[assignment]
        warnings.showwarning = log_warning
        try:
            yield
        except BaseException as error:  # the error that ends the run, as the command line will show it
            if not isinstance(error, (SystemExit, KeyboardInterrupt)):
                log.line(f"error: {type(error).__name__}: {error}")
            raise
        finally:
            sys.stdout, sys.stderr, warnings.showwarning = stdout, stderr, show_warning
