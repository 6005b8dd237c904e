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

from dinov2.train.curriculum import Phase, check_curriculum
from dinov2.utils.checks import check_config, check_dataset_size, check_weights_path
from dinov2.utils.config import ConfigError, load_config
from utils.cli import one_line
from utils.dataset_index import DatasetError
from utils.image_io import ImageReadError
from utils.run_lock import FolderLocked

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


def prepare(args: argparse.Namespace, world_size: int) -> tuple[DictConfig, list[Phase]]:
    """Load and check the config, and build the curriculum's phases (once per launch: their checkpoint references
    resolved); nothing is written. Raises ConfigError naming the key."""
    cfg = load_config(args.config_file, args.opts)
    cfg.train.output_dir = str(args.output_dir)
    check_config(cfg, world_size)
    phases = check_curriculum(cfg)
    check_weights_path(cfg)
    return cfg, phases


def run_training(cfg: DictConfig, ctx: "DistributedContext", phases: list[Phase]) -> "Trainer":
    """Build the phases' datasets, check them, create the run directory and train; returns the trainer (after
    training)."""
    from dinov2.train.data_setup import build_phase_dataset  # torch is imported only once the config is valid
    from dinov2.train.trainer import Trainer

    datasets = []
    for phase in phases:
        datasets.append(build_phase_dataset(cfg, phase))
        check_dataset_size(cfg, len(datasets[-1]), ctx.world_size, phase.dataset_path)
    trainer = Trainer(cfg, ctx, Path(cfg.train.output_dir), datasets, phases)
    with trainer.run_dir.opened():  # locked, config checked and written, DIR/log.txt kept
        trainer.run()
    return trainer


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    try:
        cfg, phases = prepare(args, world_size)
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
        run_training(cfg, ctx, phases)
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
