"""The run directory of one training and its lifecycle: the lock, the config check, the resume point, checkpoints,
encoder exports and logs.

:class:`RunDirectory` owns every file of ``DIR``; :class:`~dinov2.train.trainer.Trainer` keeps the step loop and
hands it the states to write. Rank 0 reads and writes; the other ranks take part in the collective calls.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from omegaconf import DictConfig

from dinov2.train.run_files import config_changes, open_metrics_log
from dinov2.utils.checkpoint import (
    CONFIG_FILENAME,
    CheckpointError,
    encoder_export_dir,
    export_in,
    list_checkpoints,
    load_checkpoint,
    newest_loadable_checkpoint,
    save_checkpoint,
    write_encoder_export,
)
from dinov2.utils.choices import evaluated_encoder
from dinov2.utils.config import ConfigError
from utils import distributed
from utils.atomic import atomic_write_text, remove_stale_temporaries
from utils.distributed import DistributedContext
from utils.jsonl_log import JsonlLog
from utils.run_lock import folder_lock
from utils.run_log import run_log


def check_resumed_config(cfg: DictConfig, output_dir: Path) -> None:
    """A run directory that holds checkpoints resumes only with the config it was started with (unless
    ``train.allow_config_change``): another learning rate or dataset would silently mix two experiments."""
    saved = output_dir / CONFIG_FILENAME
    if cfg.train.allow_config_change or not saved.is_file() or not list_checkpoints(output_dir):
        return
    changed = config_changes(saved.read_text(encoding="utf-8"), cfg)
    if changed:
        raise ConfigError(f"{output_dir} holds a run made with another config ({'; '.join(changed)}): use another "
                          "--output-dir, change data with curriculum phases, or pass train.allow_config_change=true "
                          "to resume with the new values")


class RunDirectory:
    """``output_dir`` of a run of ``total_iterations`` whose resolved config is ``config_yaml``."""

    def __init__(self, output_dir: Path, cfg: DictConfig, ctx: DistributedContext, config_yaml: str,
                 total_iterations: int) -> None:
        self.path, self.cfg, self.ctx = Path(output_dir), cfg, ctx
        self.config_yaml, self.total_iterations = config_yaml, total_iterations

    @contextmanager
    def opened(self) -> Iterator[None]:
        """One run per directory (rank 0 holds the lock for the job): a resumed run's config checked, the
        temporaries of a killed write removed, ``config.yaml`` written; inside, ``DIR/log.txt`` records everything
        rank 0 prints."""
        with folder_lock(self.path, enabled=self.ctx.is_main):
            if self.ctx.is_main:
                check_resumed_config(self.cfg, self.path)
                remove_stale_temporaries(self.path)
                atomic_write_text(self.path / CONFIG_FILENAME, self.config_yaml)
            distributed.barrier()
            with run_log(self.path, self.ctx.is_main):
                yield

    # ----- resume -----
    def newest_checkpoint(self) -> Optional[tuple[Path, dict]]:
        """The newest loadable checkpoint and its contents (rank 0 looks, every rank loads), or None; a
        :class:`CheckpointError` is raised on every rank, so that none waits for the others."""
        found, error = None, None
        if self.ctx.is_main:
            try:
                found = newest_loadable_checkpoint(self.path)
            except CheckpointError as exc:
                error = str(exc)
        path, error = distributed.broadcast_object((str(found[0]) if found else None, error))
        if error is not None:
            raise CheckpointError(error)
        if path is None:
            return None
        return Path(path), found[1] if found else load_checkpoint(Path(path))

    def warn_config_changes(self, saved_yaml: str) -> None:
        """A warning listing what changed since the checkpoint (reached with ``train.allow_config_change``:
        :func:`check_resumed_config` refuses a change otherwise)."""
        changed = config_changes(saved_yaml, self.cfg)
        if changed:
            warnings.warn(f"resuming with a changed config ({', '.join(changed)})")

    # ----- encoder exports -----
    def is_export_iteration(self, iteration: int) -> bool:
        """Every ``evaluation.eval_period_iterations`` and at the end of the run."""
        done = iteration + 1
        return done % self.cfg.evaluation.eval_period_iterations == 0 or done == self.total_iterations

    def has_export(self, iteration: int) -> bool:
        """``DIR/eval/training_<iteration>`` holds an encoder export (a run written before exports were named
        for their encoder holds ``teacher_checkpoint.pth`` whatever the method)."""
        return export_in(encoder_export_dir(self.path, iteration)) is not None

    def write_encoder_export(self, iteration: int, state: dict[str, torch.Tensor]) -> None:
        """``DIR/eval/training_<iteration>/<encoder>_checkpoint.pth`` beside the run's config, named for the
        method's evaluated encoder (``teacher`` or ``student``)."""
        write_encoder_export(self.path, iteration, evaluated_encoder(self.cfg.method.name), state,
                             self.config_yaml)

    def export_if_missing(self, iteration: int, state_of: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Write the encoder export of ``iteration`` when it is due and missing (a run killed between its
        checkpoint and its export); ``state_of`` gives the encoder just restored from that checkpoint."""
        if iteration < 0 or not self.is_export_iteration(iteration) or not self.ctx.is_main:
            return False
        if self.has_export(iteration):
            return False
        self.write_encoder_export(iteration, state_of())
        return True

    def missing_exports(self, end: int) -> list[int]:
        """The due encoder exports of iterations ``0..end-1`` that are not in the run folder."""
        return [it for it in range(end) if self.is_export_iteration(it) and not self.has_export(it)]

    # ----- checkpoints and logs -----
    def save_checkpoint(self, iteration: int, state: dict) -> Path:
        """``DIR/model_<iteration>.pth``, keeping the newest ``train.max_to_keep``."""
        return save_checkpoint(self.path, iteration, {**state, "config": self.config_yaml},
                               self.cfg.train.max_to_keep)

    def open_metrics(self, resume_from_iteration: int) -> Optional[JsonlLog]:
        """``DIR/metrics.jsonl`` (and TensorBoard events) from that iteration on, on rank 0; None elsewhere."""
        if not self.ctx.is_main:
            return None
        return open_metrics_log(self.path, resume_from_iteration, self.cfg.train.tensorboard)
