"""The command-line conventions every Python CLI of the project shares (docs/conventions.md).

* ``--output-dir DIR``: the folder a command writes (``--out FILE`` is kept for commands that write one file);
* ``--num-workers N``: worker processes (data loading, decoding); ``--workers`` is accepted too;
* ``--quiet``: no progress bars; ``--no-progress`` is accepted too;
* ``--device auto|cpu|cuda|cuda:N`` and ``--seed N`` where they apply;
* exit status 0 on success, :data:`EXIT_BAD_INPUT` (2, argparse's own) for bad arguments or input, named in one
  line on stderr, and :data:`EXIT_FAILURE` (1) for a run that fails on its own (a non-finite loss).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def add_output_dir(parser: argparse.ArgumentParser, help: str, *aliases: str, required: bool = True,
                   **kwargs: Any) -> None:
    """``--output-dir`` (plus older spellings in ``aliases``, e.g. ``--dst``), stored as ``args.output_dir``."""
    parser.add_argument("--output-dir", *aliases, dest="output_dir", type=Path, required=required, help=help,
                        **kwargs)


def add_num_workers(parser: argparse.ArgumentParser, default: int, help: Optional[str] = None) -> None:
    """``--num-workers`` (alias ``--workers``), stored as ``args.num_workers``."""
    parser.add_argument("--num-workers", "--workers", dest="num_workers", type=non_negative_int, default=default,
                        help=help or "worker processes (0: in this process; default %(default)s)")


class RenamedOption(argparse.Action):
    """An option that was renamed or replaced: using it is a usage error (exit status 2) naming what to use.

        parser.add_argument("--noise", action=RenamedOption, new_name="--noise-label", why="it labels the result")
    """

    def __init__(self, option_strings: list[str], dest: str, new_name: str, why: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new_name, self.why = new_name, why

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        parser.error(f"{option_string} is now {self.new_name}: {self.why}")


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer >= 0 (a count of workers, of images)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` (alias ``--no-progress``): no progress bars; stored as ``args.quiet``."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="hide the progress bars")


def fail(message: str) -> NoReturn:
    """Stop a command for bad arguments or input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def check_outside(output: "os.PathLike | str", inputs: dict[str, "os.PathLike | str"],
                  option: str = "--output-dir") -> None:
    """Raise ``ValueError`` when ``output`` is one of the input folders (``{option name: folder}``) or lies inside
    one: its files would be read back as input, or overwrite it."""
    out = Path(output).resolve()
    for name, folder in inputs.items():
        source = Path(folder).resolve()
        if out == source or source in out.parents:
            raise ValueError(f"{option} {output} is {name} {folder} or lies inside it: choose a folder outside")


def squeezed(error: BaseException, limit: int = 200) -> str:
    """An error's whole message on one line (its whitespace runs collapsed), cut at ``limit`` characters: for
    messages such as torch's state-dict mismatches, whose lines all matter."""
    return " ".join(str(error).split())[:limit]


def one_line(error: BaseException) -> str:
    """The last line of an error's message: an error raised in a DataLoader worker comes back with the worker's
    traceback in its message, whose last line is the original error (``Type: message``)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
