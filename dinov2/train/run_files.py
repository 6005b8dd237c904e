"""Files of a run directory other than checkpoints: the resolved config and the metrics log."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from utils.jsonl_log import JsonlLog, read_jsonl

# keys that may differ when a run resumes: where and how fast it runs, not what it computes
RESUME_MUTABLE_KEYS = {"train.output_dir", "train.device", "train.num_workers", "train.stop_after_iterations",
                       "train.log_period", "train.tensorboard", "train.allow_config_change",
                       "train.keep_freed_cpu_memory", "train.activation_checkpointing", "train.stop_on_collapse"}
# prefixes of keys that may differ too: what is measured and logged about the run, never what it computes
RESUME_MUTABLE_SECTIONS = ("evaluation.health.", "evaluation.online_knn.")
METRICS_FILENAME = "metrics.jsonl"
TENSORBOARD_DIRNAME = "tensorboard"


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def config_changes(saved_yaml: str, cfg: DictConfig) -> list[str]:
    """``key: saved -> now`` for every key of the saved config whose value in ``cfg`` differs (its derived section
    and :data:`RESUME_MUTABLE_KEYS` aside; keys a newer version added are not compared); empty when nothing was
    saved."""
    if not saved_yaml:
        return []
    saved = OmegaConf.to_container(OmegaConf.create(saved_yaml))
    saved.pop("derived", None)
    saved_flat = _flatten(saved)
    now_flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return [f"{key}: {saved_flat[key]!r} -> {now_flat[key]!r}" for key in sorted(now_flat)
            if key in saved_flat and key not in RESUME_MUTABLE_KEYS and not key.startswith(RESUME_MUTABLE_SECTIONS)
            and saved_flat[key] != now_flat[key]]


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
