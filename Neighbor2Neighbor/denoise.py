"""Write denoised copies of a whole image tree (or of a revisitop Oxford/Paris dataset) with a trained U-Net.

    python Neighbor2Neighbor/denoise.py --weights CKPT --src NOISY_ROOT --output-dir DENOISED_ROOT
        [--num-workers N --batch-size B --tile 1024 --tile-overlap 64 --device auto --precision fp32 --shard I/N]
    python Neighbor2Neighbor/denoise.py --weights CKPT --src noisy:gauss100:CLEAN_ROOT --output-dir DENOISED_ROOT
    torchrun --nproc_per_node=G Neighbor2Neighbor/denoise.py --weights CKPT --src ... --output-dir ...
    python Neighbor2Neighbor/denoise.py --weights CKPT --src noisy:gauss100[,seed=42]:REVISITOP/datasets/roxford5k
        --output-dir OUT/roxford5k_gauss100

Every image is denoised at its native resolution (reflect-padded to a multiple of 32; images larger than
--tile are processed in overlapping tiles), rounded to uint8 and written as PNG at the same relative path.
--src is a stored tree or a clean tree noised on the fly (``noisy:SETTING[,seed=N]:ROOT``, see
utils/image_tree.py): a denoised tree needs no noisy copy on disk. labels.txt is copied. Existing outputs are
skipped, so an interrupted run resumes; every file is written atomically. Unreadable images are listed and the
exit status is 2; the other images are still written.

The sorted image list is cut into blocks of --block-images (512) images; within a block, images of equal size
are denoised together in batches. Blocks are the unit of sharding: under torchrun each rank (one GPU each) takes
every world-size-th block, ``--shard I/N`` does the same across SLURM array tasks (both combine), and since a
batch never depends on the split or on what an earlier run finished, the union of the shards is byte-identical
to a one-process run.

A revisitop dataset folder (jpg/*.jpg and gnd_*.pkl), stored or noised on the fly (``noisy:SETTING:FOLDER``:
each jpg/<name>.jpg seeded by the setting, the seed and "jpg/<name>.jpg"), is denoised into DST/jpg/<name>.png and
its gnd_*.pkl files are copied.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from Neighbor2Neighbor.inference import check_tiling, denoise_pixels
from Neighbor2Neighbor.weights import load_denoiser, model_digest
from utils.atomic import make_folder, remove_stale_temporaries
from utils.cli import EXIT_BAD_INPUT, RenamedOption, add_num_workers, add_output_dir, add_quiet, check_outside
from utils.dataset_index import LABELS_FILENAME
from utils.device import PRECISIONS, resolve_precision
from utils.distributed import launched_local_rank, rank_device
from utils.image_io import ImageReadError, copy_relpath, iter_image_files, save_pixels_atomic
from utils.image_tree import ImageTree, tree_argument
from utils.manifest import check_or_write_manifest
from utils.run_lock import folder_lock, tree_writers
from utils.sharding import Shard, launch_shard, parse_shard

MANIFEST_FILENAME = "denoise_manifest.json"
PLAN_BLOCK_IMAGES = 512  # default unit of sharding and of batch planning (see the module docstring)


@dataclass
class DenoiseReport:
    """What a run did: images written, skipped (already there) and the files it could not read."""

    written: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DenoiseTask:
    """The tree to denoise (``src``: stored, or noised on the fly) and where its denoised copy goes (``dst``)."""

    src: ImageTree
    dst: Path


class BatchDataset(Dataset):
    """Each item is a group of equal-size images: (relpaths, uint8 stack or None, error messages)."""

    def __init__(self, task: DenoiseTask, batches: list[list[str]]) -> None:
        self.task, self.batches = task, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[list[str], np.ndarray | None, list[str]]:
        kept, images, errors = [], [], []
        for relpath in self.batches[index]:
            try:
                image = self.task.src.read_pixels(relpath)
            except ImageReadError as error:
                errors.append(str(error))
                continue
            kept.append(relpath)
            images.append(image)
        stack = np.stack(images) if images and len({(im.shape, im.dtype) for im in images}) == 1 else None
        if images and stack is None:  # a header lied about the size: fall back to one image per batch
            return kept, None, errors + [f"{self.task.src.path(r)}: size differs from its header" for r in kept]
        return kept, stack, errors


def _collate(items: list) -> tuple[list[str], np.ndarray | None, list[str]]:
    return items[0]


def _drain(pending: list[Future], limit: int) -> list[Future]:
    """Wait for the oldest writes until at most ``limit`` are in flight (bounds memory); re-raise write errors."""
    pending = [f for f in pending if not f.done() or f.result() is not None]
    while len(pending) > limit:
        pending.pop(0).result()
    return pending


@dataclass
class DenoisePlan:
    """This shard's batches, the file each image is written to (relative to ``--dst``: its own depth decides
    ``.png`` or ``.tif``), the first image of each channel count, and the images whose header is unreadable."""

    batches: list[list[str]] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    channels: dict[int, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)


def plan_batches(task: DenoiseTask, relpaths: list[str], batch_size: int, shard: Shard = Shard(),
                 progress: bool = True, block_images: int = PLAN_BLOCK_IMAGES) -> DenoisePlan:
    """This shard's batches of images of equal size and kind (read from headers), in a plan that depends on the
    sorted image list, ``batch_size`` and ``block_images`` only. Blocks of ``block_images`` images are dealt to the
    shards; each block is grouped by size and kind and cut into batches."""
    blocks = shard.take([relpaths[i:i + block_images] for i in range(0, len(relpaths), block_images)])
    plan = DenoisePlan()
    bar = tqdm(total=sum(map(len, blocks)), desc="reading sizes", unit="img", disable=not progress, leave=False)
    for block in blocks:
        by_size: dict[tuple[int, int, str, int], list[str]] = defaultdict(list)
        for relpath in block:
            try:
                header = task.src.image_header(relpath)
            except ImageReadError as error:
                plan.unreadable.append(str(error))
                continue
            by_size[(header.height, header.width, header.depth, header.channels)].append(relpath)
            plan.targets[relpath] = copy_relpath(relpath, header.depth)
            plan.channels.setdefault(header.channels, relpath)
        plan.batches += [group[i:i + batch_size] for group in by_size.values()
                         for i in range(0, len(group), batch_size)]
        bar.update(len(block))
    bar.close()
    return plan


def copy_metadata(task: DenoiseTask, revisitop: bool) -> None:
    """Copy labels.txt (image trees) or the gnd_*.pkl ground-truth files (revisitop datasets)."""
    make_folder(task.dst)
    source = task.src.folder
    names = [p.name for p in source.glob("gnd_*.pkl")] if revisitop else [LABELS_FILENAME]
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, task.dst / name)


def list_revisitop_images(src: Path) -> list[str]:
    """The jpg/ images of a revisitop dataset folder, as relative paths ``jpg/<name>``."""
    if not (src / "jpg").is_dir():
        raise FileNotFoundError(f"{src} is not a revisitop dataset folder: {src / 'jpg'} is missing")
    if not list(src.glob("gnd_*.pkl")):
        raise FileNotFoundError(f"{src} is not a revisitop dataset folder: no gnd_*.pkl file")
    return [f"jpg/{relpath}" for relpath in iter_image_files(src / "jpg")]


def denoise_tree(
    model: torch.nn.Module, task: DenoiseTask, device: torch.device, precision: str = "fp32", batch_size: int = 8,
    workers: int = 0, tile: int = 1024, overlap: int = 64, revisitop: bool = False, progress: bool = True,
    shard: Shard = Shard(), block_images: int = PLAN_BLOCK_IMAGES,
) -> DenoiseReport:
    """Denoise this shard's images of ``task.src`` that have no output yet; never raises for unreadable images."""
    check_source(task.src)
    relpaths = list_revisitop_images(task.src.folder) if revisitop else list(task.src.iter_relpaths())
    if not relpaths:
        raise ValueError(f"--src folder {task.src.folder} holds no images")
    report = DenoiseReport()
    plan = plan_batches(task, relpaths, batch_size, shard, progress, block_images)
    expected = getattr(model, "in_channels", None)
    foreign = {c: r for c, r in plan.channels.items() if expected is not None and c != expected}
    if foreign:
        channels, relpath = next(iter(foreign.items()))
        raise ValueError(f"{task.src.path(relpath)} has {channels} channel(s); the denoiser takes {expected} (it was "
                         "trained on images of another kind)")
    copy_metadata(task, revisitop)
    report.failures = plan.unreadable
    batches = [b for b in plan.batches if not all((task.dst / plan.targets[r]).exists() for r in b)]
    report.skipped = sum(map(len, plan.batches)) - sum(map(len, batches))
    loader = DataLoader(BatchDataset(task, batches), batch_size=1, num_workers=workers, collate_fn=_collate)
    with ThreadPoolExecutor(max_workers=2) as writer, \
            tqdm(total=sum(map(len, batches)), desc="denoising", unit="img", disable=not progress) as bar:
        pending = []
        for kept, stack, errors in loader:
            report.failures.extend(errors)
            if stack is not None:
                denoised = denoise_pixels(model, stack, device, precision, tile, overlap)
                for relpath, image in zip(kept, denoised):
                    target = task.dst / plan.targets[relpath]
                    if target.exists():  # a batch that an interrupted run had partly written
                        report.skipped += 1
                        continue
                    pending.append(writer.submit(save_pixels_atomic, image, target))
                    report.written += 1
            bar.update(len(kept) + len(errors))
            pending = _drain(pending, limit=4 * batch_size)
        _drain(pending, limit=0)
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``denoise.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="train.py checkpoint or a bare state dict")
    parser.add_argument("--src", type=tree_argument, required=True,
                        help="noisy image tree: stored, or noisy:SETTING[,seed=N]:CLEAN_ROOT (or a revisitop folder)")
    add_output_dir(parser, "where the denoised tree is written (PNG; TIFF for 16-bit and float images)", "--dst")
    parser.add_argument("--batch-size", type=int, default=8, help="images of equal size denoised together")
    add_num_workers(parser, 4, "image-decoding processes (0: in this process; default %(default)s)")
    parser.add_argument("--tile", type=int, default=1024, help="tile side for larger images (0: never tile)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="context pixels around each tile")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda or cuda:N (default %(default)s; under torchrun: the rank's local GPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="autocast dtype on CUDA (default fp32, as the paper); the CPU always runs fp32")
    parser.add_argument("--shard", type=parse_shard, default=None,
                        help="I/N: denoise only the I-th of N shares (SLURM arrays; combines with torchrun ranks)")
    parser.add_argument("--block-images", type=int, default=PLAN_BLOCK_IMAGES,
                        help="images per unit of sharding and batch planning (default %(default)s; keep it for "
                             "every shard and rerun of one --dst)")
    # a revisitop folder is noised by its tree spelling, as every tree is
    parser.add_argument("--revisitop-noise", action=RenamedOption, new_name="--src noisy:SETTING:FOLDER",
                        why="a revisitop folder is noised as any tree is (e.g. --src noisy:gauss100:FOLDER)")
    parser.add_argument("--noise-seed", action=RenamedOption, new_name="--src noisy:SETTING,seed=N:FOLDER",
                        why="the seed is an option of the tree spelling (e.g. --src noisy:gauss100,seed=42:FOLDER)")
    add_quiet(parser)
    return parser


def check_source(src: ImageTree) -> None:
    """FileNotFoundError naming ``src`` when its folder does not exist."""
    if not src.is_dir():
        raise FileNotFoundError(f"--src folder {src.folder} does not exist{src.missing_hint()}")


def source_tree(args: argparse.Namespace) -> ImageTree:
    """--src, checked before any work; ValueError when --output-dir is --src or lies inside it."""
    check_source(args.src)
    check_outside(args.output_dir, {"--src": args.src.folder})
    return args.src


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit status 2 for bad input or unreadable images (named on stderr)."""
    args = build_parser().parse_args(argv)
    shard = launch_shard(args.shard)
    try:
        if args.batch_size < 1 or args.block_images < 1 or args.num_workers < 0:
            raise ValueError("--batch-size and --block-images must be positive, --num-workers not negative")
        check_tiling(args.tile, args.tile_overlap)
        src = source_tree(args)
        device = rank_device(args.device)  # each torchrun rank denoises on its own GPU
        model = load_denoiser(args.weights, device)
        precision = resolve_precision(args.precision, device)
        # one process per shard of the folder (the shards of one job write it together)
        manifest = {"model_sha256": model_digest(model), "precision": str(precision), "tile": args.tile,
                    "tile_overlap": args.tile_overlap, "src": str(src.folder.resolve()),
                    "src_noise": src.noise_settings()}

        def claim(others_writing: bool) -> None:
            check_or_write_manifest(args.output_dir / MANIFEST_FILENAME, manifest, others_writing=others_writing,
                                    remedy="the denoised images there come from another denoiser, source or noise: "
                                           "delete the folder or choose another --output-dir")

        # one process per shard of the folder; all the writers of the folder share one manifest
        with folder_lock(args.output_dir, shard.lock_name), tree_writers(args.output_dir, claim):
            remove_stale_temporaries(args.output_dir)
            report = denoise_tree(model, DenoiseTask(src, args.output_dir), device, precision, args.batch_size,
                                  args.num_workers, args.tile, args.tile_overlap,
                                  _is_revisitop(src),
                                  not args.quiet and launched_local_rank() == 0, shard,
                                  args.block_images)
    except (ValueError, OSError) as error:  # bad input, an unwritable or full output folder
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    where = "" if shard.whole else f" (shard {shard})"
    print(f"{args.output_dir}{where}: {report.written} written, {report.skipped} already there, "
          f"{len(report.failures)} unreadable")
    if report.failures:
        print(f"error: {len(report.failures)} image(s) could not be read:", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _is_revisitop(src: ImageTree) -> bool:
    """A revisitop dataset folder (jpg/ and gnd_*.pkl), stored or noised on the fly."""
    return (src.folder / "jpg").is_dir() and any(src.folder.glob("gnd_*.pkl"))


if __name__ == "__main__":
    sys.exit(main())
