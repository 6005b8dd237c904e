"""Image trees: scanning, the on-disk index, loading it fast, and pairing two trees.

A labelled tree is ``ROOT/<split>/<class>/<image>`` with an optional ``ROOT/labels.txt`` of ``wnid,class name``
lines. Class indices follow the sorted class-folder names of the first split (``train``), as torchvision's
ImageFolder does. Any other folder of images is an unlabeled tree: every image below ROOT, at any depth, is a sample
of every split (pretraining and denoising need no labels; the probes refuse such a tree). ``process_metadata.py``
writes ``ROOT/dataset_index.json`` so that loaders do not walk 1.28M files at start-up; a loader checks the index
against the class folders' modification times (an unlabeled tree's: every folder's, and ROOT's listing) and
rescans (with a warning) when the tree changed since it was written, or when it has none. A folder that cannot be
written (a read-only dataset mount) keeps its index in ``$NOISY_SSL_INDEX_DIR`` (default
``~/.cache/noisy-ssl/indexes``), under a digest of the folder's absolute path, where loaders find it too. Every
function takes a tree spelling (see :mod:`utils.image_tree`): a noisy tree read on the fly is indexed by its clean
folder. Pairing two trees (NCT's noisy and denoised images) reads their indexes when current.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

import numpy as np

from utils.atomic import PathLike, atomic_write_json
from utils.image_formats import decode_scientific
from utils.image_io import SCIENTIFIC_EXTENSIONS, ImageReadError, is_image_file, iter_image_files, read_image_header
from utils.image_tree import ImageTree, open_tree

if TYPE_CHECKING:
    from PIL import Image

TreeLike = Union[PathLike, ImageTree]

INDEX_FILENAME = "dataset_index.json"
INDEX_DIR_ENV = "NOISY_SSL_INDEX_DIR"
LABELS_FILENAME = "labels.txt"
INDEX_FORMAT_VERSION = 1
DEFAULT_SPLITS = ("train", "val")
UNLABELED = "unlabeled"  # the index's "layout" of an unlabeled tree (a labelled tree's index has no "layout")


class DatasetError(ValueError):
    """A tree that does not have the expected layout; the message names the path and what was expected."""


class UnindexedTreeWarning(UserWarning):
    """A loader scans a tree's files because it finds no current index (slow on large trees)."""


@dataclass
class SplitIndex:
    """The images of one split: ``samples`` are (path relative to the tree root, class index) pairs."""

    root: ImageTree
    split: str
    classes: list[str]
    class_names: dict[str, str]
    samples: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labelled(self) -> bool:
        """False for an unlabeled tree (its samples' labels are -1)."""
        return bool(self.classes)

    def path(self, index: int) -> Path:
        """The file of sample ``index`` (the clean file, for a tree noised on the fly)."""
        return self.root.path(self.samples[index][0])

    def read_pil(self, index: int) -> "Image.Image":
        """The RGB image of sample ``index`` (noised, for a tree noised on the fly)."""
        return self.root.read_pil(self.samples[index][0])

    def counts_per_class(self) -> list[int]:
        """Number of images of each class, in class-index order."""
        counts = [0] * len(self.classes)
        for _, label in self.samples:
            counts[label] += 1
        return counts


def read_labels(root: PathLike) -> dict[str, str]:
    """Read ``ROOT/labels.txt`` (``wnid,class name`` per line) if present; an empty dict otherwise."""
    path = Path(root) / LABELS_FILENAME
    if not path.is_file():
        return {}
    names: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
                           f"{error.start}); save it as UTF-8") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "," not in line:
            raise DatasetError(f"{path}:{number}: expected 'wnid,class name', got {line!r}")
        wnid, name = line.split(",", 1)
        names[wnid.strip()] = name.strip()
    return names


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))


def _scan_split(root: Path, split: str) -> dict[str, dict]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"missing split folder {split_dir} (expected ROOT/{split}/<class>/<image>)")
    classes = _class_dirs(split_dir)
    if not classes:
        raise DatasetError(f"split folder {split_dir} has no class folders")
    scanned: dict[str, dict] = {}
    for name in classes:
        class_dir = split_dir / name
        files = list(iter_image_files(class_dir))
        if not files:
            raise DatasetError(f"class folder {class_dir} holds no image")
        scanned[name] = {"mtime_ns": os.stat(class_dir).st_mtime_ns, "files": files}
    return scanned


def is_labelled(root: TreeLike, split: str = DEFAULT_SPLITS[0]) -> bool:
    """True when ``ROOT/<split>/`` holds class folders (an ImageFolder tree); else ROOT is an unlabeled tree."""
    split_dir = open_tree(root).folder / split
    return split_dir.is_dir() and bool(_class_dirs(split_dir))


def _walk_folders(root: Path) -> Iterator[Path]:
    """ROOT and every visible folder below it (what an unlabeled index watches for changes)."""
    for directory, subdirs, _ in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        yield Path(directory)


def _top_level(root: Path) -> dict[str, list[str]]:
    """The images and folders directly in ROOT: compared by name, not by ROOT's modification time, which the
    index itself, manifests and locks written into ROOT change."""
    entries = sorted((entry.name, entry.is_dir()) for entry in os.scandir(root) if not entry.name.startswith("."))
    return {"files": [name for name, is_dir in entries if not is_dir and is_image_file(name)],
            "folders": [name for name, is_dir in entries if is_dir]}


def _unlabeled_index(root: Path) -> dict:
    files = list(iter_image_files(root))
    if not files:
        raise DatasetError(f"{root} holds no image (expected images at any depth, or ROOT/train/<class>/<image>)")
    folders = {Path(os.path.relpath(d, root)).as_posix(): os.stat(d).st_mtime_ns for d in _walk_folders(root)
               if d != root}
    return {"format_version": INDEX_FORMAT_VERSION, "layout": UNLABELED, "num_images": len(files),
            "top": _top_level(root), "folders": folders, "files": files}


def measure_float_range(root: Path, relpaths: Sequence[str]) -> Optional[list[float]]:
    """The value range of a tree's float images (float TIFF, FITS, NPY; None when it has none): the lowest 0.5th
    and the highest 99.5th percentile over its images, so that a few hot pixels do not squash the rest; values
    beyond it are clipped when read. Raises :class:`DatasetError` naming an unreadable image."""
    lows, highs = [], []
    for relpath in relpaths:
        path = root / relpath
        if os.path.splitext(relpath)[1].lower() not in SCIENTIFIC_EXTENSIONS:
            continue
        try:
            if read_image_header(path).depth != "float":
                continue
            array, unit_range = decode_scientific(path)
        except ImageReadError as error:
            raise DatasetError(str(error)) from None
        except Exception as error:  # the formats' readers raise many types; one line naming the file
            raise DatasetError(f"cannot read image {path}: {error}") from None
        if unit_range:  # a float copy made here: read on [0, 1], its values set no range
            continue
        values = array.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            lows.append(float(np.percentile(finite, 0.5)))
            highs.append(float(np.percentile(finite, 99.5)))
    return [min(lows), max(highs)] if lows else None


def _with_float_range(root: Path, index: dict, relpaths: Sequence[str]) -> dict:
    float_range = measure_float_range(root, relpaths)
    if float_range is not None:
        index["float_range"] = float_range
    return index


def recorded_float_range(folder: PathLike) -> Optional[tuple[float, float]]:
    """The float range recorded in the index of ``folder`` or of the nearest folder above it that has one (a split
    or class folder reads its tree's); None when no index records one."""
    folder = Path(os.path.abspath(folder))
    for candidate in (folder, *folder.parents):
        for path in (candidate / INDEX_FILENAME, index_cache_path(candidate)):
            try:
                stamp = os.stat(path).st_mtime_ns
            except OSError:
                continue
            found = _float_range_in(str(path), stamp)
            if found is not None:
                return found
    return None


@functools.lru_cache(maxsize=64)
def _float_range_in(path: str, stamp: int) -> Optional[tuple[float, float]]:  # stamp: reread a rewritten index
    try:
        recorded = json.loads(Path(path).read_text()).get("float_range")
        return (float(recorded[0]), float(recorded[1])) if recorded else None
    except (OSError, ValueError, TypeError, IndexError, AttributeError):  # a damaged index records nothing usable
        return None


def build_index(root: TreeLike, splits: Sequence[str] = DEFAULT_SPLITS) -> dict:
    """Scan ``root`` and return its index (a JSON-serialisable dict); raises :class:`DatasetError`. A tree without
    class folders in its first split is indexed as an unlabeled tree (see the module docstring)."""
    tree = open_tree(root)
    root = tree.folder
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder{tree.missing_hint()}")
    if not splits:
        raise DatasetError("no split requested")
    if not is_labelled(root, splits[0]):
        index = _unlabeled_index(root)
        return _with_float_range(root, index, index["files"])
    labels = read_labels(root)
    scanned = {split: _scan_split(root, split) for split in splits}
    classes = sorted(scanned[splits[0]])
    for split in splits[1:]:
        extra = sorted(set(scanned[split]) - set(classes))
        if extra:
            raise DatasetError(f"{root / split} has classes absent from {root / splits[0]}: {', '.join(extra[:5])}")
    if labels:
        unnamed = [name for name in classes if name not in labels]
        if unnamed:
            raise DatasetError(f"{root / LABELS_FILENAME} names no class for folders {', '.join(unnamed[:5])}")
    index = {
        "format_version": INDEX_FORMAT_VERSION,
        "classes": classes,
        "class_names": {name: labels.get(name, name) for name in classes},
        "splits": {
            split: {"num_images": sum(len(c["files"]) for c in scanned[split].values()), "classes": scanned[split]}
            for split in splits
        },
    }
    relpaths = [f"{split}/{name}/{file}" for split in splits for name, info in scanned[split].items()
                for file in info["files"]]
    return _with_float_range(root, index, relpaths)


def index_cache_path(folder: PathLike) -> Path:
    """Where the index of ``folder`` is kept when the folder cannot be written (see the module docstring)."""
    base = Path(os.environ.get(INDEX_DIR_ENV) or Path.home() / ".cache" / "noisy-ssl" / "indexes")
    return base / hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16] / INDEX_FILENAME


def write_index(root: TreeLike, index: dict) -> Path:
    """Write ``index`` atomically to ``ROOT/dataset_index.json`` (the clean folder of a noisy tree read on the
    fly, whose index is the same), or to :func:`index_cache_path` with a warning where ROOT is read-only; returns
    the path written."""
    folder = open_tree(root).folder
    try:
        atomic_write_json(folder / INDEX_FILENAME, index, indent=None)
        return folder / INDEX_FILENAME
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    cache = index_cache_path(folder)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, index, indent=None)
    warnings.warn(f"{folder} cannot be written: its index is kept in {cache} (set {INDEX_DIR_ENV} to choose where)")
    return cache


def _index_is_current(root: Path, index: dict, split: str) -> bool:
    if index.get("layout") == UNLABELED:
        return (index.get("format_version") == INDEX_FORMAT_VERSION and not is_labelled(root, split)
                and index["top"] == _top_level(root)
                and all(_mtime_ns(root / folder) == mtime for folder, mtime in index["folders"].items()))
    entry = index.get("splits", {}).get(split)
    split_dir = root / split
    if entry is None or not split_dir.is_dir() or index.get("format_version") != INDEX_FORMAT_VERSION:
        return False
    if _class_dirs(split_dir) != sorted(entry["classes"]):
        return False
    return all(os.stat(split_dir / name).st_mtime_ns == info["mtime_ns"] for name, info in entry["classes"].items())


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def current_index(folder: Path, split: str) -> Optional[dict]:
    """The index of ``folder`` (in the folder, else in :func:`index_cache_path`) when current for ``split``;
    None (with an :class:`UnindexedTreeWarning` saying why) when a scan is needed."""
    stale = []
    for path in (folder / INDEX_FILENAME, index_cache_path(folder)):
        if path.is_file():
            index = json.loads(path.read_text())
            if _index_is_current(folder, index, split):
                return index
            stale.append(path)
    why = f"{stale[0]} is out of date for split {split!r}" if stale else f"{folder} has no index"
    warnings.warn(f"{why}; scanning its files (python process_metadata.py {folder} indexes it once, so that later "
                  "starts do not rescan)", UnindexedTreeWarning)
    return None


def load_split(tree: TreeLike, split: str) -> SplitIndex:
    """Load one split of a tree, from its index when current, else by scanning (with a warning)."""
    tree = open_tree(tree)
    root = tree.folder
    index = current_index(root, split)
    if index is None:
        # Class indices come from train whichever split is loaded, so scan train alongside.
        splits = ["train", split] if split != "train" and is_labelled(root, "train") else [split]
        index = build_index(root, splits)
    if index.get("layout") == UNLABELED:
        return SplitIndex(tree, split, [], {}, [(file, -1) for file in index["files"]])
    label_of = {name: i for i, name in enumerate(index["classes"])}
    samples = [
        (f"{split}/{name}/{file}", label_of[name])
        for name in sorted(index["splits"][split]["classes"])
        for file in index["splits"][split]["classes"][name]["files"]
    ]
    return SplitIndex(tree, split, list(index["classes"]), dict(index["class_names"]), samples)
