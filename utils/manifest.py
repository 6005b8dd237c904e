"""Output manifests: a small JSON file that records how a generated tree was made.

A rerun into the same folder with different settings (another seed, another quantisation) would silently
mix two datasets; the manifest turns that into a clear error unless the user asks to overwrite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from utils.atomic import atomic_write_json, make_folder
from utils.image_io import iter_image_files


class ManifestMismatch(ValueError):
    """An output folder was made with other settings than the ones asked for now."""


def check_or_write_manifest(
    path: Path, settings: dict[str, Any], overwrite: bool = False,
    remedy: str = "use another output folder or --overwrite", others_writing: bool = False,
    holds_outputs: Callable[[Path], bool] | None = None,
) -> None:
    """Write ``settings`` to ``path`` unless a manifest with different values is already there.

    Raises :class:`ManifestMismatch` naming the differing keys and ``remedy``, unless ``overwrite`` is set or the
    folder holds no output yet (a run that failed before writing any left the manifest: nothing would be mixed);
    ``holds_outputs(folder)`` says whether it does (default: any image file).
    While ``others_writing`` (another writer of the tree is at work, see :func:`utils.run_lock.tree_writers`), a
    different manifest is refused whatever the folder holds, and so is ``overwrite``. A key the existing manifest
    lacks (written before the key was recorded) is not compared; the manifest is then rewritten with it.
    """
    existing = read_manifest(path)
    holds_outputs = holds_outputs or holds_images
    if existing is not None and (others_writing or (not overwrite and holds_outputs(path.parent))):
        differing = sorted(k for k in settings if k in existing and existing[k] != settings[k])
        if differing or (others_writing and overwrite):
            details = ", ".join(f"{k}: {existing.get(k)!r} there, {settings[k]!r} now" for k in differing)
            busy = "another run is writing it now" if others_writing else ""
            why = "; ".join(part for part in (details, busy) if part)
            raise ManifestMismatch(f"{path.parent} was made with other settings ({why}); {remedy}" if differing
                                   else f"{path.parent}: {busy}; --overwrite must run alone")
        if all(k in existing for k in settings):
            return
        settings = {**existing, **settings}
    make_folder(path.parent)
    atomic_write_json(path, settings)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when there is none."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def holds_images(folder: Path) -> bool:
    """True when ``folder`` holds at least one image file (at any depth); a folder without any may take a new
    manifest, since nothing made with the old settings would be mixed in."""
    return Path(folder).is_dir() and next(iter(iter_image_files(folder)), None) is not None
