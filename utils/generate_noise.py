"""Make noisy copies of an image tree, one per noise setting, as the paper does for ImageNet-100.

    python utils/generate_noise.py --src ROOT --noise gauss50 gauss100 ... [--out-prefix PREFIX]
                                   [--seed 42] [--num-workers N] [--overwrite] [--quantization truncate|round]
                                   [--shard I/N]

``--noise all`` means the paper's nine settings. Each setting writes ``PREFIX-<setting>/<relative path>.png``
(``.tif`` for a 16-bit or float source, kept at its own depth: see utils/image_io.py; default PREFIX:
``noisy_<basename of ROOT>`` beside ROOT, e.g. ``noisy_mini-imagenet-gauss100``) at native resolution and copies
``labels.txt``. Noise is a pure function of (seed, setting, relative path), so the output never depends on worker
count or order. Reruns skip finished files; every file is written atomically. An unreadable image stops the run
(the images in flight are finished) with a non-zero exit naming it.
``--shard I/N`` writes only every N-th image (SLURM job arrays: one task per shard, any number of machines).

Training and evaluation can read the same noisy pixels without this copy: ``noisy:SETTING:ROOT`` names the tree
noised on the fly (see utils/image_tree.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from utils.atomic import atomic_write_json, remove_stale_temporaries
from utils.cli import EXIT_BAD_INPUT, add_num_workers, add_quiet
from utils.cpus import usable_cpus
from utils.dataset_index import LABELS_FILENAME, DatasetError, measure_float_range, recorded_float_range
from utils.image_io import DEFAULT_PNG_COMPRESSION, ImageReadError, copy_depth, copy_relpath, iter_image_files
from utils.image_io import read_pixels, save_pixels_atomic
from utils.manifest import check_or_write_manifest, read_manifest
from utils.metrics import psnr_and_snr
from utils.image_tree import NOISY_SCHEME
from utils.noise import QUANTIZATION_MODES, NoiseSpec, expand_noise_settings, noisy_pixels
from utils.run_lock import folder_lock, tree_writers
from utils.sharding import Shard, parse_shard

MANIFEST_FILENAME = "noise_manifest.json"
PENDING_KEY = "overwrite_pending"  # in the manifest while an --overwrite run has not rewritten every file


class GenerationError(RuntimeError):
    """Some images could not be read; the message names them."""


@dataclass(frozen=True)
class NoiseTask:
    """Noise one source image with one setting and write it to ``dst``."""

    src: str
    relpath: str
    spec: NoiseSpec  # the setting, parsed once for all its images (``spec.name`` is the setting as spelled)
    dst: str
    seed: int
    quantization: str
    png_compression: int
    float_range: tuple[float, float] | None = None  # the source tree's, for its float images


@dataclass
class SettingStats:
    """Per-setting counters and the per-image PSNR / SNR of the images written in this run."""

    written: int = 0
    skipped: int = 0
    psnr_values: list[float] = field(default_factory=list)
    snr_values: list[float] = field(default_factory=list)

    @staticmethod
    def _mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else float("nan")

    def summary(self) -> dict[str, float | int]:
        return {"written": self.written, "skipped": self.skipped,
                "psnr_db": self._mean(self.psnr_values), "snr_db": self._mean(self.snr_values)}


def default_out_prefix(src: Path) -> Path:
    """``noisy_<basename>`` beside the source root, as the paper names its folders."""
    src = src.resolve()
    return src.parent / f"noisy_{src.name}"


def output_root(out_prefix: Path, setting: str) -> Path:
    """The folder that holds the copy of the tree for ``setting``."""
    return Path(f"{out_prefix}-{setting}")


def noise_one(task: NoiseTask) -> tuple[NoiseTask, float, float, str | None]:
    """Noise and write one image; returns (task, PSNR, SNR, error message or None). Runs in workers."""
    try:
        clean = read_pixels(task.src, task.float_range)
    except ImageReadError as error:
        return task, math.nan, math.nan, str(error)
    noisy = noisy_pixels(clean, task.spec, task.seed, task.relpath, task.quantization)
    save_pixels_atomic(noisy, task.dst, task.png_compression)
    return (task, *psnr_and_snr(clean, noisy), None)


def plan(src: Path, specs: list[NoiseSpec], out_prefix: Path, seed: int, quantization: str,
         png_compression: int) -> list[NoiseTask]:
    """Every (image, setting) pair to produce, with clear errors before any work is done."""
    if str(src).startswith(NOISY_SCHEME):
        raise ValueError(f"--src {src}: generate_noise.py noises a stored clean tree, not one noised on the fly")
    if not src.is_dir():
        raise FileNotFoundError(f"source tree {src} does not exist or is not a folder")
    relpaths = list(iter_image_files(src))
    if not relpaths:
        raise FileNotFoundError(f"source tree {src} holds no image")
    targets: dict[str, str] = {}
    floats = []  # the images whose values set the tree's range, when its index records none
    for rel in relpaths:
        depth = copy_depth(src / rel)
        if depth == "float":
            floats.append(rel)
        target = copy_relpath(rel, depth)
        if target in targets:
            raise ValueError(f"{src}: {targets[target]} and {rel} would both be written as {target}")
        targets[target] = rel
    float_range = (recorded_float_range(src) or _measured(src, floats)) if floats else None
    tasks = []
    for spec in specs:
        root = output_root(out_prefix, spec.name).resolve()
        if root == src.resolve() or src.resolve() in root.parents:
            raise ValueError(f"output folder {root} lies inside the source tree {src}")
        tasks.extend(
            NoiseTask(str(src / rel), rel, spec, str(root / target), seed, quantization, png_compression,
                      float_range)
            for target, rel in targets.items()
        )
    return tasks


def _measured(src: Path, relpaths: list[str]) -> tuple[float, float] | None:
    """The float range of a tree whose index records none (measured as process_metadata.py does)."""
    try:
        measured = measure_float_range(src, relpaths)
    except DatasetError as error:
        raise GenerationError(str(error)) from None
    return (measured[0], measured[1]) if measured else None


def _run_bounded(tasks: Iterable[NoiseTask], workers: int) -> Iterator[tuple[NoiseTask, float, float, str | None]]:
    """Run tasks in ``workers`` processes (inline when 0), keeping few in flight so a failure stops quickly.

    The consumer stops the run by closing the generator: the tasks in flight are finished, none is started.
    """
    if workers <= 0:
        for task in tasks:
            yield noise_one(task)
        return
    pending: set[Future] = set()
    queue = iter(tasks)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            for task in queue:
                pending.add(pool.submit(noise_one, task))
                if len(pending) >= 4 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            for future in list(pending):
                pending.discard(future)
                yield future.result()
        finally:
            wait(pending)


def generate_noise(
    src: Path, settings: list[str], out_prefix: Path | None = None, seed: int = 42, workers: int = 0,
    overwrite: bool = False, quantization: str = "truncate", png_compression: int = DEFAULT_PNG_COMPRESSION,
    progress: bool = True, shard: Shard = Shard(),
) -> dict[str, dict[str, float | int]]:
    """Write the noisy trees (this shard's images) and return per-setting statistics; raises
    :class:`GenerationError` on bad images."""
    specs = expand_noise_settings(settings)
    settings = [spec.name for spec in specs]
    out_prefix = out_prefix if out_prefix is not None else default_out_prefix(src)
    if overwrite and not shard.whole:
        raise ValueError("--overwrite rewrites whole trees and cannot be split by --shard: delete the output "
                         "folders instead, then run the shards")
    tasks = shard.take(plan(src, specs, out_prefix, seed, quantization, png_compression))
    stats = {setting: SettingStats() for setting in settings}
    manifests = {spec.name: {"setting": spec.name, "canonical": spec.canonical, "seed": seed,
                             "quantization": quantization, "source": str(src.resolve())} for spec in specs}
    redo: set[str] = set()

    def claim(setting: str, others_writing: bool) -> None:
        if open_setting(src, output_root(out_prefix, setting), manifests[setting], overwrite, shard, others_writing):
            redo.add(setting)

    with contextlib.ExitStack() as locks:
        for setting in settings:
            root = output_root(out_prefix, setting)
            locks.enter_context(folder_lock(root, shard.lock_name))  # one process per shard of a tree
            locks.enter_context(tree_writers(root, functools.partial(claim, setting)))  # one setting per tree
        todo = []
        for task in tasks:
            if task.spec.name not in redo and os.path.exists(task.dst):
                stats[task.spec.name].skipped += 1
            else:
                todo.append(task)
        noise_images(todo, workers, stats, progress)
        for setting in redo:  # every file of the setting is rewritten: the overwrite is complete
            atomic_write_json(output_root(out_prefix, setting) / MANIFEST_FILENAME, manifests[setting])
    return {setting: s.summary() for setting, s in stats.items()}


def noise_images(todo: list[NoiseTask], workers: int, stats: dict[str, SettingStats], progress: bool) -> None:
    """Run ``todo``, counting into ``stats``; raises :class:`GenerationError` naming unreadable images (the images
    in flight are finished, none is started after the first failure)."""
    failures: list[str] = []
    results = _run_bounded(todo, workers)
    with tqdm(total=len(todo), desc="noising", unit="img", disable=not progress) as bar:
        for task, image_psnr, image_snr, error in results:
            bar.update()
            if error is not None:
                failures.append(error)
                results.close()  # finish what is in flight, start nothing new
                break
            stats[task.spec.name].written += 1
            stats[task.spec.name].psnr_values.append(image_psnr)
            stats[task.spec.name].snr_values.append(image_snr)
    if failures:
        raise GenerationError("; ".join(failures))


def open_setting(src: Path, root: Path, manifest: dict, overwrite: bool, shard: Shard,
                 others_writing: bool = False) -> bool:
    """Start writing the tree of one setting (see :func:`start_setting`) and copy labels.txt; returns whether every
    file must be rewritten."""
    if not shard.whole and (read_manifest(root / MANIFEST_FILENAME) or {}).get(PENDING_KEY):
        raise ValueError(f"{root}: an interrupted --overwrite run left old and new files mixed; finish it without "
                         f"--shard first")
    redo = start_setting(root, manifest, overwrite, others_writing)
    if (src / LABELS_FILENAME).is_file():
        shutil.copyfile(src / LABELS_FILENAME, root / LABELS_FILENAME)
    return redo


def start_setting(root: Path, manifest: dict, overwrite: bool, others_writing: bool = False) -> bool:
    """Check (or write) the manifest of one output tree and clean temporaries of killed writers; returns whether
    every file must be rewritten: with ``--overwrite``, or when an earlier ``--overwrite`` run was interrupted
    (its manifest still says ``overwrite_pending``: the tree then mixes old and new noise)."""
    path = root / MANIFEST_FILENAME
    pending = (read_manifest(path) or {}).get(PENDING_KEY, False)
    # one write: the flag is on disk before any file is rewritten, never a manifest without it in between
    check_or_write_manifest(path, {**manifest, PENDING_KEY: True} if overwrite else manifest, overwrite,
                            others_writing=others_writing)
    remove_stale_temporaries(root)
    if pending and not overwrite:
        print(f"{root}: an interrupted --overwrite run left old and new files mixed; rewriting every file")
    return overwrite or pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True,
                        help="clean tree (ROOT/<split>/<class>/..., or images at any depth)")
    parser.add_argument("--noise", nargs="+", required=True,
                        help="settings such as gauss100 shot3 pg10_5, or 'all' (the paper's nine)")
    parser.add_argument("--out-prefix", type=Path, default=None, help="default: noisy_<basename of ROOT> beside ROOT")
    parser.add_argument("--seed", type=int, default=42)
    add_num_workers(parser, usable_cpus(), "noising processes (0: in this process; default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="redo finished files")
    parser.add_argument("--quantization", choices=QUANTIZATION_MODES, default="truncate")
    parser.add_argument("--shard", type=parse_shard, default=Shard(), help="I/N: write only the I-th of N shares")
    add_quiet(parser)
    parser.add_argument("--png-compression", type=int, default=DEFAULT_PNG_COMPRESSION, choices=range(10),
                        metavar="0-9", help="zlib level of the PNG files (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        summary = generate_noise(args.src, args.noise, args.out_prefix, args.seed, args.num_workers, args.overwrite,
                                 args.quantization, args.png_compression, not args.quiet, args.shard)
    except (GenerationError, OSError, ValueError) as error:  # bad input, an unwritable or full output folder
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    prefix = args.out_prefix if args.out_prefix is not None else default_out_prefix(args.src)
    print(f"{'setting':<12} {'written':>8} {'skipped':>8} {'PSNR dB':>8} {'SNR dB':>8}  folder")
    for setting, s in summary.items():
        print(f"{setting:<12} {s['written']:>8} {s['skipped']:>8} {s['psnr_db']:>8.2f} {s['snr_db']:>8.2f}  "
              f"{output_root(prefix, setting)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
