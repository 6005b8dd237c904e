"""DINOv2 pretraining entry point.

    python -m dinov2.train --config-file FILE [--config-file FILE ...] --output-dir DIR [section.key=value ...]
    torchrun --nproc_per_node=N -m dinov2.train --config-file FILE --output-dir DIR [...]

Rerunning the same command continues from the newest loadable checkpoint in DIR. The config is checked (keys,
types, cross-field rules, dataset) before DIR is created; errors name the key and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from omegaconf import DictConfig

from dinov2.train.run_files import config_changes
from dinov2.utils.checkpoint import CONFIG_FILENAME
from dinov2.train.curriculum import build_phases, check_curriculum
from dinov2.utils.checks import check_config, check_dataset_size, check_weights_path
from dinov2.utils.config import ConfigError, load_config
from utils.atomic import atomic_write_text, remove_stale_temporaries
from utils.cli import one_line
from utils.dataset_index import DatasetError
from utils.image_io import ImageReadError
from utils.run_lock import FolderLocked, folder_lock
from utils.run_log import run_log

if TYPE_CHECKING:
    from utils.distributed import DistributedContext
    from dinov2.train.trainer import Trainer

EXIT_CONFIG_ERROR = 2
EXIT_TRAINING_ERROR = 1
EXIT_COLLAPSED = 3  # the health alarm found the representation collapsed (train.stop_on_collapse)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dinov2.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", type=Path, action="append", default=None,
                        help="recipe YAML merged onto the defaults (repeat it to merge several, in order)")
    parser.add_argument("--output-dir", type=Path, required=True, help="run directory (created; resumed if present)")
    parser.add_argument("opts", nargs="*", default=[], help="overrides: section.key=value")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, world_size: int) -> DictConfig:
    """Load and check the config; nothing is written. Raises ConfigError naming the key."""
    cfg = load_config(args.config_file, args.opts)
    cfg.train.output_dir = str(args.output_dir)
    check_config(cfg, world_size)
    check_curriculum(cfg)
    check_weights_path(cfg)
    return cfg


def run_training(cfg: DictConfig, ctx: "DistributedContext") -> "Trainer":
    """Build the dataset, check it, create the run directory and train; returns the trainer (after training)."""
    from utils import distributed  # torch is imported only once the config is valid
    from dinov2.train.data_setup import build_phase_dataset
    from dinov2.train.trainer import Trainer

    datasets = []
    for phase in build_phases(cfg):
        datasets.append(build_phase_dataset(cfg, phase))
        check_dataset_size(cfg, len(datasets[-1]), ctx.world_size, phase.dataset_path)
    output_dir = Path(cfg.train.output_dir)
    trainer = Trainer(cfg, ctx, output_dir, datasets)
    with folder_lock(output_dir, enabled=ctx.is_main):  # one run per directory (rank 0 holds it for the job)
        if ctx.is_main:
            check_resumed_config(cfg, output_dir)
            remove_stale_temporaries(output_dir)  # left by a run killed while writing a checkpoint or export
            atomic_write_text(output_dir / CONFIG_FILENAME, trainer.config_yaml)
        distributed.barrier()
        with run_log(output_dir, ctx.is_main):  # DIR/log.txt: everything rank 0 prints from here on
            trainer.run()
    return trainer


def check_resumed_config(cfg: DictConfig, output_dir: Path) -> None:
    """A run directory that holds checkpoints resumes only with the config it was started with (unless
    ``train.allow_config_change``): another learning rate or dataset would silently mix two experiments."""
    from dinov2.utils.checkpoint import list_checkpoints

    saved = output_dir / CONFIG_FILENAME
    if cfg.train.allow_config_change or not saved.is_file() or not list_checkpoints(output_dir):
        return
    changed = config_changes(saved.read_text(encoding="utf-8"), cfg)
    if changed:
        raise ConfigError(f"{output_dir} holds a run made with another config ({'; '.join(changed)}): use another "
                          "--output-dir, change data with curriculum phases, or pass train.allow_config_change=true "
                          "to resume with the new values")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    try:
        cfg = prepare(args, world_size)
    except (ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    from utils import distributed
    from dinov2.utils.checkpoint import CheckpointError
    from dinov2.train.health_monitor import RepresentationCollapsed

    try:
        ctx = distributed.setup(cfg.train.device, key="train.device")
    except ValueError as error:  # CUDA asked for and not usable
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        run_training(cfg, ctx)
    except (ConfigError, DatasetError, FolderLocked, ImageReadError, OSError) as error:  # bad input; full disk
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except RepresentationCollapsed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_COLLAPSED
    except (FloatingPointError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_TRAINING_ERROR
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
