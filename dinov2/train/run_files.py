"""Files of a run directory other than checkpoints: the resolved config and the metrics log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from utils.atomic import atomic_write_text

METRICS_FILENAME = "metrics.jsonl"
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


class MetricsLog:
    """Append-only JSON-lines log; on resume, lines of iterations that are being redone are dropped first."""

    def __init__(self, output_dir: Path, resume_from_iteration: int) -> None:
        self.path = Path(output_dir) / METRICS_FILENAME
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _iteration(line) < resume_from_iteration]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def _iteration(line: str) -> int:
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable (half-written) line is dropped


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """All records of ``DIR/metrics.jsonl``."""
    path = Path(output_dir) / METRICS_FILENAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
