"""Index and verify ImageFolder trees (clean, noisy or denoised copies).

    python process_metadata.py ROOT [ROOT ...] [--splits train val] [--verify] [--num-workers N]
                               [--pair NOISY DENOISED]

For each ROOT: finds the classes (folder names; names from ``labels.txt`` where present), lists the images of
each split (a ROOT without ``train/<class>/`` folders is unlabeled: every image below it, at any depth), writes
``ROOT/dataset_index.json`` (what the loaders read), and prints the counts. ``--verify``
decodes every image (in parallel). ``--pair NOISY DENOISED`` checks that two trees hold the same relative
paths (extensions aside). Exits non-zero with a message naming the path for a missing split, an empty class,
an undecodable image or a mismatched pair.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from tqdm import tqdm

from utils.cli import EXIT_BAD_INPUT, add_num_workers, add_quiet
from utils.cpus import usable_cpus
from utils.dataset_index import DEFAULT_SPLITS, UNLABELED, DatasetError, build_index
from utils.tree_pairing import compare_trees, describe_mismatch
from utils.dataset_index import write_index
from utils.image_io import ImageReadError
from utils.image_tree import ImageTree, tree_argument


def _decode(tree_and_relpath: tuple[ImageTree, str]) -> str | None:
    tree, relpath = tree_and_relpath
    try:
        tree.read(relpath)
    except ImageReadError as error:
        return str(error)
    return None


def verify_images(tree: ImageTree, relpaths: list[str], workers: int, progress: bool = True) -> list[str]:
    """Read every image (noised too, for a tree noised on the fly) and return the error messages of those that
    fail (empty when all decode)."""
    items = [(tree, relpath) for relpath in relpaths]
    if workers <= 0:
        results = map(_decode, items)
        return [e for e in tqdm(results, total=len(items), desc="verifying", unit="img", disable=not progress)
                if e is not None]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_decode, items, chunksize=max(1, min(256, len(items) // (8 * workers) or 1)))
        return [e for e in tqdm(results, total=len(items), desc="verifying", unit="img", disable=not progress)
                if e is not None]


def index_tree(root: ImageTree, splits: list[str], verify: bool, workers: int, progress: bool = True) -> dict:
    """Index one tree (a noisy tree read on the fly: its clean folder), optionally verify its images, write the
    index; raises ``DatasetError``."""
    index = build_index(root, splits)
    if index.get("float_range"):  # verified by the range about to be recorded
        root = replace(root, float_range=tuple(index["float_range"]))
    if verify:
        relpaths = index["files"] if index.get("layout") == UNLABELED else [
            f"{split}/{name}/{file}"
            for split in splits
            for name, info in index["splits"][split]["classes"].items()
            for file in info["files"]
        ]
        errors = verify_images(root, relpaths, workers, progress)
        if errors:
            shown = "\n  ".join(errors[:20])
            raise DatasetError(f"{len(errors)} undecodable image(s) in {root}:\n  {shown}")
    write_index(root, index)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=tree_argument,
                        help="trees to index: stored, or noisy:SETTING:ROOT (indexed by ROOT, verified noised)")
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), help="default: %(default)s")
    parser.add_argument("--verify", action="store_true", help="decode every image")
    add_num_workers(parser, usable_cpus(), "processes for --verify (default %(default)s)")
    add_quiet(parser)
    parser.add_argument("--pair", nargs=2, type=tree_argument, metavar=("NOISY", "DENOISED"), action="append",
                        default=[],
                        help="check that two trees hold the same relative paths (repeatable)")
    args = parser.parse_args(argv)
    if not args.roots and not args.pair:
        parser.error("give at least one ROOT or --pair NOISY DENOISED")
    failed = False
    for root in args.roots:
        try:
            index = index_tree(root, args.splits, args.verify, args.num_workers, not args.quiet)
        except (DatasetError, OSError) as error:  # a bad tree; an unwritable index
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        if index.get("layout") == UNLABELED:
            print(f"{root}: unlabeled, {index['num_images']} images (no {args.splits[0]}/<class>/ folders: for "
                  f"pretraining and denoising, not for the probes); index written")
            continue
        counts = ", ".join(f"{split} {index['splits'][split]['num_images']}" for split in args.splits)
        print(f"{root}: {len(index['classes'])} classes; {counts} images; index written")
    for first, second in args.pair:
        try:
            report = compare_trees(first, second, args.splits)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        if report.ok:
            print(f"{first} <-> {second}: {report.common} images pair exactly")
        else:
            print(f"error: {describe_mismatch(first, second, report)}", file=sys.stderr)
            failed = True
    return EXIT_BAD_INPUT if failed else 0


if __name__ == "__main__":
    sys.exit(main())
