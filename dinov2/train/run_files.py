"""Files of a run directory other than checkpoints: the resolved config and the metrics log."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from utils.jsonl_log import JsonlLog, read_jsonl

METRICS_FILENAME = "metrics.jsonl"
TENSORBOARD_DIRNAME = "tensorboard"
CONFIG_FILENAME = "config.yaml"


def git_sha() -> str:
    """The commit of the code that runs, or 'unknown' outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def open_metrics_log(output_dir: Path, resume_from_iteration: int, tensorboard: bool = False) -> JsonlLog:
    """``DIR/metrics.jsonl``, without the lines of iterations that are being redone (and ``DIR/tensorboard/``)."""
    return JsonlLog(Path(output_dir) / METRICS_FILENAME, "iteration", resume_from_iteration,
                    Path(output_dir) / TENSORBOARD_DIRNAME if tensorboard else None)


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """All records of ``DIR/metrics.jsonl``."""
    return read_jsonl(Path(output_dir) / METRICS_FILENAME)
