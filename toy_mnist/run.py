"""Run repetitions of the toy experiment (all three arms each) into an output folder.

    python -m toy_mnist.run --out outputs/toy_mnist --reps 20 [--epochs 50] [--budget steps|epochs]
                            [--device auto|cpu|cuda] [--data-root PATH]

Repetition k uses seed k and writes OUT/seed_<k>/; finished repetitions (and finished arms) are skipped, so an
interrupted run continues where it stopped. OUT/settings.json records the data source and the budget; rerunning
into the same folder with other settings is refused. ``python -m toy_mnist.aggregate OUT`` summarises.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from toy_mnist.budget import BUDGET_MODES, PAPER_EPOCHS, PAPER_PROBE_EPOCHS, make_budget
from toy_mnist.data import MnistDataError, load_toy_data
from toy_mnist.experiment import RESULT_NAME, run_repetition
from toy_mnist.train import NonFiniteLossError
from toy_mnist.views import PAPER_NOISE_STD
from utils.cli import EXIT_FAILURE, add_output_dir, add_quiet, check_outside, fail
from utils.device import resolve_device
from utils.manifest import ManifestMismatch, check_or_write_manifest
from utils.run_lock import FolderLocked, folder_lock

DEFAULT_OUT = Path("outputs/toy_mnist")
SETTINGS_NAME = "settings.json"


def repetition_folder(out: Path, seed: int) -> Path:
    """Where repetition ``seed`` writes its files."""
    return out / f"seed_{seed}"


def holds_repetitions(out: Path) -> bool:
    """True when ``out`` holds a file of any repetition (finished or not): its settings then stand."""
    return any(path.is_file() and not path.name.startswith(".") for path in out.glob("seed_*/**/*"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_dir(parser, "output folder (default %(default)s)", "--out", required=False, default=DEFAULT_OUT)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--reps", type=int, default=None, help="run seeds 0..REPS-1 (default 20)")
    which.add_argument("--seeds", type=int, nargs="+", default=None, help="run exactly these seeds")
    parser.add_argument("--epochs", type=int, default=PAPER_EPOCHS, help="paper-scale pre-training epochs (50)")
    parser.add_argument("--switch-epoch", type=int, default=None,
                        help="paper-scale clean epochs before the curriculum turns noisy (default 3/5 of --epochs)")
    parser.add_argument("--probe-epochs", type=int, default=PAPER_PROBE_EPOCHS, help="paper-scale probe epochs (50)")
    parser.add_argument("--budget", choices=BUDGET_MODES, default="steps",
                        help="steps: scale epochs to the paper's optimizer-step count on 60,000 images (default); "
                             "epochs: run the epoch counts as given")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with the MNIST IDX files (torchvision layout); default: the embedded 5,000 digits")
    parser.add_argument("--noise-std", type=float, default=PAPER_NOISE_STD, help="Gaussian std on [0, 1] (0.4)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice; 1 is often fastest for this tiny MLP)")
    add_quiet(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = args.seeds if args.seeds is not None else list(range(20 if args.reps is None else args.reps))
    if not seeds or min(seeds) < 0:
        fail(f"--reps/--seeds must give at least one non-negative seed, got {seeds}")
    if args.noise_std <= 0 or args.batch_size < 1 or args.lr <= 0:
        fail("--noise-std, --batch-size and --lr must be positive")
    if args.threads < 0:
        fail(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        fail(str(error))
    try:
        data = load_toy_data(args.data_root)
    except (MnistDataError, FileNotFoundError) as error:
        fail(str(error))
    try:
        budget = make_budget(args.budget, data.train_size, args.batch_size, args.epochs, args.switch_epoch,
                             args.probe_epochs)
    except ValueError as error:
        fail(str(error))
    print(f"data: {data.source}")
    print(f"{budget.describe()}; device {device}")
    settings = {"data_source": data.source, "budget": budget.to_dict(), "noise_std": args.noise_std,
                "batch_size": args.batch_size, "lr": args.lr}
    if args.data_root is not None:
        try:
            check_outside(args.output_dir, {"--data-root": args.data_root})
        except ValueError as error:
            fail(str(error))
    try:
        check_or_write_manifest(args.output_dir / SETTINGS_NAME, settings, holds_outputs=holds_repetitions,
                                remedy="finished repetitions are kept, so give another --output-dir")
    except (ManifestMismatch, OSError) as error:  # other settings in the folder; an unwritable output folder
        fail(str(error))
    for seed in seeds:
        folder = repetition_folder(args.output_dir, seed)
        if (folder / RESULT_NAME).is_file():
            print(f"seed {seed}: already finished, skipped ({folder / RESULT_NAME})")
            continue
        start = time.perf_counter()
        try:
            with folder_lock(folder):  # one process per repetition (different seeds may run side by side)
                summary = run_repetition(data, seed, budget, folder, device, args.noise_std, args.batch_size,
                                         args.lr, progress=not args.quiet)
        except (FolderLocked, OSError) as error:  # a repetition in use; an unwritable or full output folder
            fail(str(error))
        except NonFiniteLossError as error:  # the run failed on its own: exit 1, as every trainer does
            print(f"error: seed {seed}: {error}; rerun with a lower --lr (now {args.lr:g}) into another --output-dir",
                  file=sys.stderr)
            return EXIT_FAILURE
        accuracies = ", ".join(f"{arm} {value:.2f} %" for arm, value in summary["accuracy"].items())
        print(f"seed {seed}: {accuracies} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
