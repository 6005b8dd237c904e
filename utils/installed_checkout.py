"""Check that ``python`` imports the project from a given checkout (``pip install -e .`` there).

The recipes and the test suite run this checkout's commands, which import the installed project: when another
checkout (or none) is installed they would run other code. Both ask this script, run by its path from ``/`` so that the
working directory is not on the import path (nor the script's folder, which it drops)::

    python /path/to/checkout/utils/installed_checkout.py /path/to/checkout   # exit 0, or 2 with what to do

Standard library only: it must run where the project is not importable.
"""

import importlib.util
import sys
from pathlib import Path


def installed_root() -> Path | None:
    """The checkout the ``utils`` package is imported from, or None when it is not importable."""
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # run as a script: its own folder (utils/) is not where the project is imported from
    spec = importlib.util.find_spec("utils")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parents[1]


def problem(checkout: Path) -> str | None:
    """None when this interpreter imports the project from ``checkout``, else the message saying what to do."""
    found = installed_root()
    if found == Path(checkout).resolve():
        return None
    return (f"this project is not installed from {checkout} ({sys.executable} finds it {found or 'nowhere'}): "
            f"run 'pip install -e .' there first (see README.md)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} CHECKOUT")
    message = problem(Path(sys.argv[1]))
    if message:
        print(message, file=sys.stderr)
        sys.exit(2)
