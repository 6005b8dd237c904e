"""Pairing two trees: the same relative paths, extensions aside (a noisy tree and its denoised copy for NCT, which
may hold ``x.png`` where the other holds ``x.JPEG``). A labelled tree pairs split by split, an unlabeled tree as a
whole; the trees' indexes are read when current."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from utils.dataset_index import DEFAULT_SPLITS, DatasetError, TreeLike, current_index, is_labelled
from utils.image_io import iter_image_files
from utils.image_tree import open_tree


@dataclass
class PairReport:
    """Relative paths (extension aside) present in only one of two trees, and the number in both."""

    only_in_first: list[str]
    only_in_second: list[str]
    common: int

    @property
    def ok(self) -> bool:
        return not self.only_in_first and not self.only_in_second


def _split_files(root: Path, split: str, use_index: bool) -> list[str]:
    """The images of ``root/split`` relative to it: from the tree's current index (``use_index``), else walked."""
    index = current_index(root, split) if use_index else None
    if index is None:
        return list(iter_image_files(root / split))
    classes = index["splits"][split]["classes"]
    return [f"{name}/{file}" for name in sorted(classes) for file in classes[name]["files"]]


def _stems(tree: TreeLike, splits: Sequence[str], use_index: bool = False) -> dict[str, str]:
    root = open_tree(tree).folder
    stems: dict[str, str] = {}
    if root.is_dir() and not is_labelled(root, splits[0]):  # an unlabeled tree pairs as a whole
        index = current_index(root, splits[0]) if use_index else None
        for rel in index["files"] if index is not None else iter_image_files(root):
            stem = os.path.splitext(rel)[0]
            if stem in stems:
                raise DatasetError(f"{root}: {stems[stem]} and {rel} differ only by extension")
            stems[stem] = rel
        return stems
    for split in splits:
        if not (root / split).is_dir():
            raise DatasetError(f"missing split folder {root / split}")
        for rel in _split_files(root, split, use_index):
            stem = f"{split}/{os.path.splitext(rel)[0]}"
            if stem in stems:
                raise DatasetError(f"{root}: {stems[stem]} and {split}/{rel} differ only by extension")
            stems[stem] = f"{split}/{rel}"
    return stems


def compare_trees(first: TreeLike, second: TreeLike, splits: Sequence[str] = DEFAULT_SPLITS) -> PairReport:
    """Compare the relative image paths of two trees, ignoring extensions (``x.JPEG`` pairs with ``x.png``)."""
    return _pair_report(_stems(first, splits), _stems(second, splits))


def _pair_report(a: dict[str, str], b: dict[str, str]) -> PairReport:
    return PairReport(sorted(set(a) - set(b)), sorted(set(b) - set(a)), len(set(a) & set(b)))


def paired_relpaths(first: TreeLike, second: TreeLike, split: str) -> dict[str, str]:
    """Map each image of ``first/split`` to its counterpart in ``second`` (same relative path, any extension).

    Raises :class:`DatasetError` naming the unmatched files when the trees do not pair exactly.
    """
    a, b = _stems(first, [split], use_index=True), _stems(second, [split], use_index=True)
    report = _pair_report(a, b)
    if not report.ok:
        raise DatasetError(describe_mismatch(open_tree(first), open_tree(second), report))
    return {a[stem]: b[stem] for stem in a}


def describe_mismatch(first: TreeLike, second: TreeLike, report: PairReport, limit: int = 5) -> str:
    """A readable message for a failed pairing, naming a few of the unmatched files."""
    parts = [f"trees {first} and {second} do not pair ({report.common} common images)"]
    for root, missing in ((first, report.only_in_first), (second, report.only_in_second)):
        if missing:
            parts.append(f"{len(missing)} only in {root}: {', '.join(missing[:limit])}")
    return "; ".join(parts)
