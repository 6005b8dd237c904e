"""A per-class subset of an image tree, as the paper's ImageNet-1k denoiser was trained on (100 images per class
whose sides both lie in [256, 512], drawn with seed 42).

    python utils/make_subset.py --src data/imagenet1k --output-dir data/imagenet1k-n2n100 \
        [--split train] [--per-class 100] [--min-side 256] [--max-side 512] [--seed 42] [--copy]

Reads every image's size from its header, keeps those whose height and width both lie in [MIN_SIDE, MAX_SIDE],
and draws PER_CLASS of each class (all of a class with fewer, with a warning) with ``random.Random(SEED)`` from its
sorted file list, so the subset depends on the files and the seed only. Writes ``OUT/SPLIT/<class>/<file>`` as
symbolic links to the source images (``--copy``: copies), the source's ``labels.txt`` and ``subset_manifest.json``
(settings and the chosen files); a rerun with the same settings skips what exists, other settings are refused. The
subset's relative paths are the source's, so a clean subset read as ``noisy:gauss100:OUT`` gets the same noisy
pixels as the full tree noised on the fly, and a stored noisy copy can be subset alike (``--src`` any tree).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from utils.atomic import atomic_write_json, temporary_path_for
from utils.cli import EXIT_BAD_INPUT, add_output_dir, add_quiet, check_outside
from utils.dataset_index import LABELS_FILENAME
from utils.image_io import ImageReadError, iter_image_files, read_image_size
from utils.manifest import ManifestMismatch, check_or_write_manifest

MANIFEST_FILENAME = "subset_manifest.json"


def choose_subset(split_dir: Path, per_class: int, min_side: int, max_side: int, seed: int,
                  quiet: bool = True) -> dict[str, list[str]]:
    """{class: chosen files (relative to the class folder), sorted} for the images of ``split_dir``."""
    rng = random.Random(seed)
    chosen: dict[str, list[str]] = {}
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"{split_dir} has no class folders (expected SPLIT/<class>/<image>)")
    for name in tqdm(classes, desc="classes", disable=quiet):
        files = sorted(iter_image_files(split_dir / name))
        fitting = [f for f in files
                   if all(min_side <= side <= max_side for side in read_image_size(split_dir / name / f))]
        if len(fitting) < per_class:
            warnings.warn(f"{split_dir / name}: {len(fitting)} images of sides in [{min_side}, {max_side}], fewer than "
                          f"{per_class}: all are kept")
        chosen[name] = sorted(rng.sample(fitting, min(per_class, len(fitting))))
    return chosen


def write_subset(src: Path, dst: Path, split: str, chosen: dict[str, list[str]], copy: bool) -> int:
    """Link (or copy) the chosen files into ``dst/split``, skipping those present; returns how many were written."""
    written = 0
    for name, files in chosen.items():
        for file in files:
            target = dst / split / name / file
            if target.exists() or target.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = (src / split / name / file).resolve()
            temporary = temporary_path_for(target)
            if copy:
                shutil.copyfile(source, temporary)
            else:
                os.symlink(source, temporary)
            os.replace(temporary, target)
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="the tree ROOT/<split>/<class>/<image>")
    add_output_dir(parser, "the subset tree")
    parser.add_argument("--split", default="train")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--min-side", type=int, default=256)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    add_quiet(parser)
    args = parser.parse_args(argv)
    try:
        if args.per_class < 1 or not 0 < args.min_side <= args.max_side:
            raise ValueError("--per-class must be positive and 0 < --min-side <= --max-side")
        if not (args.src / args.split).is_dir():
            raise ValueError(f"--src {args.src}: no split folder {args.src / args.split}")
        check_outside(args.output_dir, {"--src": args.src})
        settings = {"src": str(args.src.resolve()), "split": args.split, "per_class": args.per_class,
                    "min_side": args.min_side, "max_side": args.max_side, "seed": args.seed, "copy": args.copy}
        manifest = args.output_dir / MANIFEST_FILENAME
        check_or_write_manifest(manifest, settings, remedy="use another --output-dir")
        chosen = choose_subset(args.src / args.split, args.per_class, args.min_side, args.max_side, args.seed,
                               args.quiet)
        written = write_subset(args.src, args.output_dir, args.split, chosen, args.copy)
    except (ValueError, ManifestMismatch, ImageReadError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if (args.src / LABELS_FILENAME).is_file():
        shutil.copyfile(args.src / LABELS_FILENAME, args.output_dir / LABELS_FILENAME)
    atomic_write_json(manifest, {**settings, "files": chosen})
    total = sum(len(files) for files in chosen.values())
    print(f"{args.output_dir / args.split}: {total} images of {len(chosen)} classes ({written} written now)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
