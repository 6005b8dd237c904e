"""Train the Neighbor2Neighbor denoiser on noisy images (never clean ones), stored or noised on the fly.

    python Neighbor2Neighbor/train.py --data-dir NOISY_ROOT/train --output-dir OUT
        [--epochs 100 --batch-size 4 --patch-size 256 --lr 3e-4 --increase-ratio 2.0 ...]
        [--val-clean CLEAN_DIR --val-noise gauss100]
    python Neighbor2Neighbor/train.py --data-dir noisy:gauss100:CLEAN_ROOT:train --output-dir OUT ...
    torchrun --nproc_per_node=G Neighbor2Neighbor/train.py --data-dir ... --output-dir OUT --batch-size B ...

Every image under --data-dir (any depth) gives one random square crop per epoch. The loss is the paper's:
reconstruction between neighbour sub-images plus a regulariser whose weight rises linearly to
--increase-ratio; Adam, learning rate halved after every 20% of the epochs. ``--objective zs_n2n`` trains
Zero-Shot Noise2Noise's three-layer network with its residual + consistency loss instead
(Neighbor2Neighbor/zs_n2n.py). OUT receives config.json, metrics.jsonl (one line per epoch), log.txt (everything
printed), last.pt (complete training state, written atomically after every epoch), epoch_XXX.pt with
--save-every, and best.pt (highest validation PSNR) with validation. Rerunning the same command resumes exactly
from last.pt; a finished run exits at once.

Under torchrun (gloo on the CPU, NCCL on GPUs, one GPU per rank, any number of nodes) --batch-size stays the
global batch: each of the W ranks takes a contiguous B/W share of every batch and of its sub-sampling masks,
DDP averages the gradients, and rank 0 validates and writes OUT; the run computes what one process would (up to
the order of floating-point sums) and resumes exactly with any launcher of the same world size.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from Neighbor2Neighbor.arch_unet import UNet, memory_format
from Neighbor2Neighbor.training_data import SMALL_IMAGE_POLICIES, ImageSurvey, NoisyCropDataset, epoch_order
from Neighbor2Neighbor.training_data import rank_order, survey_images
from Neighbor2Neighbor.loss import regularizer_weight, training_loss
from Neighbor2Neighbor.zs_n2n import ZeroShotNet, zs_n2n_loss
from Neighbor2Neighbor.padding import apply_padded
from Neighbor2Neighbor.validation import Validator
from Neighbor2Neighbor.weights import CHECKPOINT_FORMAT, load_checkpoint, model_config
from utils import distributed
from utils.atomic import atomic_torch_save, atomic_write_json, remove_stale_temporaries
from utils.cli import EXIT_BAD_INPUT, EXIT_FAILURE, add_num_workers, add_output_dir, add_quiet, check_outside
from utils.cli import one_line
from utils.device import PRECISIONS, autocast, resolve_device, resolve_precision
from utils.image_io import ImageReadError
from utils.image_tree import ImageTree, tree_argument
from utils.jsonl_log import JsonlLog
from utils.run_lock import folder_lock
from utils.run_log import run_log
from utils.noise import parse_noise
from utils.seeding import seed_everything, torch_generator, worker_init_fn

# arguments that change what an exact resume would compute; the others (workers, device, ...) may change
RESUME_KEYS = ("data_dir", "epochs", "batch_size", "patch_size", "lr", "gamma", "increase_ratio", "lambda_rec",
               "lambda_reg", "n_feature", "seed", "small_images", "objective",
               # validation decides the metrics.jsonl PSNR and which epoch is best.pt: one setting per run
               "val_clean", "val_noise", "val_seed", "val_limit", "val_every")
LAST, BEST, METRICS, CONFIG = "last.pt", "best.pt", "metrics.jsonl", "config.json"
WALL_CLOCK_KEYS = ("seconds", "images_per_s")  # in metrics.jsonl only
OBJECTIVES = ("neighbor2neighbor", "zs_n2n")


class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``train.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=tree_argument, required=True,
                        help="folder of noisy training images (recursive), stored or noisy:SETTING:ROOT[:SUB]")
    add_output_dir(parser, "run folder (checkpoints, metrics, log)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4, help="global batch (split over torchrun ranks)")
    parser.add_argument("--patch-size", type=int, default=256, help="side of the random square crops (even)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--gamma", type=float, default=0.5, help="lr factor after every 20%% of the epochs")
    parser.add_argument("--increase-ratio", type=float, default=2.0, help="regulariser weight at the last epoch")
    parser.add_argument("--lambda-rec", type=float, default=1.0, help="weight of the reconstruction term")
    parser.add_argument("--lambda-reg", type=float, default=1.0, help="weight of the regulariser term")
    parser.add_argument("--n-feature", type=int, default=48, help="network width")
    parser.add_argument("--objective", choices=OBJECTIVES, default="neighbor2neighbor",
                        help="neighbor2neighbor (the U-Net, the paper's) or zs_n2n (Zero-Shot Noise2Noise's network "
                             "and loss, fitted on the training crops)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-images", choices=SMALL_IMAGE_POLICIES, default="pad",
                        help="images smaller than the crop: reflect-pad them, or skip them (counted)")
    add_num_workers(parser, 4, "data-loading processes (0: in this process; default %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="autocast dtype on CUDA (auto: bf16); the CPU always trains in fp32")
    parser.add_argument("--save-every", type=int, default=0, help="also keep epoch_XXX.pt every N epochs (0: no)")
    parser.add_argument("--val-clean", type=Path, default=None, help="clean validation images (noised on the fly)")
    parser.add_argument("--val-noise", default=None, help="noise setting of the validation images, e.g. gauss100")
    parser.add_argument("--val-seed", type=int, default=101, help="seed of the validation noise")
    parser.add_argument("--val-limit", type=int, default=None, help="validate on the first N images only")
    parser.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the last)")
    parser.add_argument("--stop-after-epochs", type=int, default=0,
                        help="stop this call after N epochs (time-limited jobs: rerun to continue; 0: run to the end)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write the metrics as TensorBoard events in OUT/tensorboard/ (needs tensorboard)")
    add_quiet(parser)
    return parser


def check_args(args: argparse.Namespace, ranks: int = 1) -> None:
    """Reject bad values before any work, naming the option."""
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--lr": args.lr,
                "--n-feature": args.n_feature, "--val-every": args.val_every}
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if args.patch_size < 2 or args.patch_size % 2:
        raise ValueError(f"--patch-size must be a positive even number, got {args.patch_size}")
    if min(args.num_workers, args.save_every, args.stop_after_epochs) < 0:
        raise ValueError("--num-workers, --save-every and --stop-after-epochs must not be negative")
    if args.batch_size % ranks:
        raise ValueError(f"--batch-size {args.batch_size} is the global batch: it must be a multiple of the "
                         f"{ranks} torchrun processes")
    check_outside(args.output_dir, {"--data-dir": args.data_dir.folder})
    if (args.val_clean is None) != (args.val_noise is None):
        raise ValueError("--val-clean and --val-noise go together")
    if args.val_noise is not None:
        parse_noise(args.val_noise)


def lr_milestones(epochs: int) -> list[int]:
    """Epochs after which the lr is multiplied by gamma: after each 20% of the run (20, 40, 60, 80 of 100)."""
    return [round(epochs * k / 5) for k in range(1, 5) if 0 < round(epochs * k / 5) < epochs]


def resume_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON-safe arguments saved in checkpoints and config.json."""
    return {key: str(value) if isinstance(value, (Path, ImageTree)) else value for key, value in vars(args).items()}


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    changed = [k for k in RESUME_KEYS if saved.get(k) != current.get(k)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(f"{path} was written with other settings ({details}); rerun with the same options, "
                            "choose another --output-dir, or pass --no-resume to start afresh")


@dataclass
class TrainingState:
    """What training updates and a checkpoint restores: the model, its optimizer, lr schedule, fp16 loss scaler,
    the generator of the sub-sampling masks, and the best validation PSNR so far."""

    model: torch.nn.Module  # the U-Net, or ZeroShotNet with --objective zs_n2n
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    scaler: torch.amp.GradScaler
    mask_generator: torch.Generator
    best_psnr: float = -math.inf
    ddp: torch.nn.Module | None = None  # the DDP wrapper of ``model`` under torchrun (see ``distribute``)

    @classmethod
    def create(cls, args: argparse.Namespace, device: torch.device, precision: str, channels: int = 3
               ) -> TrainingState:
        """Seed every RNG, then build the parts in a fixed order (it fixes the initial weights of a seed); the
        U-Net takes and gives ``channels`` (the training images')."""
        seed_everything(args.seed)
        network = ZeroShotNet if args.objective == "zs_n2n" else UNet
        model = network(channels, channels, features=args.n_feature).to(device, memory_format=memory_format(device))
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestones(args.epochs), gamma=args.gamma)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        return cls(model, optimizer, scheduler, scaler, torch_generator("n2n-mask", args.seed))

    def distribute(self, ctx: distributed.DistributedContext) -> None:
        """Wrap the model in DDP when launched with several processes (after a resume: every rank holds the same
        weights, which DDP checks by broadcasting rank 0's)."""
        if ctx.enabled:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def denoise(self, batch: torch.Tensor) -> torch.Tensor:
        """The model on ``batch`` (any even size), in the memory format of its device; through DDP when gradients
        are recorded, so that they are averaged over the ranks."""
        model = self.ddp if self.ddp is not None and torch.is_grad_enabled() else self.model
        return apply_padded(model, batch.contiguous(memory_format=memory_format(batch.device)))

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer update from ``loss`` (scaled when training in fp16)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def checkpoint(self, epoch: int, settings: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """The complete training state after ``epoch``, as saved in last.pt (also best.pt, epoch_XXX.pt)."""
        return {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "model": self.model.state_dict(),
            "model_config": model_config(self.model), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "mask_generator": self.mask_generator.get_state(), "torch_rng": torch.get_rng_state(),
            "best_val_psnr": self.best_psnr, "args": settings,
            # without wall-clock values, so that the same run gives the same bytes however fast it went
            "metrics": {key: value for key, value in record.items() if key not in WALL_CLOCK_KEYS},
        }


def restore(state: TrainingState, path: Path, settings: dict[str, Any]) -> int:
    """Load checkpoint ``path`` (written with the same ``settings``) into ``state`` and the torch RNG; returns the
    epoch it was saved after."""
    checkpoint = load_checkpoint(path)
    _check_resumable(checkpoint["args"], settings, path)
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint["scaler"] and state.scaler.is_enabled():  # empty when saved by a run without fp16 (CPU, bf16)
        state.scaler.load_state_dict(checkpoint["scaler"])
    state.mask_generator.set_state(checkpoint["mask_generator"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state.best_psnr = checkpoint["best_val_psnr"]
    return checkpoint["epoch"]


def first_epoch(state: TrainingState, args: argparse.Namespace, settings: dict[str, Any], verbose: bool = True
                ) -> int:
    """The first epoch this call trains: 1, or the one after OUT/last.pt (restored into ``state``) when resuming."""
    path = args.output_dir / LAST
    if args.no_resume or not path.exists():
        return 1
    saved_epoch = restore(state, path, settings)
    if saved_epoch < args.epochs and verbose:
        print(f"resuming {path} after epoch {saved_epoch}")
    return saved_epoch + 1


def last_epoch(args: argparse.Namespace, first: int) -> int:
    """The last epoch this call trains: --epochs, or earlier with --stop-after-epochs."""
    if args.stop_after_epochs:
        return min(args.epochs, first + args.stop_after_epochs - 1)
    return args.epochs


def usable_images(args: argparse.Namespace) -> ImageSurvey:
    """The training images (see --small-images); ValueError when they do not fill one batch."""
    survey = survey_images(args.data_dir, args.patch_size, args.small_images, progress=not args.quiet)
    if len(survey.relpaths) < args.batch_size:
        raise ValueError(f"{args.data_dir} has {len(survey.relpaths)} usable images, fewer than --batch-size "
                         f"{args.batch_size}")
    return survey


def run_epoch(state: TrainingState, dataset: NoisyCropDataset, epoch: int, args: argparse.Namespace,
              ctx: distributed.DistributedContext, precision: str) -> dict[str, Any]:
    """Train one epoch (then step the lr schedule); returns its metrics record (means over every rank's images),
    without validation."""
    device, share = ctx.device, (ctx.rank, ctx.world_size)
    dataset.set_epoch(epoch)
    order = rank_order(epoch_order(len(dataset), args.seed, epoch), args.batch_size, *share)
    loader = DataLoader(dataset, batch_size=args.batch_size // ctx.world_size, sampler=order,
                        num_workers=args.num_workers, drop_last=True, pin_memory=device.type == "cuda",
                        worker_init_fn=worker_init_fn)
    zero_shot = args.objective == "zs_n2n"  # its consistency term (logged as loss_reg) has weight 1
    reg_weight = 1.0 if zero_shot else regularizer_weight(epoch, args.epochs, args.increase_ratio)
    lr = state.optimizer.param_groups[0]["lr"]
    sums = torch.zeros(3, dtype=torch.float64)
    steps, started = 0, time.perf_counter()
    state.model.train()
    bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=False,
               disable=args.quiet or not ctx.is_main)
    for noisy in bar:
        noisy = noisy.to(device, non_blocking=True)
        with autocast(device, precision):
            terms = zs_n2n_loss(state.denoise, noisy) if zero_shot else training_loss(
                state.denoise, noisy, state.mask_generator, reg_weight, args.lambda_rec, args.lambda_reg, share)
        values = distributed.all_reduce_mean(
            torch.stack([terms.total.detach(), terms.reconstruction, terms.regularizer]).double()).cpu()
        if not torch.isfinite(values).all():
            raise TrainingError(f"non-finite loss at epoch {epoch}, step {steps + 1}: total, reconstruction, "
                                f"regulariser = {values.tolist()}; no checkpoint was written for this epoch")
        state.step(terms.total)
        sums += values
        steps += 1
        if steps % 20 == 0:
            bar.set_postfix(loss=f"{sums[0].item() / steps:.5f}")
    state.scheduler.step()
    seconds = time.perf_counter() - started
    return {
        "epoch": epoch, "loss": sums[0].item() / steps, "loss_rec": sums[1].item() / steps,
        "loss_reg": sums[2].item() / steps, "reg_weight": reg_weight, "lr": lr, "steps": steps,
        "images_per_s": steps * args.batch_size / seconds, "seconds": seconds,
    }


def save_epoch(state: TrainingState, epoch: int, record: dict[str, Any], settings: dict[str, Any],
               args: argparse.Namespace) -> None:
    """Write the checkpoint of ``epoch``: best.pt when validation improved, epoch_XXX.pt every --save-every
    epochs, and last.pt (written last, so it never runs ahead of the others)."""
    improved = "val_psnr" in record and record["val_psnr"] > state.best_psnr
    if improved:
        state.best_psnr = record["val_psnr"]
    checkpoint = state.checkpoint(epoch, settings, record)
    out: Path = args.output_dir
    if improved:
        atomic_torch_save(checkpoint, out / BEST)
    if args.save_every and epoch % args.save_every == 0:
        atomic_torch_save(checkpoint, out / f"epoch_{epoch:03d}.pt")
    atomic_torch_save(checkpoint, out / LAST)


def launch(args: argparse.Namespace) -> distributed.DistributedContext:
    """This process's place in a torchrun launch (one process without one) and its device: --device, or the
    rank's local GPU under torchrun."""
    device = resolve_device(args.device)
    ctx = distributed.setup("cuda" if device.type == "cuda" else "cpu")
    return ctx if ctx.enabled else distributed.DistributedContext(0, 1, 0, device)


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run (or resume) training; returns the metric records of the epochs run by this call."""
    check_args(args, distributed.launched_world_size())
    ctx = launch(args)
    device, main_rank = ctx.device, ctx.is_main
    precision = resolve_precision(args.precision, device)
    survey = usable_images(args)
    validator = (Validator(args.val_clean, args.val_noise, args.val_seed, args.val_limit)
                 if args.val_clean is not None and main_rank else None)
    if validator is not None and validator.channels != survey.channels:
        raise ValueError(f"--val-clean {args.val_clean} holds images of {validator.channels} channel(s), the "
                         f"training images of --data-dir {args.data_dir} {survey.channels}: give validation images "
                         "of the same kind")
    settings = resume_settings(args)
    # one run per folder (rank 0 holds the lock for the job); OUT/log.txt: everything rank 0 prints from here on
    with folder_lock(args.output_dir, enabled=main_rank), run_log(args.output_dir, main_rank):
        return train_epochs(args, ctx, precision, survey, validator, settings)


def train_epochs(args: argparse.Namespace, ctx: distributed.DistributedContext, precision: str,
                 survey: ImageSurvey, validator: Validator | None, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Resume (or start) in ``args.output_dir`` and train the epochs of this call; returns their records."""
    out: Path = args.output_dir
    device, main_rank = ctx.device, ctx.is_main
    if main_rank:
        remove_stale_temporaries(out)  # left by a run killed while writing a checkpoint
    state = TrainingState.create(args, device, precision, survey.channels)
    first = first_epoch(state, args, settings, verbose=main_rank)
    state.distribute(ctx)
    # lines written after the checkpoint (a crash between the two writes) belong to epochs this call redoes
    metrics = JsonlLog(out / METRICS, "epoch", first, out / "tensorboard" if args.tensorboard else None) \
        if main_rank else None
    if first > args.epochs:
        if main_rank:
            print(f"{out}: all {args.epochs} epochs are done")
        return []
    if main_rank:
        atomic_write_json(out / CONFIG, settings | {
            "device": str(device), "precision": precision, "world_size": ctx.world_size,
            "images": len(survey.relpaths), "skipped_small": survey.skipped_small})
        if survey.skipped_small:
            print(f"skipped {survey.skipped_small} image(s) smaller than {args.patch_size} px")
    dataset = NoisyCropDataset(args.data_dir, survey.relpaths, args.patch_size, args.seed)
    records = []
    for epoch in range(first, last_epoch(args, first) + 1):
        record = run_epoch(state, dataset, epoch, args, ctx, precision)
        if validator is not None and (epoch % args.val_every == 0 or epoch == args.epochs):
            record.update(validator.evaluate(state.model, device, precision))
        if metrics is not None:
            metrics.write(record)
            save_epoch(state, epoch, record, settings, args)
            summary = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch" and isinstance(v, float))
            print(f"epoch {epoch}/{args.epochs}: {summary}", flush=True)
        records.append(record)
    distributed.barrier()  # every rank returns once rank 0 has written the last checkpoint
    return records


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit status 2 with a message for bad input, 1 for a failed run."""
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except (ValueError, OSError, ImageReadError) as error:  # bad input, an unwritable or full output folder
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
