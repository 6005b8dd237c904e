"""Output manifests: a small JSON file that records how a generated tree was made.

A rerun into the same folder with different settings (another seed, another quantisation) would silently
mix two datasets; the manifest turns that into a clear error unless the user asks to overwrite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.atomic import atomic_write_json
from utils.image_io import iter_image_files


class ManifestMismatch(ValueError):
    """An output folder was made with other settings than the ones asked for now."""


def check_or_write_manifest(
    path: Path, settings: dict[str, Any], overwrite: bool = False,
    remedy: str = "use another output folder or --overwrite",
) -> None:
    """Write ``settings`` to ``path`` unless a manifest with different values is already there.

    Raises :class:`ManifestMismatch` naming the differing keys and ``remedy``, unless ``overwrite`` is set.
    """
    if path.is_file() and not overwrite:
        existing = json.loads(path.read_text())
        differing = sorted(k for k in settings if existing.get(k) != settings[k])
        if differing:
            details = ", ".join(f"{k}: {existing.get(k)!r} there, {settings[k]!r} now" for k in differing)
            raise ManifestMismatch(
                f"{path.parent} was made with other settings ({details}); {remedy}"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, settings)


def holds_images(folder: Path) -> bool:
    """True when ``folder`` holds at least one image file (at any depth); a folder without any may take a new
    manifest, since nothing made with the old settings would be mixed in."""
    return Path(folder).is_dir() and next(iter(iter_image_files(folder)), None) is not None
