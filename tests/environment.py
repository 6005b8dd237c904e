"""The environment of the commands that tests run, whether or not the suite's Python environment is activated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_env(**variables: str) -> dict[str, str]:
    """``os.environ`` with the folder of the interpreter running the tests first on PATH, plus ``variables``.

    Recipes and templates call ``python`` and ``torchrun`` by name: with this PATH they get the suite's own
    interpreter and its environment's ``torchrun`` even when the suite was started as ``ENV/bin/python -m pytest``
    without activating ``ENV``.
    """
    path = os.pathsep.join(filter(None, (str(Path(sys.executable).parent), os.environ.get("PATH"))))
    return {**os.environ, "PATH": path, **variables}


def dead_pid() -> int:
    """The process id of a process that has ended (for files that name a writer or holder no longer alive)."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
