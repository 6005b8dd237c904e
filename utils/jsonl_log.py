"""The metrics log of a resumable run: one JSON object per line, appended as the run goes.

A run that resumes from a checkpoint redoes the steps after it, so the lines of those steps (written after the
checkpoint, before an interruption) are dropped first; so are unreadable (half-written) lines. DINOv2 counts
steps in iterations, Neighbor2Neighbor in epochs: the step key is named by the caller. With ``tensorboard_dir``
the numeric values of every record also go to TensorBoard event files there (``tensorboard`` is an optional
dependency, needed only then).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from utils.atomic import append_text, atomic_write_text


def _record(line: str, step_key: str) -> Optional[tuple[int, dict[str, Any]]]:
    """(step, record) of a line; None for an unreadable one (it is dropped with the redone steps)."""
    try:
        record = json.loads(line)
        return int(record[step_key]), record
    except (ValueError, KeyError, TypeError):
        return None


class JsonlLog:
    """Append-only JSON-lines file; opening it keeps only the records whose ``step_key`` is below ``resume_step``
    (``resume_step=0`` empties it: a run that starts afresh), and holds them in ``kept`` (read once)."""

    def __init__(self, path: Path, step_key: str, resume_step: int, tensorboard_dir: Optional[Path] = None) -> None:
        self.path = Path(path)
        self.step_key = step_key
        self.tensorboard = _summary_writer(tensorboard_dir, resume_step) if tensorboard_dir is not None else None
        self.kept: list[dict[str, Any]] = []
        if self.path.is_file():
            lines = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                parsed = _record(line, step_key) if line.strip() else None
                if parsed is not None and parsed[0] < resume_step:
                    lines.append(line)
                    self.kept.append(parsed[1])
            atomic_write_text(self.path, "".join(line + "\n" for line in lines))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (flushed at once, so a crash loses at most the line being written)."""
        append_text(self.path, json.dumps(record) + "\n")
        if self.tensorboard is not None:
            step = int(record[self.step_key])
            for key, value in record.items():
                if key != self.step_key and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()


def _summary_writer(log_dir: Path, resume_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("TensorBoard logging needs the optional 'tensorboard' package (pip install tensorboard)") \
            from error
    # purge_step drops the events of steps that a resumed run redoes, as the JSON lines are dropped
    return SummaryWriter(log_dir=str(log_dir), purge_step=resume_step or None)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
